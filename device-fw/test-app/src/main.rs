//! flashgate's factory self-test, RAM-resident at `TEST_APP_ADDR`, called by the flash loader.
//!
//! Image header (little-endian words at `TEST_APP_ADDR`):
//!
//! ```text
//! +0 magic "FGTA" 0x41544746   +4 version 1   +8 entry (Thumb bit set)
//! ```
//!
//! Entry ABI (AAPCS): `extern "C" fn(report: *mut u8, report_len: u32) -> u32`, called on the
//! caller's stack. The entry initialises the app's own `.data`/`.bss` and returns the number of
//! failed checks (0 = pass). `report` receives: `result u32` (the same number), `log_len u32`,
//! then `log_len` bytes of ASCII log, one line per check; a report buffer shorter than 8 bytes
//! gets nothing. Checks: the device record reads back identically twice and decodes; two
//! entropy draws succeed, are not constant and differ; the unique ID is neither all 0x00 nor
//! all 0xFF.
#![no_std]
#![no_main]

use core::fmt::Write as _;

use flashgate_board::text::TextBuf;
use flashgate_board::{Board, EntropySource, NorFlash, UniqueId};
use flashgate_protocol::codec::Codec;
use flashgate_protocol::device_record::{DeviceRecord, RECORD_LEN};
use flashgate_protocol::layout::DEVICE_RECORD_ADDR;

/// "FGTA".
const TEST_APP_MAGIC: u32 = 0x4154_4746;
const TEST_APP_VERSION: u32 = 1;

/// The test app header the loader checks, and the entry stub that initialises RAM first.
#[allow(unsafe_code, reason = "the header and entry stub, in assembly")]
mod test_app_header {
    use super::{TEST_APP_MAGIC, TEST_APP_VERSION};

    core::arch::global_asm!(
        ".section .test_app_header, \"a\", %progbits",
        ".p2align 2",
        ".word {magic}",
        ".word {version}",
        ".word __fg_test_app_entry",
        "",
        // Initialise RAM before any Rust code runs, keeping the caller's arguments in r4-r6
        // (callee-saved; 4 registers pushed keep the stack 8-byte aligned), then run the checks.
        ".section .text.__fg_test_app_entry, \"ax\", %progbits",
        ".global __fg_test_app_entry",
        ".type __fg_test_app_entry, %function",
        ".thumb_func",
        "__fg_test_app_entry:",
        "    push {{r4, r5, r6, lr}}",
        "    mov r4, r0",
        "    mov r5, r1",
        "    bl __fg_init_memory",
        "    mov r0, r4",
        "    mov r1, r5",
        "    bl test_app_run",
        "    pop {{r4, r5, r6, pc}}",
        ".size __fg_test_app_entry, . - __fg_test_app_entry",
        magic = const TEST_APP_MAGIC,
        version = const TEST_APP_VERSION,
    );
}

/// `main` is never called (there is no reset into this image); the runtime's `Reset`
/// references it, so it exists and parks the core.
#[allow(unsafe_code, reason = "the runtime's Reset references `main` by name")]
#[no_mangle]
extern "C" fn main() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// The checks, after `__fg_test_app_entry` has initialised RAM.
#[allow(
    unsafe_code,
    reason = "the loader calls this by name with a raw report buffer"
)]
#[no_mangle]
extern "C" fn test_app_run(report: *mut u8, report_len: u32) -> u32 {
    let mut log = TextBuf::<480>::new();
    let failed = match Board::take() {
        Some(mut board) => run_checks(&mut board, &mut log),
        None => {
            let _ = writeln!(log, "FAIL board already taken");
            1
        }
    };
    let _ = writeln!(log, "{}", if failed == 0 { "PASS" } else { "FAIL" });
    if !report.is_null() && report_len >= 8 {
        let room = report_len as usize - 8;
        let text = &log.as_bytes()[..log.as_bytes().len().min(room)];
        // SAFETY: the caller lends `report_len` writable bytes at `report`.
        let out = unsafe { core::slice::from_raw_parts_mut(report, 8 + text.len()) };
        out[..4].copy_from_slice(&failed.to_le_bytes());
        out[4..8].copy_from_slice(&(text.len() as u32).to_le_bytes());
        out[8..].copy_from_slice(text);
    }
    failed
}

fn run_checks(board: &mut Board, log: &mut TextBuf<480>) -> u32 {
    let mut failed = 0;
    let mut check = |ok: bool, name: &str, log: &mut TextBuf<480>| {
        let _ = writeln!(log, "{} {name}", if ok { "ok  " } else { "FAIL" });
        failed += u32::from(!ok);
    };

    let mut first = [0u8; RECORD_LEN];
    let mut second = [0u8; RECORD_LEN];
    let read = board.flash.read(DEVICE_RECORD_ADDR, &mut first).is_ok()
        && board.flash.read(DEVICE_RECORD_ADDR, &mut second).is_ok();
    check(
        read && first == second,
        "flash readback of the device record",
        log,
    );
    check(
        DeviceRecord::read_bytes(&first).is_ok(),
        "device record decodes",
        log,
    );

    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    let drawn = board.entropy.fill(&mut a).is_ok() && board.entropy.fill(&mut b).is_ok();
    check(drawn, "entropy source delivers", log);
    check(
        drawn && a != b && a.iter().any(|x| *x != a[0]),
        "entropy draws differ",
        log,
    );

    let uid = board.uid.unique_id();
    check(
        uid.iter().any(|x| *x != 0x00) && uid.iter().any(|x| *x != 0xFF),
        "unique id present",
        log,
    );
    failed
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
