//! The flash abstraction the target-side state machines program through.
//!
//! Implemented by the firmware's board layer (for the emulated board it enforces NOR rules in
//! software) and by [`RamFlash`] for host tests.

/// Why a flash operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashError {
    /// Address or length outside the flash.
    OutOfRange,
    /// Erase address not on a page boundary.
    Misaligned,
    /// Programming a cell that is not erased (NOR can only clear bits).
    NotErased,
    /// The flash controller did not finish an operation in time (silicon ports).
    Timeout,
}

impl From<FlashError> for crate::ErrorCode {
    fn from(_: FlashError) -> Self {
        crate::ErrorCode::Flash
    }
}

/// NOR flash as the protocol sees it: erase by page to 0xFF, program erased cells only.
pub trait NorFlash {
    /// Erase granularity in bytes.
    const PAGE_SIZE: u32 = crate::layout::FLASH_PAGE_SIZE;

    /// Reads `buf.len()` bytes at `addr`.
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), FlashError>;
    /// Erases the page starting at `addr` (page aligned) to 0xFF.
    fn erase_page(&mut self, addr: u32) -> Result<(), FlashError>;
    /// Programs `data` at `addr`; every target byte must be erased.
    fn program(&mut self, addr: u32, data: &[u8]) -> Result<(), FlashError>;

    /// Erases every page that overlaps `[addr, addr + len)`.
    fn erase_range(&mut self, addr: u32, len: u32) -> Result<(), FlashError> {
        let page = Self::PAGE_SIZE;
        let mut at = addr - addr % page;
        let end = addr.checked_add(len).ok_or(FlashError::OutOfRange)?;
        while at < end {
            self.erase_page(at)?;
            at += page;
        }
        Ok(())
    }
}

/// What the flash loader needs from the target beyond flash.
pub trait LoaderPlatform: NorFlash {
    /// Makes the debug port refuse further connections (RDP level, APPROTECT, ...). On the
    /// emulated board this writes the lock marker that the board launcher honours.
    fn lock_debug_port(&mut self) -> Result<(), FlashError>;

    /// Copies `data` into the test application's RAM area at `offset`.
    fn load_test_app(&mut self, offset: u32, data: &[u8]) -> Result<(), crate::ErrorCode> {
        let _ = (offset, data);
        Err(crate::ErrorCode::NoTestRunner)
    }

    /// The first `len` bytes of the test application's RAM area as they are now: the loader
    /// hashes these right before it calls them.
    fn test_app_in_ram(&mut self, len: u32) -> Result<&[u8], crate::ErrorCode> {
        let _ = len;
        Err(crate::ErrorCode::NoTestRunner)
    }

    /// Calls the loaded test application; it fills `report` (`failed u32, log_len u32, log`)
    /// and returns the number of failed checks.
    fn run_test_app(&mut self, report: &mut [u8]) -> Result<u32, crate::ErrorCode> {
        let _ = report;
        Err(crate::ErrorCode::NoTestRunner)
    }
}

/// NOR flash simulated in host memory, with the same rules as the emulated board's driver.
#[cfg(feature = "std")]
pub struct RamFlash {
    /// The flash contents, starting at address 0.
    pub bytes: std::vec::Vec<u8>,
    /// Set by [`LoaderPlatform::lock_debug_port`].
    pub debug_locked: bool,
}

/// A flash that can also "run" a test application, for host tests: it records what was
/// loaded and answers with a canned result.
#[cfg(feature = "std")]
pub struct RamTarget {
    /// The flash.
    pub flash: RamFlash,
    /// Bytes loaded into the test-app area.
    pub test_app: std::vec::Vec<u8>,
    /// What `run_test_app` reports: failed checks and log.
    pub test_outcome: (u32, &'static [u8]),
}

#[cfg(feature = "std")]
impl NorFlash for RamTarget {
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        self.flash.read(addr, buf)
    }
    fn erase_page(&mut self, addr: u32) -> Result<(), FlashError> {
        self.flash.erase_page(addr)
    }
    fn program(&mut self, addr: u32, data: &[u8]) -> Result<(), FlashError> {
        self.flash.program(addr, data)
    }
}

#[cfg(feature = "std")]
impl LoaderPlatform for RamTarget {
    fn lock_debug_port(&mut self) -> Result<(), FlashError> {
        self.flash.lock_debug_port()
    }

    fn load_test_app(&mut self, offset: u32, data: &[u8]) -> Result<(), crate::ErrorCode> {
        if offset as usize != self.test_app.len() {
            return Err(crate::ErrorCode::BadOffset);
        }
        self.test_app.extend_from_slice(data);
        Ok(())
    }

    fn test_app_in_ram(&mut self, len: u32) -> Result<&[u8], crate::ErrorCode> {
        self.test_app
            .get(..len as usize)
            .ok_or(crate::ErrorCode::ImageIncomplete)
    }

    fn run_test_app(&mut self, report: &mut [u8]) -> Result<u32, crate::ErrorCode> {
        let (failed, log) = self.test_outcome;
        report[..4].copy_from_slice(&failed.to_le_bytes());
        report[4..8].copy_from_slice(&(log.len() as u32).to_le_bytes());
        report[8..8 + log.len()].copy_from_slice(log);
        Ok(failed)
    }
}

#[cfg(feature = "std")]
impl RamFlash {
    /// A fully erased flash of `size` bytes.
    pub fn erased(size: usize) -> Self {
        Self {
            bytes: std::vec![0xFF; size],
            debug_locked: false,
        }
    }

    fn range(&self, addr: u32, len: usize) -> Result<core::ops::Range<usize>, FlashError> {
        let start = addr as usize;
        let end = start.checked_add(len).ok_or(FlashError::OutOfRange)?;
        if end > self.bytes.len() {
            return Err(FlashError::OutOfRange);
        }
        Ok(start..end)
    }
}

#[cfg(feature = "std")]
impl NorFlash for RamFlash {
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn erase_page(&mut self, addr: u32) -> Result<(), FlashError> {
        if addr % Self::PAGE_SIZE != 0 {
            return Err(FlashError::Misaligned);
        }
        let r = self.range(addr, Self::PAGE_SIZE as usize)?;
        self.bytes[r].fill(0xFF);
        Ok(())
    }

    fn program(&mut self, addr: u32, data: &[u8]) -> Result<(), FlashError> {
        let r = self.range(addr, data.len())?;
        if self.bytes[r.clone()].iter().any(|b| *b != 0xFF) {
            return Err(FlashError::NotErased);
        }
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(feature = "std")]
impl LoaderPlatform for RamFlash {
    fn lock_debug_port(&mut self) -> Result<(), FlashError> {
        let addr = crate::layout::DEBUG_LOCK_ADDR;
        self.erase_page(addr)?;
        self.program(addr, &crate::layout::DEBUG_LOCK_MAGIC.to_le_bytes())?;
        self.debug_locked = true;
        Ok(())
    }
}
