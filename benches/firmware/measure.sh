#!/usr/bin/env bash
# Issue 25's firmware program, side by side: builds the three variants
# (`fw-deferral`, `fw-hand`, `fw-bare`; see src/lib.rs) for
# thumbv7m-none-eabi (Cortex-M3) and thumbv6m-none-eabi (Cortex-M0, with the
# crate's `portable-atomic-critical-section` feature), release (LTO,
# opt-level "s", a panic handler that does not format), runs each in QEMU
# (each must exit 0: every check passed), and prints one markdown table per
# target: flash (.text + .rodata, from llvm-size; the vector table is left
# out, the same in every variant), RAM (.data + .bss: statics, the task
# pools holding the tasks' futures, the executor's state; no stack), and
# the two task futures' sizes (`size_of`, printed by the firmware), then the
# deltas against the issue's targets. The output is a BENCHMARKS.md
# section; build logs go to stderr.
#
# Usage: bash benches/firmware/measure.sh   (from anywhere; idempotent)
# Installs what it needs if missing: the two rustup targets, rustup's
# llvm-tools component (for llvm-size; falls back to llvm-size on PATH),
# qemu-system-arm (apt-get). Honours CARGO_TARGET_DIR and
# CARGO_BUILD_JOBS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
HERE=$PWD

TARGETS=(thumbv7m-none-eabi thumbv6m-none-eabi)
VARIANTS=(fw-deferral fw-hand fw-bare)
# The issue's targets: deferral within 600 B of flash and 64 B of task
# future of the hand-written twin.
FLASH_BUDGET=600
FUTURE_BUDGET=64

# ---------------------------------------------------------------- installs
installed_targets=$(rustup target list --installed)
for t in "${TARGETS[@]}"; do
    grep -qx "$t" <<<"$installed_targets" || rustup target add "$t" >&2
done

# llvm-size (and llvm-nm, llvm-objdump for no_fmt.sh): rustup's llvm-tools.
# shellcheck source=llvm_tool.sh
source ./llvm_tool.sh # (the script has cd'd to its folder)
LLVM_SIZE=$(llvm_tool llvm-size)

command -v qemu-system-arm >/dev/null ||
    (apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-system-arm >&2)

TARGET_DIR=${CARGO_TARGET_DIR:-$HERE/target}

# ------------------------------------------------------------------ helpers
# section NAMES...: the summed sizes of the named sections of an ELF.
sections() {
    local elf=$1
    shift
    "$LLVM_SIZE" -A "$elf" | awk -v names=" $* " \
        'index(names, " " $1 " ") {n += $2} END {print n + 0}'
}

qemu() {
    case $1 in
        thumbv7m-none-eabi) echo "qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb" ;;
        thumbv6m-none-eabi) echo "qemu-system-arm -machine microbit" ;;
    esac
}

signed() { if (($1 >= 0)); then echo "+$1"; else echo "$1"; fi; }
verdict() { if (($1 <= $2)); then echo "met"; else echo "missed"; fi; }

declare -A flash ram sampler consumer

for target in "${TARGETS[@]}"; do
    features=()
    [[ $target == thumbv6m* ]] && features=(--features m0)
    echo "building the firmware variants for $target" >&2
    cargo build --release --quiet --bins --target "$target" "${features[@]}" >&2
    for v in "${VARIANTS[@]}"; do
        elf=$TARGET_DIR/$target/release/$v
        echo "running $v on $target in QEMU" >&2
        set +e
        out=$(timeout 120 $(qemu "$target") -nographic \
            -semihosting-config enable=on,target=native -kernel "$elf" 2>/dev/null)
        rc=$?
        set -e
        echo "$out" >&2
        if [[ $rc -ne 0 ]]; then
            echo "FAILED: $v on $target exited with status $rc" >&2
            exit 1
        fi
        grep -qx "all checks passed" <<<"$out" || {
            echo "FAILED: $v on $target did not report its checks" >&2
            exit 1
        }
        flash[$target/$v]=$(sections "$elf" .text .rodata)
        ram[$target/$v]=$(sections "$elf" .data .bss .uninit)
        sampler[$target/$v]=$(sed -n 's/^sampler task future: \([0-9]*\)$/\1/p' <<<"$out")
        consumer[$target/$v]=$(sed -n 's/^consumer task future: \([0-9]*\)$/\1/p' <<<"$out")
    done
done

# ------------------------------------------------------------------ report
cat <<EOF

## Firmware: issue 25's program, with deferral and by hand

From \`bash benches/firmware/measure.sh\` (same run). One Embassy program
three ways (\`benches/firmware/src/\`): a sampler task powers an ADC up,
awaits a reading with a timeout and powers it down on every path (reading,
error, timeout cancellation); SysTick signals the reading through a
\`static\` cell; two tasks await one \`static\` result. **deferral**:
\`ScopeBuilder::new().capacity::<16>().run_local\` with \`d.guard\`,
\`SignalCell\`, \`SharedCell\`. **hand-written**: a 20-line \`Drop\` guard,
embassy-sync \`Signal\` and \`OnceLock\` (whose \`get\` re-polls by waking
itself: it stores no waker, where \`SharedCell\` keeps one per waiter).
**bare skeleton**: the same
executor, tasks and pokes with no cleanup or signalling library (atomic
words the tasks poll): the floor. Release, \`lto = true\`,
\`opt-level = "s"\`, \`codegen-units = 1\`, a panic handler that does not
format; every build ran in QEMU and passed its checks (semihosting exit
status 0). Flash is \`.text\` + \`.rodata\` (\`llvm-size -A\`; the vector
table, the same in all three, left out); RAM is \`.data\` + \`.bss\`
(statics, the task pools that hold the tasks' futures, the executor; no
stack). Task futures are \`size_of\` of each task's future, printed by the
firmware. Targets (issue 25): deferral's flash ≤ hand-written + ${FLASH_BUDGET} B, its
task future ≤ hand-written + ${FUTURE_BUDGET} B.
EOF

for target in "${TARGETS[@]}"; do
    case $target in
        thumbv7m-none-eabi) cpu="Cortex-M3, QEMU \`lm3s6965evb\`" ;;
        thumbv6m-none-eabi) cpu="Cortex-M0, QEMU \`microbit\`, \`--features portable-atomic-critical-section\`" ;;
    esac
    d=$target/fw-deferral
    h=$target/fw-hand
    df=$((flash[$d] - flash[$h]))
    ds=$((sampler[$d] - sampler[$h]))
    printf '\n### %s (%s)\n\n' "$target" "$cpu"
    echo "| build | flash (text + rodata) | RAM (data + bss) | sampler task future | consumer task future |"
    echo "|---|--:|--:|--:|--:|"
    for v in "${VARIANTS[@]}"; do
        case $v in
            fw-deferral) name="with deferral" ;;
            fw-hand) name="hand-written (\`Drop\` guard, embassy-sync \`Signal\` + \`OnceLock\`)" ;;
            fw-bare) name="bare skeleton (the floor)" ;;
        esac
        k=$target/$v
        echo "| $name | ${flash[$k]} B | ${ram[$k]} B | ${sampler[$k]} B | ${consumer[$k]} B |"
    done
    echo "| deferral − hand-written | $(signed "$df") B (target ≤ +$FLASH_BUDGET: $(verdict "$df" "$FLASH_BUDGET")) | $(signed $((ram[$d] - ram[$h]))) B | $(signed "$ds") B (target ≤ +$FUTURE_BUDGET: $(verdict "$ds" "$FUTURE_BUDGET")) | $(signed $((consumer[$d] - consumer[$h]))) B |"
    echo "| hand-written − bare | $(signed $((flash[$h] - flash[$target/fw-bare]))) B | $(signed $((ram[$h] - ram[$target/fw-bare]))) B | $(signed $((sampler[$h] - sampler[$target/fw-bare]))) B | $(signed $((consumer[$h] - consumer[$target/fw-bare]))) B |"
done
