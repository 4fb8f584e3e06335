#!/usr/bin/env bash
# driver-check.sh: exercise every wdevc device command, and the backup pipeline, on a WalB
# device, checking the answers against the driver's invariants (walb-driver.md §2-§4).
#
# In the lab VM it runs on the WalB kernel driver (the module loaded by provision.sh):
#     sudo /vagrant/vagrant/driver-check.sh
# Anywhere else it runs the same checks on the userspace emulator:
#     sudo vagrant/driver-check.sh --emulate
# so that the script itself is tested where the module cannot be loaded.
#
# Options:
#   --emulate        use the userspace emulator (wdevc create-wdev --emulate)
#   --bin-dir DIR    where wdevc, walb-console and the daemons are (default: next to this
#                    script's ../target/release, else PATH)
#   --port-base N    ports of the pipeline check's lab (default 11000; +100, +200, +201)
#   --no-pipeline    only the device commands
#   --keep           keep the work directory
#
# Needs root: loop devices, /dev/walb, mkfs and mount. Prints one line per check and
# "driver-check: all N checks passed"; exits 1 at the first failed check.
set -euo pipefail

EMULATE=0
PIPELINE=1
KEEP=0
PORT_BASE=11000
HERE=$(cd "$(dirname "$0")" && pwd)
BIN_DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
    --emulate) EMULATE=1 ;;
    --no-pipeline) PIPELINE=0 ;;
    --keep) KEEP=1 ;;
    --bin-dir) BIN_DIR=$2; shift ;;
    --port-base) PORT_BASE=$2; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "driver-check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$BIN_DIR" ] && [ -x "$HERE/../target/release/wdevc" ]; then
    BIN_DIR=$HERE/../target/release
fi
if [ -n "$BIN_DIR" ]; then
    BIN_DIR=$(cd "$BIN_DIR" && pwd)
    PATH=$BIN_DIR:$PATH
fi
if [ "$(id -u)" != 0 ]; then
    echo "driver-check: needs root (loop devices, /dev/walb, mkfs, mount)" >&2
    exit 2
fi
for p in wdevc walb-console walb-storage walb-proxy walb-archive losetup blockdev mkfs.ext4; do
    command -v "$p" >/dev/null || { echo "driver-check: $p not found (--bin-dir?)" >&2; exit 2; }
done

NAME=walb-check-$$
WORK=$(mktemp -d /var/tmp/walb-driver-check.XXXXXX)
LOOPS=()
LDEV="" DDEV="" L2="" D2="" # set by new_loop
DEVICES=()
LAB=""
NCHECK=0
CREATE=(wdevc create-wdev)
if [ "$EMULATE" = 1 ]; then
    CREATE+=(--emulate)
    BACKEND=emulator
else
    BACKEND=driver
    [ -e /dev/walb/control ] || {
        echo "driver-check: /dev/walb/control is missing: load the walb module (modprobe walb-mod), or pass --emulate" >&2
        exit 2
    }
fi

cleanup() {
    set +e
    if [ -n "$LAB" ] && [ -f "$LAB/lab.toml" ]; then
        umount "$WORK/mnt" 2>/dev/null
        walb-console lab --dir "$LAB" down --timeout 10 >/dev/null 2>&1
    fi
    for d in "${DEVICES[@]}"; do
        wdevc list 2>/dev/null | grep -q "^$d " && wdevc delete-wdev "$d" >/dev/null 2>&1
    done
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
    if [ "$KEEP" = 1 ]; then echo "driver-check: work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

fail() {
    echo "driver-check: FAIL ($BACKEND): $*" >&2
    exit 1
}
ok() {
    NCHECK=$((NCHECK + 1))
    printf 'ok %2d  %s\n' "$NCHECK" "$*"
}
# new_loop VAR NAME MIB: a loop device over a new sparse file, its path put in VAR (not
# echoed: a command substitution's subshell would not record it for the cleanup).
new_loop() {
    truncate -s "$3M" "$WORK/$2.img"
    local d
    d=$(losetup --find --show "$WORK/$2.img")
    LOOPS+=("$d")
    printf -v "$1" '%s' "$d"
}
# One lsid out of `wdevc get-lsids`.
lsid() { wdevc get-lsids "$NAME" | awk -v k="$1" '$1 == k { print $2 }'; }
# The seven lsids in the driver's order must never decrease along it.
check_invariants() {
    local text
    text=$(wdevc get-lsids "$NAME")
    echo "$text" | awk -v what="$1" '
        { v[$1] = $2 }
        END {
            n = split("oldest prev_written written permanent flush completed latest", k, " ")
            for (i = 2; i <= n; i++)
                if (!(k[i] in v) || v[k[i-1]] + 0 > v[k[i]] + 0) {
                    printf "lsid invariant broken %s: %s=%s > %s=%s\n", what, k[i-1], v[k[i-1]], k[i], v[k[i]] > "/dev/stderr"
                    exit 1
                }
        }' || fail "lsids $1: $(echo "$text" | tr -s ' \n' ' ')"
}
expect() { # expect WHAT GOT WANT
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}
# Writes $2 KiB of random data at KiB offset $1 of the device, direct and synced.
write_kib() {
    dd if=/dev/urandom of="$WDEV" bs=1k seek="$1" count="$2" oflag=direct conv=fsync,notrunc status=none
}

echo "driver-check: backend $BACKEND, work directory $WORK"

# --- create ---------------------------------------------------------------------------
new_loop LDEV ldev 16
new_loop DDEV ddev 64
PBS=$(blockdev --getpbsz "$LDEV")
wdevc format-ldev "$LDEV" "$DDEV" -n "$NAME" >/dev/null
"${CREATE[@]}" "$LDEV" "$DDEV" -n "$NAME" >/dev/null
DEVICES+=("$NAME")
WDEV=/dev/walb/$NAME
line=$(wdevc list | awk -v n="$NAME" '$1 == n')
[ -n "$line" ] || fail "list does not show $NAME: $(wdevc list)"
ok "create-wdev; list shows: $line"
[ -b "$WDEV" ] || fail "$WDEV is not a block device"
expect "device size (bytes)" "$(blockdev --getsize64 "$WDEV")" $((64 << 20))
ok "$WDEV is a 64 MiB block device"
ver=$(wdevc get-version)
[[ $ver =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "get-version printed '$ver'"
ok "get-version $ver"
fc=$(wdevc is-flush-capable "$NAME")
[[ $fc =~ ^[01]$ ]] || fail "is-flush-capable printed '$fc'"
ok "is-flush-capable $fc"
cap=$(wdevc get-log-capacity "$NAME")
ring=$(wdevc ldev-info "$LDEV" | awk '$1 == "ringBufferSize:" { print $2 }')
expect "get-log-capacity against the superblock's ring size" "$cap" "$ring"
ok "get-log-capacity $cap blocks of $PBS bytes (= ldev-info ringBufferSize)"
check_invariants "at start"
expect "log usage at start" "$(wdevc get-log-usage "$NAME")" 0
ok "fresh device: lsids in order, log usage 0"

# --- writes advance the lsids, and the log holds them ---------------------------------
cp "$WORK/ddev.img" "$WORK/ddev-initial.img"
before=$(wdevc get-permanent-lsid "$NAME")
write_kib 0 1024
write_kib 4096 256
write_kib 512 64 # overwrites part of the first write
after=$(wdevc get-permanent-lsid "$NAME")
min=$(((1024 + 256 + 64) * 1024 / PBS))
[ $((after - before)) -ge "$min" ] || fail "permanent lsid moved $before -> $after for $min blocks written"
check_invariants "after writes"
ok "1.3 MiB written: permanent lsid $before -> $after"
for _ in $(seq 50); do # the data IOs finish after their logs are permanent
    [ "$(lsid written)" = "$(lsid permanent)" ] && break
    sleep 0.1
done
wdevc force-checkpoint "$NAME"
expect "written after a checkpoint" "$(lsid written)" "$(lsid permanent)"
expect "prev_written after a checkpoint" "$(lsid prev_written)" "$(lsid written)"
expect "get-written-lsid" "$(wdevc get-written-lsid "$NAME")" "$(lsid written)"
expect "get-completed-lsid" "$(wdevc get-completed-lsid "$NAME")" "$(lsid completed)"
expect "get-oldest-lsid" "$(wdevc get-oldest-lsid "$NAME")" 0
ok "force-checkpoint: written = prev_written = permanent = $(lsid written); get-*-lsid agree with get-lsids"
usage=$(wdevc get-log-usage "$NAME")
expect "log usage" "$usage" "$(($(lsid latest) - $(lsid oldest)))"
ok "get-log-usage $usage = latest - oldest"
end=$(lsid permanent)
wdevc wlog-cat "$LDEV" -b 0 -e "$end" -o "$WORK/all.wlog" 2>"$WORK/err" ||
    fail "wlog-cat: $(cat "$WORK/err")"
wdevc wlog-redo "$WORK/ddev-initial.img" "$WORK/all.wlog" >/dev/null 2>"$WORK/err" ||
    fail "wlog-redo: $(cat "$WORK/err")"
head -c $((64 << 20)) "$WDEV" | cmp -s - "$WORK/ddev-initial.img" ||
    fail "the wlog [0, $end) applied to the initial data device differs from $WDEV"
ok "wlog-cat [0, $end) + wlog-redo onto the initial data device reproduces the device"

# --- checkpoint interval, oldest lsid --------------------------------------------------
iv=$(wdevc get-checkpoint-interval "$NAME")
wdevc set-checkpoint-interval "$NAME" 2500
expect "checkpoint interval" "$(wdevc get-checkpoint-interval "$NAME")" 2500
wdevc set-checkpoint-interval "$NAME" "$iv"
ok "set-checkpoint-interval round trip (was $iv ms)"
if wdevc set-oldest-lsid "$NAME" $(($(lsid prev_written) + 1)) 2>/dev/null; then
    fail "set-oldest-lsid past prev_written was accepted"
fi
ok "set-oldest-lsid past prev_written refused"
wdevc set-oldest-lsid "$NAME" "$(lsid prev_written)"
expect "oldest after set-oldest-lsid" "$(wdevc get-oldest-lsid "$NAME")" "$(lsid prev_written)"
expect "log usage after set-oldest-lsid" "$(wdevc get-log-usage "$NAME")" 0
check_invariants "after set-oldest-lsid"
ok "set-oldest-lsid $(lsid oldest): log usage 0"

# --- freeze / melt --------------------------------------------------------------------
wdevc freeze "$NAME"
expect "is-frozen after freeze" "$(wdevc is-frozen "$NAME")" 1
wdevc melt "$NAME"
expect "is-frozen after melt" "$(wdevc is-frozen "$NAME")" 0
wdevc freeze "$NAME" 1
expect "is-frozen after freeze 1" "$(wdevc is-frozen "$NAME")" 1
for _ in $(seq 50); do
    [ "$(wdevc is-frozen "$NAME")" = 0 ] && break
    sleep 0.1
done
expect "is-frozen 5 s after freeze with a 1-s timeout" "$(wdevc is-frozen "$NAME")" 0
write_kib 8192 64
ok "freeze, melt, freeze with a timeout melts by itself; writes go on"

# --- resize ---------------------------------------------------------------------------
truncate -s 96M "$WORK/ddev.img"
losetup -c "$DDEV"
wdevc resize "$NAME"
expect "device size after resize" "$(blockdev --getsize64 "$WDEV")" $((96 << 20))
write_kib $((90 << 10)) 64
if wdevc resize "$NAME" 32m 2>/dev/null; then
    fail "resize to a smaller size was accepted"
fi
ok "resize grows the device to 96 MiB (the grown data device); shrinking refused"

# --- overflow, reset-wal --------------------------------------------------------------
expect "is-log-overflow before" "$(wdevc is-log-overflow "$NAME")" 0
kib=$(((cap * PBS / 1024) + 2048))
dd if=/dev/urandom of="$WDEV" bs=1M count=$((kib / 1024)) oflag=direct conv=fsync,notrunc status=none
expect "is-log-overflow after writing more than the log holds" "$(wdevc is-log-overflow "$NAME")" 1
ok "$((kib / 1024)) MiB written to a $((cap * PBS >> 20)) MiB log without releasing it: overflow"
wdevc reset-wal "$NAME"
expect "is-log-overflow after reset-wal" "$(wdevc is-log-overflow "$NAME")" 0
expect "latest lsid after reset-wal" "$(lsid latest)" 0
expect "oldest lsid after reset-wal" "$(lsid oldest)" 0
write_kib 0 64
[ "$(lsid permanent)" -gt 0 ] || fail "no permanent log after reset-wal and a write"
check_invariants "after reset-wal"
ok "reset-wal clears the overflow and the lsids; logging resumes"

# --- workload through the device ------------------------------------------------------
before=$(lsid permanent)
wdevc workload "$NAME" --count 200 --min-io 4k --max-io 64k --flush-interval 50 >/dev/null
[ "$(lsid permanent)" -gt "$before" ] || fail "workload did not advance the permanent lsid"
ok "workload: permanent lsid $before -> $(lsid permanent)"

# --- delete ---------------------------------------------------------------------------
wdevc delete-wdev "$NAME"
DEVICES=()
wdevc list | awk -v n="$NAME" '$1 == n { exit 1 }' || fail "$NAME still listed after delete-wdev"
[ ! -e "$WDEV" ] || fail "$WDEV still exists after delete-wdev"
"${CREATE[@]}" "$LDEV" "$DDEV" -n "$NAME" >/dev/null
DEVICES+=("$NAME")
expect "size after re-create" "$(blockdev --getsize64 "$WDEV")" $((96 << 20))
[ "$(lsid permanent)" -gt 0 ] || fail "re-created device lost its log"
wdevc delete-wdev "$NAME"
DEVICES=()
ok "delete-wdev removes the device; create-wdev again finds the log and the new size"

# --- the pipeline on this backend -----------------------------------------------------
if [ "$PIPELINE" = 1 ]; then
    LAB=$WORK/lab
    LAB_NAME=$NAME-lab
    new_loop L2 lab-ldev 32
    new_loop D2 lab-ddev 64
    up=(walb-console lab --dir "$LAB" up --device "$LAB_NAME" --ldev "$L2" --ddev "$D2"
        --port-base "$PORT_BASE")
    [ "$EMULATE" = 1 ] || up+=(--driver)
    "${up[@]}" >"$WORK/lab-up.out" 2>&1 || fail "lab up: $(cat "$WORK/lab-up.out")"
    DEVICES+=("$LAB_NAME")
    grep -q "restorable at gid" "$WORK/lab-up.out" || fail "lab up made no full backup: $(cat "$WORK/lab-up.out")"
    ok "lab up on $L2/$D2: s0, p0, a0, a1 answer, full backup restorable"
    C=(walb-console --cluster "$LAB/cluster.toml" --exec)
    LWDEV=/dev/walb/$LAB_NAME
    mkfs.ext4 -q -F "$LWDEV"
    mkdir -p "$WORK/mnt"
    mount "$LWDEV" "$WORK/mnt"
    head -c 3M /dev/urandom >"$WORK/mnt/data.bin"
    sha=$(sha256sum <"$WORK/mnt/data.bin" | cut -d' ' -f1)
    umount "$WORK/mnt"
    gid=$("${C[@]}" snapshot s0 vol a0 | tail -n 1)
    [[ $gid =~ ^[0-9]+$ ]] || fail "snapshot printed '$gid'"
    img=$("${C[@]}" restore a0 vol "$gid" | tail -n 1)
    cmp -s "$LWDEV" "$img" || fail "restored gid $gid ($img) differs from $LWDEV"
    mount -o loop,ro "$img" "$WORK/mnt"
    got=$(sha256sum <"$WORK/mnt/data.bin" | cut -d' ' -f1)
    umount "$WORK/mnt"
    expect "data.bin in the restore" "$got" "$sha"
    "${C[@]}" del-restored a0 vol "$gid" >/dev/null
    ok "mkfs, a file written, snapshot gid $gid, restore equals the device and holds the file"
    walb-console lab --dir "$LAB" down --timeout 30 >/dev/null
    DEVICES=()
    ok "lab down"
fi

echo "driver-check: all $NCHECK checks passed ($BACKEND)"
