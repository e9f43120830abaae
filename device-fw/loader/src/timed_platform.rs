//! Counts the SysTick ticks the session spends in flash operations, so the station's bench can
//! tell flash programming from crypto on the target.

use flashgate_board::cpu::SysTickCounter;
use flashgate_protocol::flash::{FlashError, LoaderPlatform, NorFlash};

/// A [`LoaderPlatform`] that forwards to the board's and times every flash call.
pub struct TimedPlatform<'a, P> {
    inner: &'a mut P,
    ticks: &'a SysTickCounter,
    flash_ticks: u32,
}

impl<'a, P: LoaderPlatform> TimedPlatform<'a, P> {
    /// Wraps the board's flash.
    pub fn new(inner: &'a mut P, ticks: &'a SysTickCounter) -> Self {
        Self {
            inner,
            ticks,
            flash_ticks: 0,
        }
    }

    /// Cumulative ticks in flash operations (wraps modulo 2^32).
    pub fn flash_ticks(&self) -> u32 {
        self.flash_ticks
    }

    fn timed<T>(&mut self, op: impl FnOnce(&mut P) -> T) -> T {
        let began = self.ticks.now();
        let result = op(self.inner);
        self.flash_ticks = self
            .flash_ticks
            .wrapping_add(self.ticks.ticks_since(began));
        result
    }
}

impl<P: LoaderPlatform> NorFlash for TimedPlatform<'_, P> {
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        self.inner.read(addr, buf)
    }

    fn erase_page(&mut self, addr: u32) -> Result<(), FlashError> {
        self.timed(|f| f.erase_page(addr))
    }

    fn program(&mut self, addr: u32, data: &[u8]) -> Result<(), FlashError> {
        self.timed(|f| f.program(addr, data))
    }
}

impl<P: LoaderPlatform> LoaderPlatform for TimedPlatform<'_, P> {
    fn lock_debug_port(&mut self) -> Result<(), FlashError> {
        self.timed(|f| f.lock_debug_port())
    }
}
