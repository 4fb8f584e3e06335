#!/usr/bin/env bash
# A tour of the data kernel's tools on the golden data of walb-tools 1.0.19.
#
# Builds wdevc, then: lists a reference wlog exactly as walb-tools does, converts the three
# wlogs to wdiffs, merges them, redoes the merge onto a zero 16 MiB image and compares its
# SHA-256 with the reference, streams the same image virtually, extracts wlog 1 from the
# wrapped log device image, and shows what happens with a truncated and a corrupt file.
set -euo pipefail
cd "$(dirname "$0")/../.."
golden=${WALB_GOLDEN_DIR:-../shared/golden/walb-tools-1.0.19}
[ -d "$golden" ] || { echo "golden data not found at $golden (set WALB_GOLDEN_DIR)" >&2; exit 1; }
golden=$(cd "$golden" && pwd)

cargo build --release -q -p wdevc --bin wdevc
wdevc=${CARGO_TARGET_DIR:-$PWD/target}/release/wdevc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s\n' "$*"; }
expect() { grep " $1\$" "$golden/SHA256SUMS.images" | cut -d' ' -f1; }

step "wlog-show of pub-512-1.wlog (first and last lines; identical to walb-tools' listing)"
"$wdevc" wlog-show "$golden/pub-512-1.wlog" > "$work/show.txt"
head -4 "$work/show.txt"; echo "..."; tail -7 "$work/show.txt"
cmp -s "$work/show.txt" "$golden/pub-512-1.wlog.show.txt" && echo "listing: identical to the reference"

step "wlog-to-wdiff: three wlogs to sorted wdiffs (zstd), the second one indexed"
for n in 1 2 3; do
  flag=""; [ "$n" = 2 ] && flag="--indexed"
  "$wdevc" wlog-to-wdiff $flag -i "$golden/pub-512-$n.wlog" -o "$work/$n.wdiff"
  printf '  pub-512-%s.wlog  %8d bytes -> %s.wdiff %8d bytes\n' "$n" "$(stat -c %s "$golden/pub-512-$n.wlog")" "$n" "$(stat -c %s "$work/$n.wdiff")"
done

step "wdiff-merge 1+2+3 (oldest first), then wdiff-redo onto a zero 16 MiB image"
"$wdevc" wdiff-merge -o "$work/merged.wdiff" "$work/1.wdiff" "$work/2.wdiff" "$work/3.wdiff"
truncate -s 16M "$work/img"
"$wdevc" wdiff-redo "$work/img" "$work/merged.wdiff"
got=$(sha256sum "$work/img" | cut -d' ' -f1); want=$(expect pub-512-after-3.img)
echo "  sha256 $got"; echo "  ref    $want"; [ "$got" = "$want" ] && echo "  image: identical to the reference"

step "virt-full-cat: the same image streamed from an empty base and the three wdiffs"
got=$("$wdevc" virt-full-cat -s 16m -o - "$work/1.wdiff" "$work/2.wdiff" "$work/3.wdiff" | sha256sum | cut -d' ' -f1)
echo "  sha256 $got"; [ "$got" = "$want" ] && echo "  image: identical to the reference"

step "the reference merged wdiff and the reference wlogs give the same image too"
truncate -s 0 "$work/img2"; truncate -s 16M "$work/img2"
"$wdevc" wdiff-redo "$work/img2" "$golden/pub-512-merged.wdiff"
[ "$(sha256sum < "$work/img2" | cut -d' ' -f1)" = "$want" ] && echo "  pub-512-merged.wdiff: identical"
truncate -s 0 "$work/img3"; truncate -s 16M "$work/img3"
"$wdevc" wlog-redo "$work/img3" "$golden/pub-512-1.wlog" "$golden/pub-512-2.wlog" "$golden/pub-512-3.wlog"
[ "$(sha256sum < "$work/img3" | cut -d' ' -f1)" = "$want" ] && echo "  wlog-redo 1 2 3: identical"

step "ldev-info and wlog-cat on pub-512.ldev (its log wraps around the ring)"
cp "$golden/pub-512.ldev" "$work/ldev"
"$wdevc" ldev-info "$work/ldev" | sed 's/^/  /'
"$wdevc" wlog-cat "$work/ldev" -o "$work/extracted.wlog"
"$wdevc" wlog-show "$work/extracted.wlog" | tail -7 | sed 's/^/  /'

step "bad input: a truncated wlog (exit 4) and a corrupted wdiff (exit 3)"
head -c 100000 "$golden/pub-512-1.wlog" > "$work/trunc.wlog"
set +e
"$wdevc" wlog-show "$work/trunc.wlog" > /dev/null; echo "  exit code $?"
cp "$work/1.wdiff" "$work/bad.wdiff"; printf '\x55' | dd of="$work/bad.wdiff" bs=1 seek=40 conv=notrunc 2>/dev/null
"$wdevc" wdiff-redo "$work/img" "$work/bad.wdiff"; echo "  exit code $?"
set -e
echo; echo "demo done"
