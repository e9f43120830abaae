//! The loader's platform: the board's flash, timed (SysTick ticks spent in flash operations, so
//! the station's bench can tell flash programming from crypto on the target), and the runner of
//! the factory test application in RAM.
#![allow(unsafe_code, reason = "calls into the test app in RAM")]

use flashgate_board::cpu::SysTickCounter;
use flashgate_protocol::flash::{FlashError, LoaderPlatform, NorFlash};
use flashgate_protocol::layout::{TEST_APP_ADDR, TEST_APP_MAX};
use flashgate_protocol::ErrorCode;

/// "FGTA": the test application's header magic (see `device-fw/test-app`).
const TEST_APP_MAGIC: u32 = 0x4154_4746;
const TEST_APP_VERSION: u32 = 1;

/// The test application's entry (AAPCS): fills `report`, returns the failed-check count.
type TestAppEntry = extern "C" fn(report: *mut u8, report_len: u32) -> u32;

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
        self.flash_ticks = self.flash_ticks.wrapping_add(self.ticks.ticks_since(began));
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

    fn load_test_app(&mut self, offset: u32, data: &[u8]) -> Result<(), ErrorCode> {
        let fits = offset
            .checked_add(data.len() as u32)
            .is_some_and(|end| end <= TEST_APP_MAX);
        if !fits {
            return Err(ErrorCode::ImageTooLarge);
        }
        // SAFETY: [TEST_APP_ADDR, +TEST_APP_MAX) is RAM reserved for the test application in
        // the memory map; no Rust object of the loader lives there (the loader's RAM ends below).
        unsafe {
            core::ptr::copy_nonoverlapping(
                data.as_ptr(),
                (TEST_APP_ADDR + offset) as usize as *mut u8,
                data.len(),
            );
        }
        Ok(())
    }

    fn test_app_in_ram(&mut self, len: u32) -> Result<&[u8], ErrorCode> {
        if len > TEST_APP_MAX {
            return Err(ErrorCode::ImageTooLarge);
        }
        // SAFETY: [TEST_APP_ADDR, +len) lies in the RAM reserved for the test application
        // (checked above); nothing writes it while the loader hashes it (the core runs only
        // the loader between this read and the call: no host turn in between).
        Ok(unsafe {
            core::slice::from_raw_parts(TEST_APP_ADDR as usize as *const u8, len as usize)
        })
    }

    fn run_test_app(&mut self, report: &mut [u8]) -> Result<u32, ErrorCode> {
        let word = |i: u32| {
            // SAFETY: reads of the loaded (and digest-checked) test-app header in its RAM area.
            unsafe { core::ptr::read_volatile((TEST_APP_ADDR + 4 * i) as usize as *const u32) }
        };
        if word(0) != TEST_APP_MAGIC || word(1) != TEST_APP_VERSION {
            return Err(ErrorCode::BadMagic);
        }
        let entry = word(2);
        if entry & 1 == 0 || !(TEST_APP_ADDR..TEST_APP_ADDR + TEST_APP_MAX).contains(&(entry & !1))
        {
            return Err(ErrorCode::BadLoadAddress);
        }
        // SAFETY: the image's vendor signature and digest were verified before this call, and its
        // entry lies inside it; the ABI is the test app's documented `extern "C"` entry.
        let run: TestAppEntry = unsafe { core::mem::transmute(entry as usize) };
        Ok(run(report.as_mut_ptr(), report.len() as u32))
    }
}
