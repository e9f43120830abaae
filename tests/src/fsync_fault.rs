//! fsync failures for a real process: an LD_PRELOAD shim (`fsync_fault.c`, built with the
//! host `cc`) makes `fsync`/`fdatasync` of one file return EIO after N successful calls. The
//! only way here: a block device that fails on flush needs root and device-mapper
//! (dm-flakey), and there is no FUSE.

use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = include_str!("fsync_fault.c");

/// The built shim, in `dir`.
pub fn build_shim(dir: &Path) -> PathBuf {
    let src = dir.join("fsync_fault.c");
    let so = dir.join("fsync_fault.so");
    std::fs::write(&src, SOURCE).unwrap();
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("cc (the host C compiler) runs");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

/// Makes `command` (a dynamically linked program) see `fsync`/`fdatasync` of files whose path
/// contains `path_part` fail with EIO after `succeed` successful calls.
pub fn inject(command: &mut Command, shim: &Path, path_part: &str, succeed: u32) {
    command
        .env("LD_PRELOAD", shim)
        .env("FLASHGATE_FSYNC_FAIL_PATH", path_part)
        .env("FLASHGATE_FSYNC_FAIL_AFTER", succeed.to_string());
}
