//! Station throughput on emulated targets, in one run:
//! 1. per-device time split by phase (and link / target / station);
//! 2. devices per hour with 1, 2 and 4 probes (one actor each) and the 1→4 speed-up;
//! 3. the secure path's throughput (sealed frames, flashed by the loader) beside a plain,
//!    unencrypted load of the same image through the same GDB probe backend;
//! 4. an order whose boards leave with the demo OS (issue 18): the per-board split (bootloader
//!    install, restart, OS install over the UART, package and receipt) and devices per hour with
//!    1 and 4 probes, beside the same run's no-OS figures of step 2;
//! 5. (printed after step 2) what TLS costs the line: devices per hour with 1 and 4 probes
//!    against a plain-text coordinator, beside step 2's TLS figures.
//!
//! `cargo bench -p flashgate-tests --bench station` (build the firmware first).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a bench: a panic is how it reports a failure"
)]

use std::time::Instant;

use flashgate_station::events::{Event, PhaseMillis};
use flashgate_station::probe::Probe;
use flashgate_station::station::run_station;
use flashgate_tests::station_harness::{Factory, BOOTLOADER_VERSION};
use flashgate_tests::{Firmware, TestBoard, Vendor};

const DEVICES: u64 = 8;

/// Reads one phase of a device.
type PhaseOf = fn(&PhaseMillis) -> f64;

/// OS version of the order in step 4.
const OS_VERSION: u32 = 2;

fn run(probes: usize) -> (f64, Vec<PhaseMillis>) {
    run_order(Factory::embedded(DEVICES), probes)
}

fn run_order(factory: Factory, probes: usize) -> (f64, Vec<PhaseMillis>) {
    let options = factory.station_options(probes);
    let events = options.events.clone();
    let summary = run_station(options).expect("station runs");
    assert_eq!(u64::from(summary.provisioned), DEVICES, "{summary:?}");
    let events = events.events();
    let phases = events
        .iter()
        .filter_map(|e| match e {
            Event::Installed { phases, .. } => Some(phases.clone()),
            _ => None,
        })
        .collect();
    (summary.elapsed_s, phases)
}

fn mean(phases: &[PhaseMillis], f: impl Fn(&PhaseMillis) -> f64) -> f64 {
    phases.iter().map(&f).sum::<f64>() / phases.len().max(1) as f64
}

fn main() {
    // FLASHGATE_BENCH_TELEMETRY=1: traces exported (in-process OTLP receiver) and metrics on.
    let telemetry = flashgate_telemetry::receiver::bench_switch("flashgate-bench");
    println!(
        "telemetry: {}",
        if telemetry.is_some() { "on" } else { "off" }
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("station bench: {DEVICES} devices per run, {cores} core(s)\n");

    let mut rates: Vec<f64> = Vec::new();
    let mut single = Vec::new();
    for probes in [1usize, 2, 4] {
        let (elapsed, phases) = run(probes);
        let per_hour = DEVICES as f64 * 3600.0 / elapsed;
        println!(
            "{probes} probe(s): {DEVICES} devices in {elapsed:.2}s = {per_hour:.0} devices/hour"
        );
        if probes == 1 {
            single = phases;
        }
        rates.push(per_hour);
    }
    println!(
        "speed-up 1→2: {:.2}x, 1→4: {:.2}x (goal ≥ 3.5x where the cores allow)\n",
        rates[1] / rates[0],
        rates[2] / rates[0]
    );

    // What TLS costs the line: the same runs against a plain-text coordinator.
    println!("TLS cost on the provisioning path (same run, {DEVICES} devices each):");
    for (probes, tls_rate) in [(1usize, rates[0]), (4, rates[2])] {
        let (elapsed, _) = run_order(Factory::embedded_insecure_plaintext(DEVICES), probes);
        let plain_rate = DEVICES as f64 * 3600.0 / elapsed;
        println!(
            "  {probes} probe(s): TLS {tls_rate:.0} devices/hour, plain text {plain_rate:.0} devices/hour, TLS/plain {:.2}",
            tls_rate / plain_rate
        );
    }
    println!();

    println!("per-device phases with 1 probe (mean ms):");
    let rows: [(&str, PhaseOf); 6] = [
        ("connect (board + gdb)", |p| p.connect),
        ("handshake", |p| p.handshake),
        ("transfer + flash", |p| p.transfer_flash),
        ("test app", |p| p.test),
        ("lock", |p| p.lock),
        ("reset + hello verify", |p| p.verify),
    ];
    let mut dominant = ("", 0.0);
    for (name, f) in rows {
        let v = mean(&single, f);
        if v > dominant.1 {
            dominant = (name, v);
        }
        println!("  {name:<24} {v:>8.1}");
    }
    println!(
        "  of the debug-link phases: link {:.1}, target {:.1}, station {:.1}",
        mean(&single, |p| p.link),
        mean(&single, |p| p.target),
        mean(&single, |p| p.station)
    );
    println!("  dominant phase: {}\n", dominant.0);

    // Secure vs plain load of the same image through the same probe backend.
    let fw = Firmware::load();
    let vendor = Vendor::new(7);
    let image = vendor.sign_bootloader(&fw.bootloader, BOOTLOADER_VERSION);
    let (_, phases) = run(1);
    let secure_ms = mean(&phases, |p| p.transfer_flash);
    let board = TestBoard::new();
    let mut probe = board.probe(None);
    probe.halt().unwrap();
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        for (i, chunk) in image.chunks(4096).enumerate() {
            probe
                .write_memory(0x2000_0000 + (i * 4096) as u32, chunk)
                .unwrap();
        }
    }
    let plain_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds);
    let kib = image.len() as f64 / 1024.0;
    println!(
        "image {kib:.1} KiB: secure path (sealed frames, flashed, receipt) {:.0} KiB/s; plain GDB load {:.0} KiB/s; ratio {:.2} (goal ≥ 0.9)",
        kib / (secure_ms / 1000.0),
        kib / (plain_ms / 1000.0),
        plain_ms / secure_ms
    );

    // An order with an OS, beside the no-OS runs above.
    println!("\norder with the demo OS (version {OS_VERSION}) installed after the lock:");
    let mut os_single = Vec::new();
    for (probes, reference) in [(1usize, rates[0]), (4, rates[2])] {
        let (elapsed, phases) = run_order(Factory::embedded_with_os(DEVICES, OS_VERSION), probes);
        let per_hour = DEVICES as f64 * 3600.0 / elapsed;
        println!(
            "{probes} probe(s): {DEVICES} devices in {elapsed:.2}s = {per_hour:.0} devices/hour with the OS, {reference:.0} without ({:.2}x)",
            per_hour / reference
        );
        if probes == 1 {
            os_single = phases;
        }
    }
    let os_bytes = Firmware::load().demo_os.len() as f64 / 1024.0;
    println!("per-board split with 1 probe (mean ms; demo OS {os_bytes:.1} KiB):");
    let rows: [(&str, PhaseOf); 6] = [
        ("connect (board + gdb)", |p| p.connect),
        ("bootloader install", |p| {
            p.handshake + p.transfer_flash + p.test + p.lock
        }),
        ("restart + hello verify", |p| p.verify),
        ("OS package (coordinator)", |p| p.os_package),
        ("OS install over the UART", |p| p.os_install),
        ("status receipt", |p| p.os_receipt),
    ];
    for (name, f) in rows {
        println!("  {name:<26} {:>8.1}", mean(&os_single, f));
    }
    println!(
        "  OS install throughput: {:.1} KiB/s over the emulated UART",
        os_bytes / (mean(&os_single, |p| p.os_install) / 1000.0)
    );
}
