#!/usr/bin/env bash
# AddressSanitizer and ThreadSanitizer over the library and integration
# tests, on nightly with a sanitized std (`-Zbuild-std`). Called by .ci/run;
# runnable alone: `bash .ci/sanitizers.sh [address|thread]...`.
#
# Skipped here: the trybuild compile-fail test (it drives cargo itself),
# doc-tests (rustdoc with sanitizers needs matching flags for every crate),
# and, under ASan, the tests that leak on purpose (a forgotten scope,
# promise chain, queued task or submitter, a forgotten `SharedPromise`
# handle: LeakSanitizer would rightly report them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

host=$(rustc +nightly -vV | sed -n 's/^host: //p')
sanitizers=("$@")
[[ ${#sanitizers[@]} -gt 0 ]] || sanitizers=(address thread)

# ThreadSanitizer only finds races between threads: it runs the test files
# that start any (std threads, multi-threaded runtimes), found by name so a
# new threaded test is never left out. Half the files: half the
# instrumented builds of this step.
threaded=()
for f in tests/*.rs; do
    if grep -qE 'thread::(spawn|scope)|std::thread|tokio::|spawn_blocking|ThreadPool' "$f"; then
        threaded+=(--test "$(basename "$f" .rs)")
    fi
done

for san in "${sanitizers[@]}"; do
    echo "---- ${san} sanitizer ----"
    if [[ $san == thread ]]; then
        targets=(--lib "${threaded[@]}")
    else
        targets=(--lib --tests)
    fi
    flags="-Zsanitizer=${san} -Cdebug-assertions"
    # TSan: std's atomics must be instrumented too, hence -Zbuild-std for
    # both; `--cfg sanitize` is not needed by this crate.
    RUSTFLAGS="$flags" \
    ASAN_OPTIONS="detect_leaks=1" \
    LSAN_OPTIONS="suppressions=$PWD/.ci/lsan.supp" \
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    CARGO_TARGET_DIR="target/sanitize-${san}" \
        cargo +nightly test -Zbuild-std --target "$host" --all-features \
        "${targets[@]}" -- --skip misuse_is_a_compile_error \
        $([[ $san == address ]] && echo --skip forgetting_a_scope_a_promise_or_a_resolver_is_safe \
            --skip forget_a_registered_handle_leaks_the_original \
            --skip a_forgotten_chain_drops_nothing_and_the_thread_goes_on \
            --skip forgotten_cancelled_task_and_submitter)
done
