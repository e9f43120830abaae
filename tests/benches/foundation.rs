//! Figures for the foundation issue and the loader's limits (issue 15), measured in one run,
//! each beside its goal and its same-run reference:
//! - the time to provision one board, split into debug-link transfer, target work (of which
//!   flash programming, measured by the loader with SysTick) and the station's own crypto;
//! - the loader's handshake cost in emulated instructions (QEMU `-icount shift=0`), against
//!   x25519 key generation + Diffie-Hellman timed by the `crypto-bench` firmware in this run
//!   (built by the same `cargo build` as the loader, so with the same crypto code);
//! - the cost per byte of the bootloader's `ImageData` frames (flash programming apart),
//!   against ChaCha20-Poly1305 + SHA-256 per byte from the same crypto bench;
//! - the loader's image and RAM (image, `.data`/`.bss`, stack high-water read back over the
//!   debug link after a whole provisioning, parameter block, mailbox), and the bootloader's size.
//!
//! `cargo bench -p flashgate-tests --bench foundation` (firmware built by `cargo xtask firmware`).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a bench: a panic is how it reports a failure"
)]

use std::process::Command;
use std::time::Duration;

use flashgate_emulator::StartOptions;
use flashgate_protocol::layout::{LOADER_BASE, LOADER_FOOTPRINT, LOADER_MAX, LOADER_RAM};
use flashgate_protocol::mailbox;
use flashgate_station::events::{EventFormat, EventSink};
use flashgate_station::fixture::TargetFixture;
use flashgate_station::provisioning::{run_target, Job, PhaseTimings};
use flashgate_tests::bay::TestBay;
use flashgate_tests::crypto_bench::{crypto_bench, Report};
use flashgate_tests::stack_gauge::GaugedBay;
use flashgate_tests::{firmware_dir, provision_within, Firmware, Vendor};

/// Instructions per SysTick tick under `-icount shift=0` on mps2 (1 GHz virtual / 25 MHz).
const INSTRUCTIONS_PER_TICK: u64 = 40;
/// One SysTick tick of wall-clock emulated time without icount (25 MHz).
const TICK: Duration = Duration::from_nanos(40);
/// Issue 15's goals.
const HANDSHAKE_GOAL: u64 = 2_000_000;
const FRAME_GOAL: f64 = 1.1;
const IMAGE_GOAL: u64 = 40 * 1024;

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

/// One board provisioned under icount through a bay that measures the loader's stack: its
/// timings and the stack high-water in bytes.
fn provision_gauged(fw: &Firmware, vendor: &Vendor, stack_bottom: u32) -> (PhaseTimings, u32) {
    let icount = StartOptions {
        icount: true,
        ..StartOptions::default()
    };
    let plan = vendor
        .plan(fw, 1)
        .with_chunk_size(flashgate_protocol::provisioning::messages::MAX_IMAGE_CHUNK);
    let job = Job {
        plan: std::sync::Arc::new(plan),
        issuer: vendor.issuer(),
        lease_id: "bench-lease".into(),
        os: None,
    };
    let mut bay = GaugedBay::new(TestBay::new("bench").with_options(icount), stack_bottom);
    let done = run_target(
        &mut bay,
        &job,
        Duration::from_secs(60),
        &EventSink::new(EventFormat::Quiet),
    )
    .unwrap_or_else(|failed| panic!("provisioning failed: {}", failed.error));
    bay.detach();
    let high_water = bay
        .high_water()
        .expect("the session ended: the stack was read back");
    (done.timings, high_water)
}

/// Instructions of `name` in the crypto bench's report.
fn instructions(report: &Report, name: &str) -> u64 {
    report
        .get(name)
        .unwrap_or_else(|| panic!("the crypto bench reports no {name}: rebuild the firmware"))
        .0
        * INSTRUCTIONS_PER_TICK
}

/// (per byte, fixed) instructions of a primitive timed at the bench's two lengths.
fn per_byte(report: &Report, short: &str, long: &str) -> (f64, f64) {
    let bytes = |name: &str| report.get(name).map(|v| v.0).unwrap_or(0) as f64;
    let (s, l) = (
        bytes("primitive_short_bytes"),
        bytes("primitive_long_bytes"),
    );
    let (ts, tl) = (
        instructions(report, short) as f64,
        instructions(report, long) as f64,
    );
    let slope = (tl - ts) / (l - s);
    (slope, ts - slope * s)
}

/// `arm-none-eabi-size` of the loader ELF: (data, bss).
fn loader_sections() -> (u64, u64) {
    let elf = firmware_dir().join("loader.elf");
    let out = Command::new("arm-none-eabi-size")
        .arg(&elf)
        .output()
        .expect("arm-none-eabi-size runs (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .lines()
        .nth(1)
        .map(|line| {
            line.split_whitespace()
                .take(3)
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(v.len(), 3, "unexpected arm-none-eabi-size output: {text}");
    (v[1], v[2])
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "meets"
    } else {
        "MISSES"
    }
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

    let primitives = crypto_bench();
    let (data, bss) = loader_sections();
    let image = fw.loader.bytes().len() as u64;
    let stack_bottom = LOADER_RAM + (data + bss) as u32;
    let (t, stack) = provision_gauged(&fw, &vendor, stack_bottom);

    println!("== loader under -icount shift=0 (deterministic; references: crypto-bench, same build, this run)");
    let handshake = u64::from(t.handshake_ticks) * INSTRUCTIONS_PER_TICK;
    let keygen = instructions(&primitives, "x25519_keygen");
    let dh = instructions(&primitives, "x25519_dh");
    println!(
        "  handshake (entropy, x25519 keygen + DH, HKDF): {handshake} instructions, goal <= {HANDSHAKE_GOAL}: {}",
        verdict(handshake <= HANDSHAKE_GOAL)
    );
    println!(
        "    reference: x25519 keygen {keygen} (ladder {}) + DH {dh} = {}; the rest {}",
        instructions(&primitives, "x25519_keygen_ladder"),
        keygen + dh,
        handshake.saturating_sub(keygen + dh)
    );
    let busy = t.target_busy_ticks * INSTRUCTIONS_PER_TICK;
    let flash = t.target_flash_ticks * INSTRUCTIONS_PER_TICK;
    println!(
        "  all frames ({} B image): {busy} instructions, of which flash {flash}",
        vendor.plan(&fw, 1).bootloader().len(),
    );
    let frames = (t.image_busy_ticks - t.image_flash_ticks) * INSTRUCTIONS_PER_TICK;
    let frame_per_byte = frames as f64 / t.image_bytes as f64;
    let (aead, aead_fixed) = per_byte(&primitives, "aead_seal_short", "aead_seal_long");
    let (sha, sha_fixed) = per_byte(&primitives, "sha256_short", "sha256_long");
    let ratio = frame_per_byte / (aead + sha);
    println!(
        "  ImageData frames ({} B): {frames} instructions without flash ({} programming) = {frame_per_byte:.1}/B",
        t.image_bytes,
        t.image_flash_ticks * INSTRUCTIONS_PER_TICK,
    );
    println!(
        "    = {ratio:.3}x ChaCha20-Poly1305 {aead:.1}/B (+{aead_fixed:.0} per call) + SHA-256 {sha:.1}/B (+{sha_fixed:.0}), goal <= {FRAME_GOAL}x: {}",
        verdict(ratio <= FRAME_GOAL)
    );

    println!(
        "== sizes (loader ELF, stack read back over the debug link after a whole provisioning)"
    );
    println!(
        "  loader image {image} B ({:.1} KiB), goal <= {} B (layout slot {LOADER_MAX}): {}",
        image as f64 / 1024.0,
        IMAGE_GOAL,
        verdict(image <= IMAGE_GOAL && image <= u64::from(LOADER_MAX))
    );
    let params = flashgate_protocol::provisioning::PARAMS_LEN as u64;
    let mailbox = mailbox::TOTAL_LEN as u64;
    let used = image + data + bss + u64::from(stack) + params + mailbox;
    let span = u64::from(flashgate_protocol::layout::MAILBOX_ADDR - LOADER_BASE) + mailbox;
    println!(
        "  loader RAM used: image {image} + data {data} + bss {bss} + stack high-water {stack} + params {params} + mailbox {mailbox} = {used} B ({:.1} KiB)",
        used as f64 / 1024.0
    );
    let stack_area = u64::from(flashgate_protocol::layout::LOADER_STACK_TOP - stack_bottom);
    println!(
        "  loader RAM laid out (image slot .. mailbox end): {span} B, goal <= {LOADER_FOOTPRINT} B: {}; stack high-water {stack} of a {stack_area} B area: {}",
        verdict(span <= u64::from(LOADER_FOOTPRINT) && used <= span),
        verdict(u64::from(stack) < stack_area)
    );
    println!(
        "  bootloader flash: {} B ({:.1} KiB of a {} KiB slot)",
        fw.bootloader.len(),
        fw.bootloader.len() as f64 / 1024.0,
        flashgate_protocol::layout::BOOTLOADER_MAX / 1024
    );
}
