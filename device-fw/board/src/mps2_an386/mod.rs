//! QEMU `mps2-an386` (Cortex-M4), flashgate's emulated factory board.
//!
//! What is real and what is modelled (see `device-fw/README.md`):
//! - "flash" is the 4 MiB code memory at 0x0 (plain RAM in QEMU); [`CodeFlash`] enforces NOR
//!   rules in software and the launcher persists it with `pmemsave`.
//! - entropy comes from the host's `/dev/urandom` through semihosting ([`SemihostingEntropy`]),
//!   in emulator builds only (feature `semihosting-entropy`); a real MCU uses its TRNG, and a
//!   program that needs entropy (feature `entropy`) does not compile for this board without it.
//! - the unique ID is 16 bytes the launcher loads at [`layout::UNIQUE_ID_ADDR`] ([`LoadedUid`]).
//! - the debug lock is a marker word in flash that the launcher honours (no gdbstub).
//! - Ethernet (feature `net`) is QEMU's LAN9118 model ([`Lan9118`]) behind the launcher's
//!   loopback-only user networking.

#[cfg(all(feature = "entropy", not(feature = "semihosting-entropy")))]
compile_error!(
    "flashgate-board: mps2-an386 has no TRNG driver. Entropy exists only in emulator builds \
     (feature `semihosting-entropy`: the host's /dev/urandom over semihosting, which on silicon \
     would let whoever holds the debug port choose the \"random\" bytes). A board for real \
     hardware must implement `EntropySource` with its TRNG."
);

#[cfg(feature = "semihosting-entropy")]
mod entropy;
mod flash;
#[cfg(feature = "net")]
mod lan9118;
mod uart;

use core::sync::atomic::{AtomicBool, Ordering};

use flashgate_protocol::{layout, Serial, SERIAL_LEN};

#[cfg(feature = "semihosting-entropy")]
pub use entropy::SemihostingEntropy;
pub use flash::CodeFlash;
#[cfg(feature = "net")]
pub use lan9118::{Lan9118, Lan9118Device, Lan9118Error};
pub use uart::Uart0;

use crate::hal::UniqueId;

/// The unique ID the board launcher loads into block RAM before the core starts.
pub struct LoadedUid {
    _private: (),
}

impl UniqueId for LoadedUid {
    #[allow(unsafe_code, reason = "reads the ID the launcher loaded")]
    fn unique_id(&self) -> Serial {
        let mut uid = [0u8; SERIAL_LEN];
        for (i, byte) in uid.iter_mut().enumerate() {
            // SAFETY: UNIQUE_ID_ADDR..+16 is block RAM on mps2-an386, outside every Rust
            // allocation; the launcher writes it before the core starts.
            *byte = unsafe {
                core::ptr::read_volatile((layout::UNIQUE_ID_ADDR as usize + i) as *const u8)
            };
        }
        uid
    }
}

/// Every peripheral flashgate uses on this board, handed out once by [`Mps2An386::take`].
pub struct Mps2An386 {
    /// The code memory, driven as NOR flash; also the debug-port lock.
    pub flash: CodeFlash,
    /// Host entropy over semihosting (emulator builds of programs that need entropy).
    #[cfg(feature = "semihosting-entropy")]
    pub entropy: SemihostingEntropy,
    /// CMSDK UART0, the update link (enabled by [`Mps2An386::take`]).
    pub uart: Uart0,
    /// The launcher-loaded unique ID.
    pub uid: LoadedUid,
    /// The LAN9118 Ethernet controller, not yet reset ([`Lan9118::init`]).
    #[cfg(feature = "net")]
    pub eth: Lan9118,
}

static TAKEN: AtomicBool = AtomicBool::new(false);

impl Mps2An386 {
    /// Board name, as the launcher and the README call it.
    pub const NAME: &'static str = "mps2-an386";
    /// Core clock (SysTick's processor clock): 25 MHz on the mps2 FPGA images; QEMU's
    /// `-icount shift=0` derives it from the instruction count (1 tick = 40 instructions).
    pub const CORE_CLOCK_HZ: u32 = 25_000_000;

    /// Returns the board's peripherals the first time, `None` afterwards, and enables UART0.
    pub fn take() -> Option<Self> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        let mut uart = Uart0 { _private: () };
        uart.enable();
        Some(Self {
            flash: CodeFlash { _private: () },
            #[cfg(feature = "semihosting-entropy")]
            entropy: SemihostingEntropy { _private: () },
            uart,
            uid: LoadedUid { _private: () },
            #[cfg(feature = "net")]
            eth: Lan9118 { _private: () },
        })
    }
}
