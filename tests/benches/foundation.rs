//! Figures for the foundation issue, measured in one run:
//! - the time to provision one board, split into debug-link transfer, target work (of which
//!   flash programming, measured by the loader with SysTick) and the station's own crypto;
//! - the loader's handshake cost in emulated instructions (QEMU `-icount shift=0`);
//! - the loader's RAM footprint and the bootloader's flash size.
//!
//! `cargo bench -p flashgate-tests --bench foundation` (firmware built by `cargo xtask firmware`).

use std::process::Command;
use std::time::Duration;

use flashgate_emulator::StartOptions;
use flashgate_station::provisioning::PhaseTimings;
use flashgate_tests::bay::TestBay;
use flashgate_tests::{firmware_dir, provision_within, Firmware, Vendor};

/// Instructions per SysTick tick under `-icount shift=0` on mps2 (1 GHz virtual / 25 MHz).
const INSTRUCTIONS_PER_TICK: u64 = 40;
/// One SysTick tick of wall-clock emulated time without icount (25 MHz).
const TICK: Duration = Duration::from_nanos(40);

/// One board through the station's own per-target flow (the factory's); its debug-link timings.
fn provision_once(fw: &Firmware, vendor: &Vendor, options: StartOptions) -> PhaseTimings {
    let plan = vendor
        .plan(fw, 1)
        .with_chunk_size(flashgate_protocol::provisioning::messages::MAX_IMAGE_CHUNK);
    let mut bay = TestBay::new("bench").with_options(options);
    provision_within(&mut bay, plan, vendor.issuer(), Duration::from_secs(60))
        .expect("provisioning succeeds")
        .timings
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let fw = Firmware::load();
    let vendor = Vendor::new(7);

    const RUNS: u32 = 5;
    let mut sum = PhaseTimings::default();
    let mut flash = Duration::ZERO;
    let mut busy = Duration::ZERO;
    for _ in 0..RUNS {
        let t = provision_once(&fw, &vendor, StartOptions::default());
        sum.link += t.link;
        sum.target += t.target;
        sum.station += t.station;
        flash += TICK * t.target_flash_ticks as u32;
        busy += TICK * t.target_busy_ticks as u32;
    }
    let avg = |d: Duration| d / RUNS;
    println!(
        "== provisioning one board ({} KiB bootloader, mean of {RUNS} runs, QEMU without icount)",
        fw.bootloader.len() / 1024
    );
    println!(
        "  debug-link transfer          {:8.2} ms",
        ms(avg(sum.link))
    );
    println!(
        "  target (until next yield)    {:8.2} ms",
        ms(avg(sum.target))
    );
    println!(
        "    of which flash erase/program (SysTick)   {:8.2} ms",
        ms(avg(flash))
    );
    println!(
        "    of which frame handling incl. crypto      {:8.2} ms",
        ms(avg(busy.saturating_sub(flash)))
    );
    println!(
        "    rest: handshake + QEMU stop/resume        {:8.2} ms",
        ms(avg(sum.target.saturating_sub(busy)))
    );
    println!(
        "  station crypto + bookkeeping {:8.2} ms",
        ms(avg(sum.station))
    );
    println!(
        "  total                        {:8.2} ms",
        ms(avg(sum.total()))
    );

    let icount = StartOptions {
        icount: true,
        ..StartOptions::default()
    };
    let t = provision_once(&fw, &vendor, icount);
    println!("== loader under -icount shift=0 (deterministic)");
    println!(
        "  handshake (entropy, x25519 keygen + DH, self-measurement SHA-256, HKDF): {} instructions",
        u64::from(t.handshake_ticks) * INSTRUCTIONS_PER_TICK
    );
    println!(
        "  all frames ({} B image): {} instructions, of which flash {}",
        vendor.plan(&fw, 1).bootloader().len(),
        t.target_busy_ticks * INSTRUCTIONS_PER_TICK,
        t.target_flash_ticks * INSTRUCTIONS_PER_TICK
    );

    println!("== sizes");
    let elf = firmware_dir().join("loader.elf");
    let size = Command::new("arm-none-eabi-size").arg(&elf).output();
    if let Ok(out) = size {
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = text.lines().nth(1) {
            let v: Vec<u64> = line
                .split_whitespace()
                .take(3)
                .filter_map(|x| x.parse().ok())
                .collect();
            if v.len() == 3 {
                let stack = u64::from(
                    flashgate_protocol::layout::LOADER_STACK_TOP
                        - flashgate_protocol::layout::LOADER_RAM,
                );
                println!(
                    "  loader RAM: image {} B + data {} + bss {} + stack area {} = {} B ({:.1} KiB)",
                    fw.loader.bytes().len(),
                    v[1],
                    v[2],
                    stack,
                    fw.loader.bytes().len() as u64 + v[1] + v[2] + stack,
                    (fw.loader.bytes().len() as u64 + v[1] + v[2] + stack) as f64 / 1024.0
                );
            }
        }
    }
    println!(
        "  bootloader flash: {} B ({:.1} KiB of a {} KiB slot)",
        fw.bootloader.len(),
        fw.bootloader.len() as f64 / 1024.0,
        flashgate_protocol::layout::BOOTLOADER_MAX / 1024
    );
}
