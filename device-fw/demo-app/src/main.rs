//! flashgate's demo application, installed by the demo OS into the app slot and started with a
//! function call (no reset). See `flashgate_protocol::app` for the header and ABI.
//!
//! It logs a line, emits one sealed telemetry record through the OS (so its counter continues
//! the OS's), and returns 0. Everything it touches goes through the OS's call table.
#![no_std]
#![no_main]

use core::fmt::Write as _;

// The runtime (`Reset`, `__fg_init_memory`) lives in the board crate; nothing else of it is used.
use flashgate_board as _;
use flashgate_protocol::app::{AppCallTable, APP_ABI_VERSION, APP_MAGIC};

/// The app header (first in the image) and the entry stub that initialises RAM before Rust runs.
#[allow(unsafe_code, reason = "the header and entry stub, in assembly")]
mod app_header {
    use super::{APP_ABI_VERSION, APP_MAGIC};

    core::arch::global_asm!(
        // The app header, first in the image (link.x keeps `.loader_header` at ORIGIN(FLASH)).
        ".section .loader_header, \"a\", %progbits",
        ".p2align 2",
        ".word {magic}",
        ".word {abi}",
        ".word __fg_demo_app_entry",
        ".word 0",
        "",
        // Initialise the app's RAM, keeping the call table pointer in r4 (callee-saved; two
        // registers pushed keep the stack 8-byte aligned), then run.
        ".section .text.__fg_demo_app_entry, \"ax\", %progbits",
        ".global __fg_demo_app_entry",
        ".type __fg_demo_app_entry, %function",
        ".thumb_func",
        "__fg_demo_app_entry:",
        "    push {{r4, lr}}",
        "    mov r4, r0",
        "    bl __fg_init_memory",
        "    mov r0, r4",
        "    bl demo_app_run",
        "    pop {{r4, pc}}",
        ".size __fg_demo_app_entry, . - __fg_demo_app_entry",
        magic = const APP_MAGIC,
        abi = const APP_ABI_VERSION,
    );
}

/// `main` is never called (nothing resets into this image); the runtime's `Reset` references
/// it, so it exists and parks the core.
#[allow(unsafe_code, reason = "the runtime's Reset references `main` by name")]
#[no_mangle]
extern "C" fn main() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// Text for `write!` without an allocator.
struct Line {
    bytes: [u8; 120],
    len: usize,
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Number of times this image ran since its RAM was last initialised (always 1: the entry
/// re-initialises `.data`; a check that `.data` is copied from the image).
static mut RUNS: u32 = 0;

/// The app, after `__fg_demo_app_entry` has initialised its RAM.
#[allow(
    unsafe_code,
    reason = "the OS calls this by name with a raw call-table pointer"
)]
#[no_mangle]
extern "C" fn demo_app_run(table: *const AppCallTable) -> u32 {
    // SAFETY: the OS passes a pointer to its static call table, valid for the whole call.
    let Some(os) = (unsafe { table.as_ref() }) else {
        return 1;
    };
    if os.abi_version != APP_ABI_VERSION {
        return 2;
    }
    // SAFETY: single-threaded app; nothing else touches RUNS.
    let runs = unsafe {
        RUNS += 1;
        RUNS
    };
    let uptime = (os.uptime_ticks)();
    let mut line = Line {
        bytes: [0; 120],
        len: 0,
    };
    let _ = write!(
        line,
        "demo-app: hello from the app slot, run {runs}, os uptime {uptime} ticks"
    );
    (os.log)(line.bytes.as_ptr(), line.len);
    let body = b"app demo-app says hello";
    let counter = (os.emit_record)(body.as_ptr(), body.len());
    if counter < 0 {
        3
    } else {
        0
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
