//! What every board's flash driver shares: the flash is memory mapped (readable with plain
//! loads), bounded by `layout::FLASH_BASE`/`FLASH_SIZE`, erased to 0xFF by page, and NOR (a
//! program may only clear bits, so it is refused unless every target byte reads 0xFF).
#![allow(
    unsafe_code,
    reason = "volatile reads of memory-mapped flash (outside every allocation)"
)]

use flashgate_protocol::flash::{FlashError, NorFlash};
use flashgate_protocol::layout;

/// `[addr, addr + len)` lies inside the board's flash.
pub(crate) fn check(addr: u32, len: usize) -> Result<(), FlashError> {
    let len = u32::try_from(len).map_err(|_| FlashError::OutOfRange)?;
    let start = addr
        .checked_sub(layout::FLASH_BASE)
        .ok_or(FlashError::OutOfRange)?;
    let end = start.checked_add(len).ok_or(FlashError::OutOfRange)?;
    if end > layout::FLASH_SIZE {
        return Err(FlashError::OutOfRange);
    }
    Ok(())
}

/// `addr` starts a page of `F` inside the flash.
pub(crate) fn check_page<F: NorFlash>(addr: u32) -> Result<(), FlashError> {
    if addr % F::PAGE_SIZE != 0 {
        return Err(FlashError::Misaligned);
    }
    check(addr, F::PAGE_SIZE as usize)
}

/// One byte of flash; callers have checked `addr` with [`check`].
pub(crate) fn read_byte(addr: u32) -> u8 {
    // SAFETY: `addr` is inside the flash (checked by the caller), which is mapped, readable
    // byte by byte and outside every Rust allocation; volatile reads there do not trap
    // (address 0 included).
    unsafe { core::ptr::read_volatile(addr as usize as *const u8) }
}

/// Reads `buf.len()` bytes at `addr`.
pub(crate) fn read(addr: u32, buf: &mut [u8]) -> Result<(), FlashError> {
    check(addr, buf.len())?;
    for (at, byte) in (addr..).zip(buf.iter_mut()) {
        *byte = read_byte(at);
    }
    Ok(())
}

/// `[addr, addr + len)` is inside the flash and erased, so programming it writes nothing
/// else: NOR all-or-nothing, a refused program leaves the flash as it was.
pub(crate) fn check_erased(addr: u32, len: usize) -> Result<(), FlashError> {
    check(addr, len)?;
    if (addr..addr + len as u32).any(|at| read_byte(at) != 0xFF) {
        return Err(FlashError::NotErased);
    }
    Ok(())
}
