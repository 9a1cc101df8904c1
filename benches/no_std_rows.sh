#!/usr/bin/env bash
# Prints (markdown, for BENCHMARKS.md) the promise and scope rows of the
# `instructions` bench twice, side by side: with `deferral`'s default
# features (`std`) and with `deferral` built without `std` (its `alloc`
# build, the one firmware gets minus the heap): no creation-context capture,
# no panic catching, no thread-local ambient scope. The alternatives' rows
# do not depend on `deferral`'s features; they are shown once, for scale.
# Usage: bash benches/no_std_rows.sh   (called by benches/report.sh; needs
# valgrind; about 2 minutes on 2 cores, most of it the second build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

exe() {
    # The path cargo prints for the bench executable it built.
    "$@" 2>&1 | sed -n 's/.*Executable instructions\.rs (\(.*\))$/\1/p' | tail -1
}
with_std=$(exe cargo bench -p deferral-bench --bench instructions --no-run)
# A target directory of its own, so that neither build invalidates the other.
without_std=$(CARGO_TARGET_DIR=target/bench-no-std exe \
    cargo bench -p deferral-bench --no-default-features --bench instructions --no-run)

iters=500
ir() {
    local total
    total=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        --toggle-collect='*deferral_bench_measure*' "$1" case "$2" "$3" "$iters" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    echo $((total / iters))
}

printf '\n## Without `std`: what the default features cost\n\n'
printf 'The same cases (instructions per iteration, callgrind, this run), with `deferral`'"'"'s default features and with `default-features = false, features = ["alloc"]` (`cargo bench -p deferral-bench --no-default-features --bench instructions`; `bash benches/no_std_rows.sh`). Without `std` a promise or link captures no creation context and nothing catches panics; the alternatives do not change.\n\n'
printf '| case | ours, default (`std`) | ours, without `std` | alternative | alternative'"'"'s |\n'
printf '|---|--:|--:|---|--:|\n'
while read -r group ours theirs; do
    a=$(ir "$with_std" "$group" "$ours")
    b=$(ir "$without_std" "$group" "$ours")
    if [ "$theirs" = "-" ]; then
        printf '| `%s/%s` | %s | %s | | |\n' "$group" "$ours" "$a" "$b"
    else
        printf '| `%s/%s` | %s | %s | `%s` | %s |\n' "$group" "$ours" "$a" "$b" "$theirs" "$(ir "$with_std" "$group" "$theirs")"
    fi
done <<'ROWS'
promise_in_executor new futures_lazy
promise_in_executor lazy futures_lazy
promise_then_1 deferred_then map_ok
promise_then_8 deferred_then map_ok
promise_then_64 deferred_then map_ok
promise_escaping detached oneshot
promise_escaping cell oneshot
scope_empty scope bare
scope_sync_1 scope scopeguard
scope_sync_8 scope scopeguard
scope_async_1 lifo boxed
ROWS
