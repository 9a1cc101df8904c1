#!/usr/bin/env bash
# Runs every benchmark side by side and writes BENCHMARKS.md:
#   1. wall time: the criterion benches `scope` and `promise` (short times);
#   2. instruction counts: `instructions report` runs each case under
#      `valgrind --tool=callgrind` (apt-get install valgrind if missing),
#      reads criterion's results and writes the report;
#   3. the promise and scope rows again with `deferral` built without
#      `std` (no_std_rows.sh), the task queue, and issue 25's firmware
#      program (flash, RAM, task futures; benches/firmware/measure.sh,
#      which runs it in QEMU), appended.
# Usage: bash benches/report.sh   (from anywhere; about 11 minutes on 2 cores)
# Knobs: WARM_UP (seconds, default 1), MEASURE (seconds, default 2),
#        OUT (default BENCHMARKS.md at the crate root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WARM_UP=${WARM_UP:-1}
MEASURE=${MEASURE:-2}
OUT=${OUT:-$PWD/BENCHMARKS.md}

if ! command -v valgrind >/dev/null; then
    echo "valgrind not found: instruction counts will be missing (apt-get install valgrind)" >&2
fi

cargo bench -p deferral-bench --bench scope --bench promise -- \
    --warm-up-time "$WARM_UP" --measurement-time "$MEASURE" --noplot
cargo bench -p deferral-bench --bench instructions -- report --out "$OUT" --command "bash benches/report.sh"
# The promise and scope rows again with `deferral` built without `std`,
# beside the default build's (benches/no_std_rows.sh), appended.
bash benches/no_std_rows.sh >> "$OUT"
# The task queue (benches/queue.rs): instructions per task under callgrind
# and polls/allocations/wall time per task, N = 1..4096, appended.
{
    printf '\n## TaskQueue, N = 1..4096\n\n'
    printf 'From `cargo bench -p deferral-bench --bench queue -- instructions` and `-- table` (same run). The target (issue "TaskQueue at p-queue'"'"'s level"): polls per task flat; instructions per task within 1.5× of `buffer_unordered` and of `futures-buffered`.\n'
    cargo bench -p deferral-bench --bench queue -- instructions 2>/dev/null
    cargo bench -p deferral-bench --bench queue -- table 2>/dev/null
} >> "$OUT"
# Issue 25's firmware program with deferral, by hand and bare, on thumbv7m
# and thumbv6m (benches/firmware: builds each, runs it in QEMU), appended.
bash benches/firmware/measure.sh >> "$OUT"
