//! The code memory at 0x0 driven as NOR flash.
//!
//! QEMU models no flash controller: the "flash" of mps2-an386 is RAM. The rules a real NOR
//! flash enforces in silicon are enforced here instead, so that code which works against this
//! driver (and against the protocol crate's `RamFlash`, which has the same rules) does not
//! rely on rewriting cells in place: erase works on whole 4 KiB pages and leaves 0xFF; program
//! only writes cells that read 0xFF and fails, writing nothing, otherwise. All accesses are
//! volatile: this memory is outside every Rust allocation (it may even hold the running
//! bootloader).
#![allow(
    unsafe_code,
    reason = "volatile access to code memory (outside every allocation)"
)]

use flashgate_protocol::flash::{FlashError, LoaderPlatform, NorFlash};
use flashgate_protocol::layout;

use crate::hal::DebugPortLock;
use crate::mapped_flash;

/// The code memory as NOR flash (see the module docs for the emulated rules).
pub struct CodeFlash {
    pub(super) _private: (),
}

impl CodeFlash {
    fn write_byte(addr: u32, value: u8) {
        // SAFETY: callers check `addr` is inside the code memory (`mapped_flash`), outside every
        // Rust allocation; it is plain writable RAM in QEMU.
        unsafe { core::ptr::write_volatile(addr as usize as *mut u8, value) }
    }
}

impl NorFlash for CodeFlash {
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        mapped_flash::read(addr, buf)
    }

    fn erase_page(&mut self, addr: u32) -> Result<(), FlashError> {
        mapped_flash::check_page::<Self>(addr)?;
        for word in (addr..addr + Self::PAGE_SIZE).step_by(4) {
            // SAFETY: page-aligned range checked above, inside the code memory.
            unsafe { core::ptr::write_volatile(word as usize as *mut u32, u32::MAX) };
        }
        Ok(())
    }

    fn program(&mut self, addr: u32, data: &[u8]) -> Result<(), FlashError> {
        mapped_flash::check_erased(addr, data.len())?;
        for (at, byte) in (addr..).zip(data) {
            Self::write_byte(at, *byte);
        }
        Ok(())
    }
}

impl DebugPortLock for CodeFlash {
    /// Writes [`layout::DEBUG_LOCK_MAGIC`] into its own page at [`layout::DEBUG_LOCK_ADDR`].
    /// On this board the lock takes effect at the next power-up: the launcher finds the marker
    /// in the persisted flash and starts QEMU without a gdbstub.
    fn lock_debug_port(&mut self) -> Result<(), FlashError> {
        if self.debug_port_locked() {
            return Ok(());
        }
        self.erase_page(layout::DEBUG_LOCK_ADDR)?;
        self.program(
            layout::DEBUG_LOCK_ADDR,
            &layout::DEBUG_LOCK_MAGIC.to_le_bytes(),
        )
    }

    fn debug_port_locked(&mut self) -> bool {
        let mut word = [0u8; 4];
        self.read(layout::DEBUG_LOCK_ADDR, &mut word).is_ok()
            && u32::from_le_bytes(word) == layout::DEBUG_LOCK_MAGIC
    }
}

impl LoaderPlatform for CodeFlash {
    fn lock_debug_port(&mut self) -> Result<(), FlashError> {
        DebugPortLock::lock_debug_port(self)
    }
}
