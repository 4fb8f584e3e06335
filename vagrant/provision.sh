#!/usr/bin/env bash
# provision.sh: turns a fresh Ubuntu VM into the walb lab (run by `vagrant up` as root).
#
# 1. packages: compilers and kernel headers, LVM, file systems, FUSE, tmux, zstd;
# 2. Rust (rustup, stable) and walb built from the checkout synced at /walb, installed
#    in /usr/local/bin;
# 3. the WalB kernel driver: walb-driver at $WALB_DRIVER_REF built for the running kernel,
#    installed as walb-mod and loaded now and at every boot;
# 4. the tutorial's disks (lab-disks.sh, again at every boot);
# 5. driver-check.sh on the driver: every wdevc device command and a backup round trip
#    (skip with WALB_LAB_SKIP_CHECK=1). A failed check fails `vagrant up`.
#
# Running it again (`vagrant provision`) rebuilds walb from the synced checkout and keeps
# the rest.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
DRIVER_REF=${WALB_DRIVER_REF:-42605b1}
DRIVER_DIR=/opt/walb-driver
STATE=/var/lib/walb-lab
SRC=/walb
KVER=$(uname -r)
mkdir -p "$STATE"

step() { echo "==> walb lab: $*"; }

step "packages"
apt-get update -qq
apt-get install -y -qq build-essential "linux-headers-$KVER" git curl ca-certificates \
    pkg-config lvm2 e2fsprogs xfsprogs util-linux tmux zstd >/dev/null
# For the emulator without root (the lab runs as root on the driver); newer releases only.
apt-get install -y -qq fuse3 >/dev/null 2>&1 || echo "fuse3 not available: skipped"

step "Rust"
if [ ! -x /root/.cargo/bin/cargo ]; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable
fi
# shellcheck source=/dev/null
. /root/.cargo/env

step "walb from $SRC"
CARGO_TARGET_DIR=$STATE/target cargo build --release --locked --workspace --bins \
    --manifest-path "$SRC/Cargo.toml"
for b in wdevc walb-storage walb-proxy walb-archive walb-console; do
    install -m 0755 "$STATE/target/release/$b" /usr/local/bin/
done
install -m 0755 "$SRC/vagrant/lab-disks.sh" /usr/local/sbin/walb-lab-disks
install -m 0755 "$SRC/vagrant/driver-check.sh" /usr/local/sbin/walb-driver-check

step "walb-driver $DRIVER_REF for kernel $KVER"
if [ ! -d "$DRIVER_DIR/.git" ]; then
    git clone -q https://github.com/walb-linux/walb-driver "$DRIVER_DIR"
fi
git -C "$DRIVER_DIR" fetch -q origin
git -C "$DRIVER_DIR" checkout -q "$DRIVER_REF"
make -s -C "$DRIVER_DIR/module" clean >/dev/null
make -s -C "$DRIVER_DIR/module"
install -D -m 0644 "$DRIVER_DIR/module/walb-mod.ko" "/lib/modules/$KVER/extra/walb-mod.ko"
depmod -a "$KVER"
echo walb-mod >/etc/modules-load.d/walb.conf
modprobe walb-mod
[ -e /dev/walb/control ] || { echo "walb-mod loaded but /dev/walb/control is missing" >&2; exit 1; }
echo "driver version $(wdevc get-version)"

step "the tutorial's disks"
cat >/etc/systemd/system/walb-lab-disks.service <<'EOF'
[Unit]
Description=walb lab: the tutorial's loop device, LVM volumes and /mnt/tutorial
After=local-fs.target lvm2-monitor.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/walb-lab-disks

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable -q walb-lab-disks.service
/usr/local/sbin/walb-lab-disks

if [ -z "${WALB_LAB_SKIP_CHECK:-}" ]; then
    step "driver-check on the WalB driver (log: /var/log/walb-driver-check.log)"
    if ! /usr/local/sbin/walb-driver-check --bin-dir /usr/local/bin 2>&1 |
        tee /var/log/walb-driver-check.log; then
        echo "driver-check failed: see /var/log/walb-driver-check.log" >&2
        exit 1
    fi
fi

step "ready"
cat <<EOF
The lab is ready. Next:
  vagrant ssh
  sudo -i
  and follow /walb/vagrant/GUIDE.md (the tutorial, on the WalB driver).
EOF
