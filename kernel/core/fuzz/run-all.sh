#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after another, and prints a
# summary line per target. Usage: kernel/core/fuzz/run-all.sh [SECONDS] [TARGET...]
set -u
cd "$(dirname "$0")"
secs=${1:-600}; shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(superblock logpack wlog ldev compress meta wdiff_sorted wdiff_indexed)
export RUSTC_BOOTSTRAP=1
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 \
    > "logs/$t.log" 2>&1
  rc=$?
  echo "$t: exit $rc, $(grep -E '^(#[0-9]+|Done)' "logs/$t.log" | tail -1)"
done
