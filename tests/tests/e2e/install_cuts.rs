//! Power cuts *inside* the flash operations of an OS update install, and a second cut inside
//! the recovery that follows. The board runs under `-icount shift=0` with the emulator's
//! instruction-cut plugin: counting starts at the install's first boot-state store and the CPU
//! freezes right before instruction N, so cuts land inside erase and program loops, inside
//! boot-state snapshots and inside the new OS's confirmation. The old (Rust demo OS v1) and new
//! (C demo OS v2) images have different bodies and sizes. After every cut the board must boot
//! one of them, byte for byte in its OS slot, and its signed status receipt must say which.
//!
//! Seeded: the seed is printed; `FLASHGATE_CUT_SEED=<seed>` replays a run (the cut points,
//! the second cuts and the torn bits all follow from it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use flashgate_emulator::cut::{CutReport, InstructionCut, Torn};
use flashgate_emulator::{EmulatedBoard, StartOptions, FLASH_FILE, UID_FILE};
use flashgate_protocol::flash::RamFlash;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::image::SIGNED_HEADER_LEN;
use flashgate_protocol::layout::{
    BOOT_STATE_ADDR, BOOT_STATE_PAGES, FLASH_PAGE_SIZE, FLASH_SIZE, IMAGE_HEADER_SPACE,
    OS_SLOT_ADDR,
};
use flashgate_protocol::uart::host::{HostLink, Port};
use flashgate_protocol::uart::Request;
use flashgate_protocol::update::boot_state::{self, BootState, Outcome, Phase};
use flashgate_protocol::update::package::SealedRelease;
use flashgate_protocol::update::receipt::{self, StatusReceipt};
use flashgate_tests::{Firmware, Vendor};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use zeroize::Zeroizing;

use crate::c_demo_os::make_c_demo_os;
use crate::{provisioned_board, test_device_key, PRODUCT_ID};

const T: Duration = Duration::from_secs(30);
/// Stratified first cuts over the measured install window (plus one inside each boot-state
/// write).
const FIRST_CUTS: u64 = 32;
/// More first cuts over the copy phases (erase and program loops).
const COPY_CUTS: u64 = 16;
/// Second cuts per recovering first cut.
const SECOND_CUTS: u64 = 3;
/// First cuts whose recovery is cut again, per phase the first cut left.
const RECOVERIES_PER_PHASE: usize = 2;
const BOOT_STATE: std::ops::Range<u32> =
    BOOT_STATE_ADDR..BOOT_STATE_ADDR + BOOT_STATE_PAGES * FLASH_PAGE_SIZE;
const WHOLE_FLASH: std::ops::Range<u32> = 0..FLASH_SIZE;

/// An image as the OS slot holds it: signed header, erased rest of the header space, body.
fn laid_out(signed: &[u8]) -> Vec<u8> {
    let mut slot = signed[..SIGNED_HEADER_LEN].to_vec();
    slot.resize(IMAGE_HEADER_SPACE as usize, 0xFF);
    slot.extend_from_slice(&signed[SIGNED_HEADER_LEN..]);
    slot
}

/// The update under test: the board's files with the new image staged, and both images.
struct Bench {
    dir: tempfile::TempDir,
    /// `flash.bin` with v2 staged (transfer finished, not installed) and v1 running.
    staged: Vec<u8>,
    uid: Vec<u8>,
    serial: [u8; 16],
    envelope: Vec<u8>,
    old: Vec<u8>,
    new: Vec<u8>,
    runs: usize,
}

/// What the board runs after a cut and a boot: per its receipt, checked against its flash.
#[derive(Debug)]
struct Landed {
    receipt: StatusReceipt,
    /// Instructions from the recovery's first flash store to its last (0: it wrote nothing).
    recovery_window: u64,
    /// The plugin's report of that boot.
    report: CutReport,
}

impl Bench {
    /// Provisions a board with OS v1, stages OS v2 over the UART and keeps that flash.
    fn new(vendor: &Vendor, fw: Firmware, c_os: &[u8]) -> Self {
        let bootloader = vendor.sign_bootloader(&fw.bootloader, 3);
        let old = vendor.sign_os(&fw.demo_os, 1);
        let new = vendor.sign_os(c_os, 2);
        let (mut tb, _) = provisioned_board(vendor, &bootloader, fw, |_| old.clone());
        let serial = tb.uid.0;
        let key = test_device_key(&serial);
        let release = SealedRelease::seal(&new, Zeroizing::new([7; 32])).unwrap();
        let envelope = release
            .envelope_for(&serial, PRODUCT_ID, &key, &[1; 16])
            .unwrap()
            .to_vec();
        let mut link = connect(&tb.board);
        tb.board.resume().unwrap();
        link.enter_update(T).unwrap();
        let ready = link.begin_update(&envelope, T).unwrap();
        assert_eq!(ready.next, 0);
        for (index, chunk) in release.chunks.iter().enumerate() {
            link.send_chunk(index as u32, chunk, T).unwrap();
        }
        assert_eq!(link.finish_update(T).unwrap(), 2);
        drop(link);
        tb.board.power_off().unwrap();
        let files = tb.board.files();
        let staged = two_boot_state_slots_left(std::fs::read(files.flash_path()).unwrap());
        let uid = std::fs::read(files.uid_path()).unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            staged,
            uid,
            serial,
            envelope,
            old: laid_out(&old),
            new: laid_out(&new),
            runs: 0,
        }
    }

    /// A fresh board directory holding `flash`.
    fn board_dir(&mut self, flash: &[u8]) -> PathBuf {
        self.runs += 1;
        let dir = self.dir.path().join(format!("run-{}", self.runs));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FLASH_FILE), flash).unwrap();
        std::fs::write(dir.join(UID_FILE), &self.uid).unwrap();
        dir
    }

    /// Boots the staged board with `cut`, hands it over to the bootloader, resumes the
    /// (complete) transfer and asks for the install; returns the running board.
    fn install(&mut self, cut: InstructionCut) -> (EmulatedBoard, HostLink<Port>) {
        let dir = self.board_dir(&self.staged.clone());
        let options = StartOptions {
            instruction_cut: Some(cut),
            ..StartOptions::default()
        };
        let mut board = EmulatedBoard::start(dir, options).unwrap();
        let mut link = connect(&board);
        board.resume().unwrap();
        link.enter_update(T).unwrap();
        let ready = link.begin_update(&self.envelope, T).unwrap();
        assert_eq!(ready.next, ready.count, "the staged transfer is complete");
        assert_eq!(link.finish_update(T).unwrap(), 2);
        link.send(&Request::UpdateInstall { halt_after: None })
            .unwrap();
        (board, link)
    }

    /// An uncut install: the window from its first boot-state store to the new OS's
    /// confirmation, the boot-state writes in it, and the erase of the second boot-state page.
    fn measure_install(&mut self) -> (u64, Vec<Burst>, std::ops::Range<u64>) {
        let (mut board, link) = self.install(logging_boot_state());
        let landed = self.boot_and_check(&mut board, Some(link), "uncut install");
        assert_eq!(landed.receipt.state, DeviceState::OsRunning { version: 2 });
        let report = landed.report;
        let armed = report.armed_at.expect("the install writes the boot state");
        assert!(BOOT_STATE.contains(&armed), "armed at {armed:#x}");
        let writes = bursts(&report);
        // The erase: word stores 4 bytes apart (a snapshot is programmed a byte at a time).
        let erase: Vec<u64> = report
            .arm_stores
            .windows(2)
            .filter(|w| w[1].1 == w[0].1 + 4)
            .map(|w| w[0].0)
            .collect();
        assert_eq!(
            erase.len(),
            SLOTS_PER_PAGE * SLOT / 4 - 1,
            "no page erase: {writes:?}"
        );
        let erase = erase[0]..erase[erase.len() - 1];
        (writes.last().expect("boot-state writes").end, writes, erase)
    }

    /// Cuts an install at instruction `at` (torn with `tear`); returns the flash left.
    fn cut_install(&mut self, at: u64, tear: u64) -> (Vec<u8>, Torn) {
        let (mut board, _link) = self.install(InstructionCut::at(BOOT_STATE, at));
        let (cut, torn) = board.wait_for_cut(T, Some(tear)).unwrap();
        assert_eq!(cut.count, at);
        (std::fs::read(board.files().flash_path()).unwrap(), torn)
    }

    /// A board holding `flash`, with `cut` for the recovery (counted from its first flash
    /// store), still halted.
    fn boot(&mut self, flash: &[u8], cut: Option<InstructionCut>) -> EmulatedBoard {
        let dir = self.board_dir(flash);
        let options = StartOptions {
            instruction_cut: cut,
            icount: true,
            ..StartOptions::default()
        };
        EmulatedBoard::start(dir, options).unwrap()
    }

    /// What `board` runs, per a verified receipt (asked over `link`, else a new connection);
    /// then a clean power-off, and its OS slot must hold that image byte for byte. `label`
    /// names the cut in failures.
    fn boot_and_check(
        &mut self,
        board: &mut EmulatedBoard,
        link: Option<HostLink<Port>>,
        label: &str,
    ) -> Landed {
        let challenge = [0x5C; 32];
        let key = test_device_key(&self.serial);
        let mut link = link.unwrap_or_else(|| {
            let link = connect(board);
            board.resume().unwrap();
            link
        });
        let raw = link
            .status_receipt(challenge, T)
            .unwrap_or_else(|e| panic!("{label}: no receipt: {e}"));
        let receipt = receipt::verify(&key, &challenge, &raw).unwrap();
        drop(link);
        board.power_off().unwrap();
        let files = board.files();
        let DeviceState::OsRunning { version } = receipt.state else {
            panic!("{label}: no OS runs: {receipt:?}");
        };
        let expected = match version {
            1 => &self.old,
            2 => &self.new,
            other => panic!("{label}: v{other} runs"),
        };
        let slot = files.read_flash(OS_SLOT_ADDR, expected.len()).unwrap();
        assert!(
            slot == *expected,
            "{label}: v{version} runs but its OS slot differs from v{version} at byte {:?}",
            slot.iter().zip(expected).position(|(a, b)| a != b)
        );
        if version == 2 {
            assert_eq!(
                (receipt.outcome, receipt.floor),
                (Outcome::Updated, 2),
                "{label}"
            );
        } else {
            assert_ne!(receipt.outcome, Outcome::Updated, "{label}");
            assert_eq!(receipt.floor, 0, "{label}: floor moved");
        }
        let report = files.cut_report().unwrap();
        let recovery_window = match (report.armed_at, report.end) {
            (Some(_), Some((_, last_store))) => last_store,
            _ => 0,
        };
        Landed {
            receipt,
            recovery_window,
            report,
        }
    }
}

fn connect(board: &EmulatedBoard) -> HostLink<Port> {
    let port = format!("tcp:{}", board.serial_addr().unwrap());
    HostLink::new(Port::open(&port, T).unwrap())
}

const SLOT: usize = boot_state::SLOT_LEN as usize;
const SLOTS_PER_PAGE: usize = FLASH_PAGE_SIZE as usize / SLOT;

/// Erased slots at the end of boot-state page `page`.
fn free_slots(flash: &[u8], page: usize) -> usize {
    let base = BOOT_STATE_ADDR as usize + page * FLASH_PAGE_SIZE as usize;
    (0..SLOTS_PER_PAGE)
        .rev()
        .take_while(|slot| {
            let at = base + slot * SLOT;
            flash[at..at + SLOT].iter().all(|b| *b == 0xFF)
        })
        .count()
}

/// `flash` with its boot state re-written (unchanged) until two slots of its page are left,
/// as on a device that has booted and updated for a while: the install's third snapshot then
/// erases the other page first, so cuts land in a boot-state page erase too.
fn two_boot_state_slots_left(flash: Vec<u8>) -> Vec<u8> {
    assert_eq!(
        free_slots(&flash, 1),
        SLOTS_PER_PAGE,
        "the second page is in use"
    );
    let mut f = RamFlash {
        bytes: flash,
        debug_locked: false,
    };
    let state = boot_state::read(&mut f).unwrap();
    while free_slots(&f.bytes, 0) > 2 {
        boot_state::write(&mut f, state).unwrap();
    }
    f.bytes
}

/// The boot state a flash holds.
fn boot_state_of(flash: &[u8]) -> BootState {
    let mut f = RamFlash {
        bytes: flash.to_vec(),
        debug_locked: false,
    };
    boot_state::read(&mut f).unwrap_or_default()
}

fn phase_of(flash: &[u8]) -> Phase {
    boot_state_of(flash).phase
}

/// Measures from the first boot-state store on, logging every boot-state store.
fn logging_boot_state() -> InstructionCut {
    InstructionCut {
        log_arm_stores: true,
        ..InstructionCut::measure(BOOT_STATE)
    }
}

/// One boot-state write (a snapshot or an erase): the counts of its first and last store.
#[derive(Clone, Copy, Debug)]
struct Burst {
    start: u64,
    end: u64,
    /// A count inside it (between two of its stores).
    middle: u64,
}

fn bursts(report: &CutReport) -> Vec<Burst> {
    let mut bursts: Vec<Vec<u64>> = Vec::new();
    for &(count, _) in &report.arm_stores {
        match bursts.last_mut() {
            Some(burst) if count - burst[burst.len() - 1] < 2_000 => burst.push(count),
            _ => bursts.push(vec![count]),
        }
    }
    bursts
        .iter()
        .map(|b| Burst {
            start: b[0],
            end: b[b.len() - 1],
            middle: b[b.len() / 2] + 1,
        })
        .collect()
}

/// `n` points spread over `1..=window`: one at random in each of `n` equal strata.
fn stratified(rng: &mut StdRng, window: u64, n: u64) -> Vec<u64> {
    let n = n.min(window).max(1);
    (0..n)
        .map(|i| {
            let lo = 1 + window * i / n;
            let hi = (window * (i + 1) / n).max(lo);
            rng.gen_range(lo..=hi)
        })
        .collect()
}

#[test]
fn power_cuts_inside_flash_operations_boot_the_old_or_the_new_image() {
    let started = Instant::now();
    let seed = flashgate_tests::chaos::seed_from(
        "FLASHGATE_CUT_SEED",
        "install-cut",
        "power_cuts_inside_flash_operations",
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let fw = Firmware::load();
    let build = tempfile::tempdir().unwrap();
    let c_elf = make_c_demo_os(build.path());
    let c_os = std::fs::read(c_elf.with_extension("bin")).unwrap();
    // Keys from the seed too: the verification after the copy costs instructions that depend
    // on the signature, so a replay needs the same keys to cut at the same instructions.
    let vendor = Vendor {
        key: SigningKey::from_bytes(&rng.gen()),
        authority: SigningKey::from_bytes(&rng.gen()),
        product_id: PRODUCT_ID,
    };
    let mut bench = Bench::new(&vendor, fw, &c_os);
    assert_ne!(
        bench.old[IMAGE_HEADER_SPACE as usize..IMAGE_HEADER_SPACE as usize + 64],
        bench.new[IMAGE_HEADER_SPACE as usize..IMAGE_HEADER_SPACE as usize + 64],
        "the old and new bodies differ"
    );

    // Install: backup snapshot, backup copy, copy snapshot, copy, erase of the other boot-state
    // page and trial snapshot; boot: trial attempt snapshot, verification; the new OS: its
    // confirmation.
    let (window, writes, page_erase) = bench.measure_install();
    assert_eq!(writes.len(), 6, "{writes:?}");
    let copying = writes[2].start;
    let mut points = stratified(&mut rng, window, FIRST_CUTS);
    points.extend(stratified(&mut rng, copying, COPY_CUTS));
    points.extend(writes.iter().map(|w| w.middle));
    points.extend(
        stratified(&mut rng, page_erase.end - page_erase.start, 3)
            .iter()
            .map(|p| page_erase.start + p),
    );
    points.sort_unstable();
    points.dedup();
    eprintln!(
        "install window {window} instructions (copying until {copying}), boot-state writes {writes:?}; {} first cuts",
        points.len()
    );
    assert!(points.len() >= 30);

    // The same point twice leaves the same flash: cuts replay.
    let tear = rng.next_u64();
    let replay = points[points.len() / 2];
    let (once, twice) = (
        bench.cut_install(replay, tear).0,
        bench.cut_install(replay, tear).0,
    );
    let differ: Vec<usize> = (0..once.len()).filter(|&i| once[i] != twice[i]).collect();
    assert!(
        differ.is_empty(),
        "cut at {replay} did not replay: {} bytes differ, first at {:#x}, last at {:#x}",
        differ.len(),
        differ[0],
        differ[differ.len() - 1]
    );

    let mut recovering: Vec<(Phase, String, Vec<u8>, u64)> = Vec::new();
    let mut landed_new = 0;
    let mut torn_kinds = [0usize; 3];
    for &at in &points {
        let (flash, torn) = bench.cut_install(at, rng.next_u64());
        torn_kinds[match torn {
            Torn::Nothing => 0,
            Torn::Erase { .. } => 1,
            Torn::Program { .. } => 2,
        }] += 1;
        let phase = phase_of(&flash);
        let label = format!("cut at {at} ({phase:?}, {torn:?})");
        let mut board = bench.boot(&flash, Some(InstructionCut::measure(WHOLE_FLASH)));
        let landed = bench.boot_and_check(&mut board, None, &label);
        if landed.receipt.state == (DeviceState::OsRunning { version: 2 }) {
            landed_new += 1;
        }
        if phase != Phase::Idle && landed.recovery_window > 0 {
            recovering.push((phase, label, flash, landed.recovery_window));
        }
    }
    assert!(
        landed_new > 0 && landed_new < points.len(),
        "{landed_new} of {} cuts ended on v2",
        points.len()
    );

    // A triple fault in the trial: the first three boots of the new image are cut after their
    // trial-attempt snapshot, before the new OS confirms; the fourth boot must revert to v1.
    let (attempt, confirm) = (writes[4], writes[5]);
    let trial = attempt.end + (confirm.start - attempt.end) / 2;
    let (mut flash, _) = bench.cut_install(trial, rng.next_u64());
    for attempt in 2..=3u8 {
        let mut board = bench.boot(&flash, Some(logging_boot_state()));
        let label = format!("trial boot {attempt}, uncut");
        let landed = bench.boot_and_check(&mut board, None, &label);
        let [snapshot, confirm] = bursts(&landed.report)[..] else {
            panic!("{label}: boot-state writes {:?}", landed.report);
        };
        let at = snapshot.end + (confirm.start - snapshot.end) / 2;
        let mut board = bench.boot(&flash, Some(InstructionCut::at(BOOT_STATE, at)));
        board.resume().unwrap();
        board.wait_for_cut(T, Some(rng.next_u64())).unwrap();
        flash = std::fs::read(board.files().flash_path()).unwrap();
        let state = boot_state_of(&flash);
        assert_eq!(
            (state.phase, state.attempts),
            (Phase::Trial, attempt),
            "{label}"
        );
    }
    let mut board = bench.boot(&flash, Some(InstructionCut::measure(WHOLE_FLASH)));
    let reverted = bench.boot_and_check(&mut board, None, "fourth trial boot");
    assert_eq!(
        (reverted.receipt.state, reverted.receipt.outcome),
        (DeviceState::OsRunning { version: 1 }, Outcome::RolledBack)
    );
    recovering.push((
        Phase::Revert,
        "three cut trial boots".into(),
        flash,
        reverted.recovery_window,
    ));

    // A second cut inside the recovery of a few first cuts per phase left.
    let mut second_cuts = 0;
    let mut phases = Vec::new();
    for phase in [Phase::Backup, Phase::Copy, Phase::Trial, Phase::Revert] {
        let mut of_phase: Vec<_> = recovering.iter().filter(|r| r.0 == phase).collect();
        if of_phase.is_empty() {
            continue;
        }
        phases.push(phase);
        for _ in 0..RECOVERIES_PER_PHASE.min(of_phase.len()) {
            let (_, label, flash, window) = of_phase.swap_remove(rng.gen_range(0..of_phase.len()));
            for at in stratified(&mut rng, *window, SECOND_CUTS) {
                let mut board = bench.boot(flash, Some(InstructionCut::at(WHOLE_FLASH, at)));
                board.resume().unwrap();
                let (cut, torn) = board.wait_for_cut(T, Some(rng.next_u64())).unwrap();
                assert_eq!(cut.count, at);
                let again = std::fs::read(board.files().flash_path()).unwrap();
                let label = format!("{label}, then at {at} of its recovery ({torn:?})");
                let mut board = bench.boot(&again, None);
                bench.boot_and_check(&mut board, None, &label);
                second_cuts += 1;
            }
        }
    }
    eprintln!(
        "{} first cuts ({landed_new} ended on v2; torn: {} none, {} erase, {} program), {second_cuts} second cuts in the recovery from {phases:?}, {} boards, {:.0?}",
        points.len(),
        torn_kinds[0],
        torn_kinds[1],
        torn_kinds[2],
        bench.runs,
        started.elapsed()
    );
    assert!(
        [Phase::Backup, Phase::Copy, Phase::Trial, Phase::Revert]
            .iter()
            .all(|p| phases.contains(p)),
        "recoveries cut: {phases:?}"
    );
}
