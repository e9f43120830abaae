//! Debug-link throughput: flashgate's GDB client against `gdb-multiarch` on the same QEMU and
//! the same bytes. `cargo bench -p flashgate-station --bench gdb_link`.
//!
//! Each figure is the best of a few runs, timed around the transfer only (gdb's own connect and
//! target-description exchange are outside its timer, which runs inside gdb's Python).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a bench: a panic is how it reports a failure"
)]

#[path = "../tests/support/qemu.rs"]
mod qemu;

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use flashgate_station::probe::{CoreRegisters, GdbProbe, Probe};

const RAM: u32 = 0x2000_0000;
const RUNS: usize = 5;

fn blob(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn kbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1024.0 / secs
}

/// Runs gdb with `command` between two Python clocks; returns the seconds between them.
fn gdb_timed(gdb_addr: SocketAddr, command: &str) -> f64 {
    let out = Command::new("gdb-multiarch")
        .args(["-nx", "-batch", "-ex", "set architecture armv7e-m"])
        .args(["-ex", &format!("target remote {gdb_addr}")])
        .args(["-ex", "python import time; t0 = time.perf_counter()"])
        .args(["-ex", command])
        .args(["-ex", "python print('ELAPSED', time.perf_counter() - t0)"])
        .output()
        .expect("gdb-multiarch must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ELAPSED "))
        .unwrap_or_else(|| {
            panic!(
                "gdb gave no timing:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line.trim().parse().expect("seconds")
}

fn best<F: FnMut() -> f64>(mut f: F) -> f64 {
    (0..RUNS).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench`-less args: only run when asked.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let qemu = qemu::BareQemu::start();
    let dir = tempfile::tempdir().expect("temp dir");
    println!("gdb link throughput against QEMU mps2-an386 gdbstub (best of {RUNS})");
    println!(
        "{:>8} {:>6} {:>12} {:>12} {:>7}",
        "size", "dir", "flashgate", "gdb", "ratio"
    );
    let mut worst = f64::INFINITY;
    let mut rows = Vec::new();
    for size in [256 * 1024, 1024 * 1024] {
        let data = blob(size);
        let file = dir.path().join(format!("blob-{size}.bin"));
        std::fs::write(&file, &data).expect("write blob");

        let mut probe = GdbProbe::connect(qemu.gdb, Duration::from_secs(10)).expect("connect");
        // A target that idles instead of faulting when gdb detaches (gdb's detach resumes it).
        probe
            .write_memory(0, &[0x00, 0x00, 0x01, 0x20, 0x09, 0, 0, 0, 0xFE, 0xE7])
            .unwrap();
        probe
            .write_registers(&CoreRegisters {
                sp: RAM + 0x10_0000,
                pc: 0x8,
                xpsr: 0x0100_0000,
                ..CoreRegisters::default()
            })
            .unwrap();
        let write = best(|| {
            let t = Instant::now();
            probe.write_memory(RAM, &data).unwrap();
            t.elapsed().as_secs_f64()
        });
        let mut back = vec![0; size];
        let read = best(|| {
            let t = Instant::now();
            probe.read_memory(RAM, &mut back).unwrap();
            t.elapsed().as_secs_f64()
        });
        assert!(back == data, "flashgate read back differs");
        drop(probe);

        // Clear, then let gdb write the same bytes, and check what it wrote.
        let mut probe = GdbProbe::connect(qemu.gdb, Duration::from_secs(10)).expect("reconnect");
        probe.write_memory(RAM, &vec![0; size]).unwrap();
        drop(probe);
        let path = file.display();
        let gdb_write = best(|| gdb_timed(qemu.gdb, &format!("restore {path} binary {RAM:#x}")));
        let dump = dir.path().join("dump.bin");
        let end = RAM as usize + size;
        let gdb_read = best(|| {
            gdb_timed(
                qemu.gdb,
                &format!("dump binary memory {} {RAM:#x} {end:#x}", dump.display()),
            )
        });
        assert!(std::fs::read(&dump).unwrap() == data, "gdb's dump differs");

        for (dir_name, ours, theirs) in [("write", write, gdb_write), ("read", read, gdb_read)] {
            let ratio = theirs / ours;
            worst = worst.min(ratio);
            rows.push(format!(
                "{:>7}K {:>6} {:>8.0} KB/s {:>7.0} KB/s {:>7.2}",
                size / 1024,
                dir_name,
                kbps(size, ours),
                kbps(size, theirs),
                ratio
            ));
        }
    }
    for row in rows {
        println!("{row}");
    }
    println!("worst ratio flashgate/gdb: {worst:.2} (goal >= 0.90)");
}
