//! Writes the `memory.x` of the target's QEMU board where `cortex-m-rt`'s
//! `link.x` finds it: the LM3S6965 (Cortex-M3) or the micro:bit's nRF51822
//! (Cortex-M0); both have 256 KiB of flash at 0.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let ram = if target.starts_with("thumbv6m") {
        "16K"
    } else {
        "64K"
    };
    let memory = format!(
        "MEMORY\n{{\n  FLASH : ORIGIN = 0x00000000, LENGTH = 256K\n  RAM   : ORIGIN = 0x20000000, LENGTH = {ram}\n}}\n"
    );
    fs::write(out.join("memory.x"), memory).expect("write memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=build.rs");
}
