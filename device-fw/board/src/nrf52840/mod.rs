//! Nordic nRF52840 (Cortex-M4F at 64 MHz, 1 MiB flash, 256 KiB RAM), the first real-silicon
//! port. Built in CI for its memory map (`flashgate_protocol::layout::nrf52840`, selected by
//! the feature `board-nrf52840`) and size-checked; it has never run on a chip (no hardware
//! here): see `device-fw/README.md`, "Ports", for what that leaves unproven.
//!
//! | HAL trait | peripheral |
//! | --- | --- |
//! | `NorFlash`, `DebugPortLock` | NVMC (4 KiB pages, 32-bit word programming), UICR.APPROTECT |
//! | `EntropySource` | RNG with bias correction (`CONFIG.DERCEN`) |
//! | `UniqueId` | FICR.DEVICEID (64-bit) + FICR.INFO.PART and INFO.VARIANT |
//! | `SerialPort` | UART0 (legacy, polled) on the nRF52840-DK's VCOM pins P0.06 / P0.08 |

#[cfg(feature = "semihosting-entropy")]
compile_error!(
    "flashgate-board: `semihosting-entropy` is for the emulator only (on silicon it would let \
     whoever holds the debug port choose the \"random\" bytes); the nRF52840 port draws entropy \
     from its RNG. Build real-silicon programs without the `emulator` feature."
);
#[cfg(feature = "net")]
compile_error!("flashgate-board: the nRF52840 has no Ethernet controller (feature `net`)");

mod ficr;
mod mmio;
mod nvmc;
#[cfg(feature = "entropy")]
mod rng;
mod uart;

use core::sync::atomic::{AtomicBool, Ordering};

pub use ficr::Ficr;
pub use nvmc::Nvmc;
#[cfg(feature = "entropy")]
pub use rng::Rng;
pub use uart::Uart0;

/// Every peripheral flashgate uses on this chip, handed out once by [`Nrf52840::take`].
pub struct Nrf52840 {
    /// The on-chip flash through the NVMC; also the debug-port lock (UICR.APPROTECT).
    pub flash: Nvmc,
    /// The RNG peripheral (programs that need entropy).
    #[cfg(feature = "entropy")]
    pub entropy: Rng,
    /// UART0, the update link (enabled by [`Nrf52840::take`]).
    pub uart: Uart0,
    /// The factory-programmed identity in FICR.
    pub uid: Ficr,
}

static TAKEN: AtomicBool = AtomicBool::new(false);

impl Nrf52840 {
    /// Board name, as the README calls it.
    pub const NAME: &'static str = "nrf52840";
    /// Core clock: the HFCLK, 64 MHz.
    pub const CORE_CLOCK_HZ: u32 = 64_000_000;

    /// Returns the chip's peripherals the first time, `None` afterwards, and enables UART0.
    pub fn take() -> Option<Self> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        let mut uart = Uart0 { _private: () };
        uart.enable();
        Some(Self {
            flash: Nvmc { _private: () },
            #[cfg(feature = "entropy")]
            entropy: Rng { _private: () },
            uart,
            uid: Ficr { _private: () },
        })
    }
}
