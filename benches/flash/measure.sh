#!/usr/bin/env bash
# Prints the flash (`.text` + `.rodata`) of the baseline, the scope and the
# hand-written variant on thumbv7m and thumbv6m, and what each costs over
# the baseline. Needs the two thumb targets and llvm-size (`llvm` package).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
size() { llvm-size -A "$1" | awk '$1 == ".text" || $1 == ".rodata" {n += $2} END {print n}'; }
for target in thumbv7m-none-eabi thumbv6m-none-eabi; do
    extra=()
    [[ $target == thumbv6m* ]] && extra=(--features m0)
    declare -A text=()
    for variant in base scope hand; do
        features=("${extra[@]}")
        if [[ $variant != base ]]; then
            if [[ ${#features[@]} -gt 0 ]]; then features=(--features "m0,$variant"); else features=(--features "$variant"); fi
        fi
        cargo build --release --quiet --target "$target" "${features[@]}"
        text[$variant]=$(size "target/$target/release/deferral-flash")
    done
    echo "$target: baseline ${text[base]} B; scope +$((text[scope] - text[base])) B; hand-written +$((text[hand] - text[base])) B"
done
