//! flashgate's RAM flash loader: thin glue between the debug-port mailbox and the protocol
//! crate's `LoaderSession`, which makes every decision.
//!
//! How the station runs it: it writes `loader.bin` at `LOADER_BASE` and a parameter block at
//! `PARAMS_ADDR`, sets SP = `LOADER_STACK_TOP`, PC = entry & !1, xPSR = 0x0100_0000, puts a
//! breakpoint on `host_yield` and continues. The image starts with this header (five
//! little-endian words, `flashgate_protocol::provisioning::LoaderImageHeader`):
//!
//! ```text
//! +0 magic "FGDL" 0x4C444746   +4 version 1   +8 entry (Reset, Thumb bit)
//! +12 host_yield (Thumb bit)   +16 __image_end (end of the loaded bytes)
//! ```
//!
//! Entry is the runtime's `Reset` (copy `.data`, zero `.bss`, call `main`). `main` then:
//! SysTick on, 32 bytes of entropy, the unique ID, `LoaderSession::start` (which takes the
//! loader digest from the parameter block: the loader does not hash its own image, the station
//! reads back what it wrote) → hello in the mailbox (state `Hello`, ticks spent in the header),
//! and then forever: `host_yield` → `session.handle(in)` → reply (state `Reply`) or error
//! (state `Error`).
#![no_std]
#![no_main]

mod mailbox;
mod timed_platform;

use core::sync::atomic::{compiler_fence, Ordering};

use flashgate_board::cpu::{self, SysTickCounter};
use flashgate_board::{rt, Board, EntropySource, UniqueId};
use flashgate_protocol::layout::PARAMS_ADDR;
use flashgate_protocol::mailbox::State;
use flashgate_protocol::provisioning::target::LoaderSession;
use flashgate_protocol::provisioning::{LOADER_IMAGE_MAGIC, LOADER_IMAGE_VERSION, PARAMS_LEN};
use flashgate_protocol::ErrorCode;
use zeroize::Zeroizing;

use mailbox::Mailbox;
use timed_platform::TimedPlatform;

/// The header the station reads at the loader's base: magic, version, entry, yield, end.
#[allow(unsafe_code, reason = "the header the station reads, in assembly")]
mod loader_header {
    use super::{LOADER_IMAGE_MAGIC, LOADER_IMAGE_VERSION};

    core::arch::global_asm!(
        ".section .loader_header, \"a\", %progbits",
        ".p2align 2",
        ".global __loader_header",
        "__loader_header:",
        ".word {magic}",
        ".word {version}",
        ".word Reset",
        ".word host_yield",
        ".word __image_end",
        magic = const LOADER_IMAGE_MAGIC,
        version = const LOADER_IMAGE_VERSION,
    );
}

// The loader's own vector table (right after the header): `main` points VTOR at it, so a fault
// in the loader parks the core in the loader's `HardFault` loop, whatever is in flash at 0x0.
flashgate_board::vector_table!();

/// The station's turn: it has a breakpoint here, reads `out`, writes the next request into
/// `in` and resumes. The `nop` keeps the function (and every call to it) in the binary; the
/// asm block is also a compiler barrier, so mailbox memory is re-read after it.
#[allow(
    unsafe_code,
    reason = "the station breaks here by name; a `nop` in asm"
)]
#[inline(never)]
#[no_mangle]
pub extern "C" fn host_yield() {
    compiler_fence(Ordering::SeqCst);
    // SAFETY: a `nop`; declared as touching memory so the station's writes are seen after it.
    unsafe { core::arch::asm!("nop", options(nostack, preserves_flags)) };
    compiler_fence(Ordering::SeqCst);
}

#[allow(
    unsafe_code,
    reason = "entry by name; sets VTOR, reads the mailbox and params"
)]
#[no_mangle]
extern "C" fn main() -> ! {
    // SAFETY: the table `vector_table!` emitted above is complete and VTOR-aligned (link.x).
    unsafe { cpu::set_vector_table(rt::vector_table()) };
    let ticks = SysTickCounter::start();
    let started = ticks.now();
    // SAFETY: the only mailbox in this program.
    let mut mailbox = unsafe { Mailbox::take() };
    let Some(mut board) = Board::take() else {
        park(&mut mailbox, ErrorCode::SessionAborted)
    };

    let mut secret = Zeroizing::new([0u8; 32]);
    if board.entropy.fill(&mut secret[..]).is_err() {
        park(&mut mailbox, ErrorCode::Entropy);
    }
    let serial = board.uid.unique_id();
    // SAFETY: the station wrote the parameter block at PARAMS_ADDR before starting us; it is
    // outside every Rust allocation and nothing writes it while we run.
    let params =
        unsafe { core::slice::from_raw_parts(PARAMS_ADDR as usize as *const u8, PARAMS_LEN) };

    let (out, _) = mailbox.buffers();
    let (mut session, hello_len) = match LoaderSession::start(params, serial, *secret, out) {
        Ok(started) => started,
        Err(code) => park(&mut mailbox, code),
    };
    drop(secret);
    mailbox.set_handshake_ticks(ticks.ticks_since(started));
    mailbox.publish(State::Hello, hello_len);

    let mut platform = TimedPlatform::new(&mut board.flash, &ticks);
    let mut busy_ticks = 0u32;
    loop {
        host_yield();
        let began = ticks.now();
        let (out, frame) = mailbox.buffers();
        let result = session.handle(frame, &mut platform, out);
        busy_ticks = busy_ticks.wrapping_add(ticks.ticks_since(began));
        mailbox.set_work_ticks(platform.flash_ticks(), busy_ticks);
        match result {
            Ok(len) => mailbox.publish(State::Reply, len),
            Err(code) => mailbox.fail(code),
        }
    }
}

/// Reports `code` and then only yields: the station reads the error and stops the job.
fn park(mailbox: &mut Mailbox, code: ErrorCode) -> ! {
    mailbox.fail(code);
    loop {
        host_yield();
    }
}

#[allow(unsafe_code, reason = "takes the mailbox back for the error report")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: `main` no longer runs; this is the last access to the mailbox.
    let mut mailbox = unsafe { Mailbox::steal() };
    park(&mut mailbox, ErrorCode::SessionAborted)
}
