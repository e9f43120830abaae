//! The RNG peripheral: a thermal-noise source, one byte per VALRDY event.
//!
//! Bias correction (`CONFIG.DERCEN`) on, as Nordic advises for cryptographic use; it roughly
//! quadruples the time per byte (about 120 µs instead of 30 µs), which for the loader's 32-byte
//! secret is a few milliseconds.

use super::mmio;
use crate::hal::{EntropyError, EntropySource};

const RNG: u32 = 0x4000_D000;
const TASKS_START: u32 = RNG;
const TASKS_STOP: u32 = RNG + 0x004;
const EVENTS_VALRDY: u32 = RNG + 0x100;
const CONFIG: u32 = RNG + 0x504;
const VALUE: u32 = RNG + 0x508;
const CONFIG_DERCEN: u32 = 1;

/// Spins to wait for one byte before calling the source broken: far above the ~7,700 core
/// cycles a bias-corrected byte takes at 64 MHz.
const SPINS_PER_BYTE: u32 = 1_000_000;

/// The RNG peripheral, polled.
pub struct Rng {
    pub(super) _private: (),
}

impl EntropySource for Rng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        mmio::write(CONFIG, CONFIG_DERCEN);
        mmio::write(EVENTS_VALRDY, 0);
        mmio::write(TASKS_START, 1);
        let mut filled = Ok(());
        for byte in buf.iter_mut() {
            if !mmio::take_event(EVENTS_VALRDY, SPINS_PER_BYTE) {
                filled = Err(EntropyError::ShortRead);
                break;
            }
            *byte = mmio::read(VALUE) as u8;
        }
        mmio::write(TASKS_STOP, 1);
        if filled.is_err() {
            // Never hand back a partly filled buffer as if it were random.
            buf.fill(0);
        }
        filled
    }
}
