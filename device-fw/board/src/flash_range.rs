//! The bounds check every board's flash driver runs before it touches a cell.

use flashgate_protocol::flash::FlashError;
use flashgate_protocol::layout;

/// `[addr, addr + len)` lies inside the board's flash (`layout::FLASH_BASE`, `FLASH_SIZE`).
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
