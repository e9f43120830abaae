//! The app slot's anti-rollback floor ([`AppFloor`]).

use crate::flash::NorFlash;
use crate::layout::{APP_FLOOR_ADDR, APP_FLOOR_PAGES, FLASH_PAGE_SIZE};
use crate::ErrorCode;

/// The app slot's anti-rollback floor: the highest app version ever committed. Two flash pages
/// at `APP_FLOOR_ADDR` of append-only 8-byte entries `version u32 | !version u32`; the highest
/// valid entry of both pages wins (an entry torn by a power cut fails its check and is
/// skipped). When the page holding the floor is full, the other page is erased and the floor
/// written there first, so the highest entry always survives in one page.
pub struct AppFloor;

const ENTRY_LEN: u32 = 8;
const ENTRIES_PER_PAGE: u32 = FLASH_PAGE_SIZE / ENTRY_LEN;

impl AppFloor {
    fn entry<F: NorFlash>(flash: &mut F, page: u32, i: u32) -> Result<[u8; 8], ErrorCode> {
        let mut raw = [0u8; 8];
        flash.read(
            APP_FLOOR_ADDR + page * FLASH_PAGE_SIZE + i * ENTRY_LEN,
            &mut raw,
        )?;
        Ok(raw)
    }

    fn decode(raw: [u8; 8]) -> Option<u32> {
        let version = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let check = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
        (check == !version).then_some(version)
    }

    /// Per page: the highest valid version and the index of the first free entry (after the
    /// last one used), if any.
    fn scan<F: NorFlash>(flash: &mut F, page: u32) -> Result<(u32, Option<u32>), ErrorCode> {
        let mut highest = 0;
        let mut free = None;
        for i in (0..ENTRIES_PER_PAGE).rev() {
            let raw = Self::entry(flash, page, i)?;
            if raw == [0xFF; 8] {
                free = Some(i);
                continue;
            }
            break;
        }
        for i in 0..ENTRIES_PER_PAGE {
            if let Some(v) = Self::decode(Self::entry(flash, page, i)?) {
                highest = highest.max(v);
            }
        }
        Ok((highest, free))
    }

    /// The floor (0 on a device that never committed an app).
    pub fn read<F: NorFlash>(flash: &mut F) -> Result<u32, ErrorCode> {
        let mut floor = 0;
        for page in 0..APP_FLOOR_PAGES {
            floor = floor.max(Self::scan(flash, page)?.0);
        }
        Ok(floor)
    }

    /// Raises the floor to `version` (nothing to do when it is already there or higher).
    pub fn raise<F: NorFlash>(flash: &mut F, version: u32) -> Result<(), ErrorCode> {
        let (a, b) = (Self::scan(flash, 0)?, Self::scan(flash, 1)?);
        if version <= a.0.max(b.0) {
            return Ok(());
        }
        // Append to the page holding the floor; when it is full, start the other one.
        let (page, other) = if a.0 >= b.0 { (0, (1, b)) } else { (1, (0, a)) };
        let mut entry = [0u8; 8];
        entry[..4].copy_from_slice(&version.to_le_bytes());
        entry[4..].copy_from_slice(&(!version).to_le_bytes());
        let at = |page: u32, i: u32| APP_FLOOR_ADDR + page * FLASH_PAGE_SIZE + i * ENTRY_LEN;
        match [a, b][page as usize].1 {
            Some(i) => flash.program(at(page, i), &entry)?,
            None => {
                let (other_page, _) = other;
                flash.erase_page(at(other_page, 0))?;
                flash.program(at(other_page, 0), &entry)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::RamFlash;

    #[test]
    fn the_floor_survives_a_full_page_and_torn_entries() {
        let mut flash = RamFlash::erased(0x40_0000);
        for v in 1..=(2 * ENTRIES_PER_PAGE + 5) {
            AppFloor::raise(&mut flash, v).unwrap();
            assert_eq!(AppFloor::read(&mut flash), Ok(v));
        }
        // Lower or equal: nothing written.
        let before = flash.bytes.clone();
        AppFloor::raise(&mut flash, 3).unwrap();
        assert_eq!(flash.bytes, before);
        // A torn entry (half programmed) is skipped; the next raise goes after it.
        let mut flash = RamFlash::erased(0x40_0000);
        AppFloor::raise(&mut flash, 9).unwrap();
        flash.program(APP_FLOOR_ADDR + 8, &[0x00, 0x00]).unwrap();
        assert_eq!(AppFloor::read(&mut flash), Ok(9));
        AppFloor::raise(&mut flash, 10).unwrap();
        assert_eq!(AppFloor::read(&mut flash), Ok(10));
    }
}
