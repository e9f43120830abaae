//! The on-chip flash through the NVMC (non-volatile memory controller), and the debug-port
//! lock in UICR.
//!
//! The NVMC programs whole, aligned 32-bit words and erases 4 KiB pages. [`NorFlash::program`]
//! takes any byte range: each word it touches is written once, with 0xFF in the bytes outside
//! the range (a NOR write of 1 bits changes nothing). The chip allows a word to be written at
//! most twice between erases (n_WRITE, nRF52840 product specification); see
//! `device-fw/README.md`, "Ports", for the one writer that does not keep to that yet.

use flashgate_protocol::flash::{FlashError, LoaderPlatform, NorFlash};

use super::mmio;
use crate::hal::DebugPortLock;
use crate::mapped_flash;

const NVMC: u32 = 0x4001_E000;
const READY: u32 = NVMC + 0x400;
const CONFIG: u32 = NVMC + 0x504;
const ERASEPAGE: u32 = NVMC + 0x508;
const CONFIG_READ_ONLY: u32 = 0;
const CONFIG_WRITE: u32 = 1;
const CONFIG_ERASE: u32 = 2;

/// UICR.APPROTECT: 0xFF = debug access allowed, 0x00 = protected (from the next reset).
const UICR_APPROTECT: u32 = 0x1000_1208;
const APPROTECT_ENABLED: u32 = 0xFFFF_FF00;

/// A page erase takes up to 85 ms: far fewer spins than this at 64 MHz.
const READY_SPINS: u32 = 50_000_000;

/// The on-chip flash (see the module docs).
pub struct Nvmc {
    pub(super) _private: (),
}

impl Nvmc {
    fn wait_ready() -> Result<(), FlashError> {
        for _ in 0..READY_SPINS {
            if mmio::read(READY) & 1 != 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(FlashError::Timeout)
    }

    /// Runs `op` with the NVMC in `mode`, and puts it back to read only whatever happens.
    fn with_mode(mode: u32, op: impl FnOnce() -> Result<(), FlashError>) -> Result<(), FlashError> {
        Self::wait_ready()?;
        mmio::write(CONFIG, mode);
        let result = op().and_then(|()| Self::wait_ready());
        mmio::write(CONFIG, CONFIG_READ_ONLY);
        result
    }

    fn write_word(addr: u32, word: u32) -> Result<(), FlashError> {
        Self::wait_ready()?;
        mmio::write(addr, word);
        Ok(())
    }
}

impl NorFlash for Nvmc {
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        mapped_flash::read(addr, buf)
    }

    fn erase_page(&mut self, addr: u32) -> Result<(), FlashError> {
        mapped_flash::check_page::<Self>(addr)?;
        Self::with_mode(CONFIG_ERASE, || {
            mmio::write(ERASEPAGE, addr);
            Ok(())
        })
    }

    fn program(&mut self, addr: u32, data: &[u8]) -> Result<(), FlashError> {
        mapped_flash::check_erased(addr, data.len())?;
        let len = data.len() as u32;
        Self::with_mode(CONFIG_WRITE, || {
            let mut word_addr = addr & !3;
            while word_addr < addr + len {
                let mut word = [0xFFu8; 4];
                for (i, cell) in word.iter_mut().enumerate() {
                    let at = word_addr + i as u32;
                    if (addr..addr + len).contains(&at) {
                        *cell = data[(at - addr) as usize];
                    }
                }
                Self::write_word(word_addr, u32::from_le_bytes(word))?;
                word_addr += 4;
            }
            Ok(())
        })
    }
}

impl DebugPortLock for Nvmc {
    /// Programs UICR.APPROTECT to "protected"; the access port closes at the next reset and
    /// reopens only through ERASEALL, which wipes flash, UICR and RAM.
    fn lock_debug_port(&mut self) -> Result<(), FlashError> {
        if self.debug_port_locked() {
            return Ok(());
        }
        Self::with_mode(CONFIG_WRITE, || {
            Self::write_word(UICR_APPROTECT, APPROTECT_ENABLED)
        })
    }

    fn debug_port_locked(&mut self) -> bool {
        mmio::read(UICR_APPROTECT) & 0xFF != 0xFF
    }
}

impl LoaderPlatform for Nvmc {
    fn lock_debug_port(&mut self) -> Result<(), FlashError> {
        DebugPortLock::lock_debug_port(self)
    }
}
