//! Puts `link.x` on the linker search path. Search paths printed by a dependency's build script
//! reach the final link of every program that depends on it (cortex-m-rt does the same); the
//! programs add their own `memory.x`, which `link.x` includes.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("link.x", out.join("link.x")).expect("copy link.x to OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=link.x");
    println!("cargo:rerun-if-changed=build.rs");
}
