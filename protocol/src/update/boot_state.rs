//! The boot-state pages: what the bootloader must remember across power cuts.
//!
//! Two flash pages at `BOOT_STATE_ADDR` hold append-only 64-byte slots. Each slot is a whole
//! snapshot of the state; the valid slot with the highest `seq` wins:
//! ```text
//! magic "FGBS" u32 | seq u32 | phase u8 | attempts u8 | outcome u8 | 0 u8 | floor u32
//! | new_version u32 | old_version u32 | old_pages u16 | new_pages u16 | last_error u32
//! | 0xFF * 4 (reserved) | crc32 u32 (over the 36 bytes before it) | 0xFF * 24
//! ```
//! A torn slot fails its CRC and is skipped. When the current page is full the *other* page is
//! erased and the next snapshot goes there; the full page stays intact until then, so a cut
//! during that erase still leaves the previous snapshot readable.

use crate::codec::{self, Codec, Reader, Writer};
use crate::crc::crc32;
use crate::flash::NorFlash;
use crate::layout::{BOOT_STATE_ADDR, BOOT_STATE_PAGES, FLASH_PAGE_SIZE};
use crate::ErrorCode;

/// Magic of a boot-state slot ("FGBS").
pub const STATE_MAGIC: u32 = 0x5342_4746;
/// Bytes per slot.
pub const SLOT_LEN: u32 = 64;
const DATA_LEN: usize = 36;

/// Where an install stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Nothing in progress.
    Idle = 0,
    /// Copying the running image to the backup slot.
    Backup = 1,
    /// Copying the staged image over the OS slot (the backup is complete).
    Copy = 2,
    /// The new image is installed and boots on trial until it confirms itself.
    Trial = 3,
    /// Copying the backup back over the OS slot.
    Revert = 4,
}

/// How the last update ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// No update yet.
    None = 0,
    /// The new image runs and confirmed itself; the floor was raised to its version.
    Updated = 1,
    /// The new image failed (refused at boot or never confirmed); the old one was restored.
    RolledBack = 2,
    /// An install is under way (phase other than idle).
    InProgress = 3,
}

impl Outcome {
    /// Decodes a stored or received value.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::None,
            1 => Self::Updated,
            2 => Self::RolledBack,
            3 => Self::InProgress,
            _ => return None,
        })
    }
}

/// One snapshot of the boot state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootState {
    /// Monotonic snapshot number.
    pub seq: u32,
    /// Install progress.
    pub phase: Phase,
    /// Boots of the trial image so far.
    pub attempts: u8,
    /// How the last update ended.
    pub outcome: Outcome,
    /// Anti-rollback floor raised by confirmed updates (the device record's floor applies too).
    pub floor: u32,
    /// Version being (or last) installed.
    pub new_version: u32,
    /// Version it replaces (0: none).
    pub old_version: u32,
    /// Pages of the OS slot the old image occupies (what the backup holds).
    pub old_pages: u16,
    /// Pages of the staged image.
    pub new_pages: u16,
    /// Why the last update was rolled back (0: it was not).
    pub last_error: u32,
}

impl Default for BootState {
    fn default() -> Self {
        Self {
            seq: 0,
            phase: Phase::Idle,
            attempts: 0,
            outcome: Outcome::None,
            floor: 0,
            new_version: 0,
            old_version: 0,
            old_pages: 0,
            new_pages: 0,
            last_error: 0,
        }
    }
}

impl Phase {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Idle,
            1 => Self::Backup,
            2 => Self::Copy,
            3 => Self::Trial,
            4 => Self::Revert,
            _ => return None,
        })
    }
}

/// One 64-byte slot: a torn or erased slot fails its CRC ([`ErrorCode::BadChecksum`]).
impl Codec<'_> for BootState {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        // The fields take 32 bytes; the 4 after them stay erased (reserved) and are covered by
        // the CRC like the rest.
        let mut data = [0xFFu8; DATA_LEN];
        let mut d = Writer::new(&mut data);
        d.u32(STATE_MAGIC)?;
        d.u32(self.seq)?;
        d.put(&[self.phase as u8, self.attempts, self.outcome as u8, 0])?;
        d.u32(self.floor)?;
        d.u32(self.new_version)?;
        d.u32(self.old_version)?;
        d.u16(self.old_pages)?;
        d.u16(self.new_pages)?;
        d.u32(self.last_error)?;
        w.put(&data)?;
        w.u32(crc32(&[&data]))?;
        w.put(&[0xFF; SLOT_LEN as usize - DATA_LEN - 4])
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let data = r.take(DATA_LEN)?;
        let crc = r.u32()?;
        r.take(SLOT_LEN as usize - DATA_LEN - 4)?;
        if crc != crc32(&[data]) {
            return Err(ErrorCode::BadChecksum);
        }
        let mut d = Reader::new(data);
        if d.u32()? != STATE_MAGIC {
            return Err(ErrorCode::BadMagic);
        }
        let seq = d.u32()?;
        let [phase, attempts, outcome, _] = d.array::<4>()?;
        Ok(Self {
            seq,
            phase: Phase::from_u8(phase).ok_or(ErrorCode::BadMagic)?,
            attempts,
            outcome: Outcome::from_u8(outcome).ok_or(ErrorCode::BadMagic)?,
            floor: d.u32()?,
            new_version: d.u32()?,
            old_version: d.u32()?,
            old_pages: d.u16()?,
            new_pages: d.u16()?,
            last_error: d.u32()?,
        })
    }
}

const SLOTS_PER_PAGE: u32 = FLASH_PAGE_SIZE / SLOT_LEN;

fn slot_addr(page: u32, slot: u32) -> u32 {
    BOOT_STATE_ADDR + page * FLASH_PAGE_SIZE + slot * SLOT_LEN
}

/// Where the latest snapshot is, and where the next one goes.
struct Scan {
    latest: Option<(BootState, u32)>,
    next_free_in_latest_page: Option<u32>,
}

fn scan<F: NorFlash>(flash: &mut F) -> Result<Scan, ErrorCode> {
    let mut latest: Option<(BootState, u32)> = None;
    for page in 0..BOOT_STATE_PAGES {
        for slot in 0..SLOTS_PER_PAGE {
            let mut buf = [0u8; SLOT_LEN as usize];
            flash.read(slot_addr(page, slot), &mut buf)?;
            if let Ok(state) = BootState::read_bytes(&buf) {
                let newer = match latest {
                    Some((l, _)) => state.seq > l.seq,
                    None => true,
                };
                if newer {
                    latest = Some((state, page));
                }
            }
        }
    }
    let page = latest.map_or(0, |(_, p)| p);
    let mut next = None;
    // The first erased slot after the latest record's page content (append-only: slots are
    // used in order, a torn slot is skipped because it is not erased).
    for slot in (0..SLOTS_PER_PAGE).rev() {
        let mut buf = [0u8; SLOT_LEN as usize];
        flash.read(slot_addr(page, slot), &mut buf)?;
        if buf.iter().all(|b| *b == 0xFF) {
            next = Some(slot);
        } else {
            break;
        }
    }
    Ok(Scan {
        latest,
        next_free_in_latest_page: next,
    })
}

/// Reads the current boot state (the default on a fresh device).
pub fn read<F: NorFlash>(flash: &mut F) -> Result<BootState, ErrorCode> {
    Ok(scan(flash)?
        .latest
        .map_or_else(BootState::default, |(s, _)| s))
}

/// Appends `state` as the new snapshot (its `seq` is set to the next number) and returns it.
pub fn write<F: NorFlash>(flash: &mut F, mut state: BootState) -> Result<BootState, ErrorCode> {
    let found = scan(flash)?;
    state.seq = found.latest.map_or(1, |(s, _)| s.seq.wrapping_add(1));
    let page = found.latest.map_or(0, |(_, p)| p);
    let addr = match found.next_free_in_latest_page {
        Some(slot) => slot_addr(page, slot),
        None => {
            let other = (page + 1) % BOOT_STATE_PAGES;
            flash.erase_page(slot_addr(other, 0))?;
            slot_addr(other, 0)
        }
    };
    flash.program(addr, &codec::to_array::<_, { SLOT_LEN as usize }>(&state))?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::RamFlash;
    use crate::layout::FLASH_SIZE;

    #[test]
    fn fresh_device_reads_default_and_snapshots_round_trip() {
        let mut f = RamFlash::erased(FLASH_SIZE as usize);
        assert_eq!(read(&mut f).unwrap(), BootState::default());
        let s = BootState {
            phase: Phase::Trial,
            floor: 4,
            new_version: 5,
            ..BootState::default()
        };
        let written = write(&mut f, s).unwrap();
        assert_eq!(written.seq, 1);
        assert_eq!(read(&mut f).unwrap(), written);
    }

    #[test]
    fn survives_many_writes_across_page_switches_and_torn_slots() {
        let mut f = RamFlash::erased(FLASH_SIZE as usize);
        for i in 0..300u32 {
            let s = BootState {
                floor: i,
                ..BootState::default()
            };
            write(&mut f, s).unwrap();
            assert_eq!(read(&mut f).unwrap().floor, i);
        }
        // Tear the next slot: half programmed. The previous snapshot still wins, and the
        // next write goes after the torn slot.
        let before = read(&mut f).unwrap();
        let found = scan(&mut f).unwrap();
        let page = found.latest.unwrap().1;
        let slot = found.next_free_in_latest_page.unwrap();
        f.program(slot_addr(page, slot), &[0x46, 0x47, 0x42])
            .unwrap();
        assert_eq!(read(&mut f).unwrap(), before);
        let after = write(
            &mut f,
            BootState {
                floor: 999,
                ..before
            },
        )
        .unwrap();
        assert_eq!(read(&mut f).unwrap(), after);
    }

    #[test]
    fn fixed_vector() {
        let s = BootState {
            seq: 7,
            phase: Phase::Copy,
            attempts: 1,
            outcome: Outcome::InProgress,
            floor: 2,
            new_version: 3,
            old_version: 2,
            old_pages: 4,
            new_pages: 5,
            last_error: 0,
        };
        assert_eq!(
            extern_hex(&s.get_encoding().unwrap()),
            include_str!("../../vectors/boot_state_slot.hex").trim()
        );
    }

    fn extern_hex(b: &[u8]) -> std::string::String {
        extern crate std;
        hex::encode(b)
    }
}
