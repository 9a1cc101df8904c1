#!/usr/bin/env bash
# No `core::fmt` from the crate in a no_std release build (issue 25,
# deliverable 2), checked on the symbol tables of two firmwares built for
# thumbv7m-none-eabi with the measured profile (LTO, opt-level "s",
# panic = "abort"): `fw-deferral` (src/bin/deferral.rs, the measured
# program: `scope_local` + `guard`, `SignalCell`, `SharedCell` on Embassy)
# and `fw-paths` (src/bin/paths.rs: more of the crate — `scope` in the
# three orders, every kind of cleanup, a full fixed slab, a cancelled
# scope, `PromiseCell`, `DeferredPromise` chains, `TaskQueue`), which is
# also run in QEMU (exit status 0: its checks passed).
#
# What counts as formatting ("fmt symbols" below) is whatever formats a
# *value*: any linked function of `core::fmt` (`Formatter`,
# `core::fmt::write`, `Arguments`, the integer impls, `PadAdapter` for
# `{:#?}`), any `Debug` / `Display` / `fmt::Write` impl,
# `core::panicking::assert_failed*` (`assert_eq!`: both sides with
# `Debug`) and `core::result::unwrap_failed` (`Result::unwrap`/`expect`:
# the error with `Debug`). Not counted: the panic entry points that carry
# only a message — `core::panicking::panic_fmt`, `panic`, `panic_display`,
# `panic_bounds_check`, `panic_const_*`, `core::option::unwrap_failed` /
# `expect_failed` (`Option::unwrap`/`expect("literal")`),
# `core::cell::panic_already_borrowed`: with a handler that ignores its
# message they are a few bytes each and format nothing, and with one that
# formats they need only what the handler needs anyway (check 2). They are
# listed (with their callers, for `expect`) so panic paths stay visible.
#
# Two checks:
#  1. The builds as measured (a panic handler that ignores its message):
#     no fmt symbol at all. Anything found is formatting on a path that is
#     not a panic (a `write!` reached from the crate's code, say).
#  2. The same program with a panic handler that formats its message, as
#     `panic-probe` or `panic-semihosting` do (`--features fmt-panic`): then
#     every panic's message arguments are linked, and the handler itself
#     needs some of `core::fmt` (`core::fmt::write`, `Formatter::pad`,
#     `Display` for `&str` and `u32` for the location). The two builds
#     must link no fmt symbol that the hand-written twin (`fw-hand`, same
#     handler) does not: whatever it adds comes from `deferral`'s panic
#     paths (a `Debug` in an `assert_eq!`, an `unwrap()`, `{:?}` in a
#     message) — the "1.7 KB of formatting" issue 25 measured.
# On failure it prints each offending symbol with its size and the
# functions that branch to it, with the source line of the call (the build
# keeps line tables); a `Debug` impl reached only through a vtable shows no
# caller, but the `assert_failed` / `unwrap_failed` that passed it does.
#
# Usage: bash benches/firmware/no_fmt.sh   (from anywhere; idempotent;
# honours CARGO_TARGET_DIR). Needs what measure.sh installs (it reuses its
# installer when run alone).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "${BASH_SOURCE[0]}")"
HERE=$PWD
TARGET=thumbv7m-none-eabi
TARGET_DIR=${CARGO_TARGET_DIR:-$HERE/target}
ELF_DIR=$TARGET_DIR/$TARGET/release

rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
# shellcheck source=llvm_tool.sh
source ./llvm_tool.sh # (the script has cd'd to its folder)
NM=$(llvm_tool llvm-nm)
OBJDUMP=$(llvm_tool llvm-objdump)

FMT='core::fmt::|fmt::Debug|fmt::Display|fmt::Write|Formatter|PadAdapter|assert_failed|core::result::unwrap_failed'
# The message-only panic entry points (listed, not forbidden).
PANICS='core::panicking::|core::option::(unwrap|expect)_failed|panic_already_'

# Demangled symbol names, legacy escapes undone and hashes dropped, one
# per line: "NAME<TAB>SIZE<TAB>RAW".
symbols() {
    local addr size kind raw name
    "$NM" -C --print-size --size-sort --defined-only "$1" |
        while read -r addr size kind raw; do
            name=$(sed -E 's/^_\$LT\$/</; s/\$LT\$/</g; s/\$GT\$/>/g; s/\$u20\$/ /g; s/\$RF\$/\&/g;
                s/\$C\$/,/g; s/\$u7b\$/{/g; s/\$u7d\$/}/g; s/\.\./::/g; s/::h[0-9a-f]{16}$//' <<<"$raw")
            printf '%s\t%s\t%s\n' "$name" "$((16#$size))" "$raw"
        done
}

fmt_symbols() { symbols "$1" | awk -F'\t' -v re="$FMT" '$1 ~ re'; }
panic_symbols() { symbols "$1" | awk -F'\t' -v re="$PANICS" -v fmt="$FMT" '$1 ~ re && $1 !~ fmt'; }

# callers ELF RAW: the functions that branch to RAW, with the source line.
callers() {
    "$OBJDUMP" -d -C -l --no-show-raw-insn "$1" 2>/dev/null | awk -v sym="<$2>" '
        /^[0-9a-f]+ <.*>:$/ { fn = $0; sub(/^[0-9a-f]+ </, "", fn); sub(/>:$/, "", fn); next }
        /^; / { line = substr($0, 3); next }
        index($0, sym) && $0 ~ /\tb/ { print "      called from " fn "  (" line ")" }
    ' | sort -u | head -20
}

report() {
    local elf=$1
    while IFS=$'\t' read -r name size raw; do
        echo "  $size B  $name"
        callers "$elf" "$raw"
    done
}

build() {
    echo "building $* for $TARGET" >&2
    cargo build --release --quiet --target "$TARGET" "$@" >&2
}

failed=0
BINS=(fw-deferral fw-paths)

# 1. As measured: no formatting at all.
build --bin fw-deferral --bin fw-paths
echo "running fw-paths in QEMU" >&2
timeout 120 qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb -nographic \
    -semihosting-config enable=on,target=native -kernel "$ELF_DIR/fw-paths" 2>/dev/null ||
    { echo "FAIL: fw-paths did not pass its checks in QEMU"; exit 1; }
for bin in "${BINS[@]}"; do
    found=$(fmt_symbols "$ELF_DIR/$bin")
    if [[ -n $found ]]; then
        echo "FAIL 1: $bin (panic handler that does not format) links core::fmt:"
        report "$ELF_DIR/$bin" <<<"$found"
        failed=1
    else
        echo "ok 1: $bin (panic handler that does not format) links no core::fmt symbol"
    fi
    echo "  message-only panic entry points linked (allowed):"
    while IFS=$'\t' read -r name size raw; do
        echo "    $size B  $name"
        [[ $name == *expect_failed* ]] && callers "$ELF_DIR/$bin" "$raw"
    done <<<"$(panic_symbols "$ELF_DIR/$bin")"
done

# 2. With a formatting panic handler: nothing beyond the hand-written twin.
build --bin fw-deferral --bin fw-paths --bin fw-hand --features fmt-panic
cut -f1 <<<"$(fmt_symbols "$ELF_DIR/fw-hand")" | sort -u >"$ELF_DIR/fmt-hand.txt"
for bin in "${BINS[@]}"; do
    extra=$(fmt_symbols "$ELF_DIR/$bin" | sort -t$'\t' -k1,1 |
        join -t$'\t' -v1 - "$ELF_DIR/fmt-hand.txt" || true)
    if [[ -n $extra ]]; then
        echo "FAIL 2: with a formatting panic handler, $bin links core::fmt that fw-hand does not:"
        report "$ELF_DIR/$bin" <<<"$extra"
        failed=1
    else
        echo "ok 2: with a formatting panic handler, $bin links no core::fmt symbol beyond fw-hand's ($(wc -l <"$ELF_DIR/fmt-hand.txt") symbols, the handler's own)"
    fi
done
exit "$failed"
