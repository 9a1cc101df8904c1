# Sourced by measure.sh and no_fmt.sh: `llvm_tool NAME` prints the path of
# rustup's llvm-tools binary NAME (llvm-size, llvm-nm, llvm-objdump),
# installing the component if it is missing.
llvm_tool() {
    local tool=$1 path
    for path in "$(rustc --print sysroot)"/lib/rustlib/*/bin/"$tool"; do
        [[ -x $path ]] && { echo "$path"; return; }
    done
    rustup component add llvm-tools >&2 || true
    for path in "$(rustc --print sysroot)"/lib/rustlib/*/bin/"$tool"; do
        [[ -x $path ]] && { echo "$path"; return; }
    done
    command -v "$tool" || { echo "no $tool: rustup component add llvm-tools" >&2; return 1; }
}
