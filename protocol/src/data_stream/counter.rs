//! Record counters that survive resets without wearing the flash out.
//!
//! The device reserves counters in blocks of [`RESERVE_BLOCK`]: before it uses a counter at or
//! above the last reservation it appends an 8-byte entry `epoch u32le | mark u32le` ("every
//! counter of `epoch` below `mark` may have been used") to a journal of two flash pages. After a
//! reset it continues at the highest mark, skipping at most `RESERVE_BLOCK - 1` unused values.
//! Entries are only appended (NOR programs erased cells); when a page is full the *other* page
//! is erased and the next entry goes there, so the highest entry always survives a torn erase.
//! Wear: one 8-byte write per 64 records and one erase per `JOURNAL_ENTRIES × 64` records.

use crate::codec::{self, Codec, Reader, Writer};
use crate::flash::NorFlash;
use crate::layout::FLASH_PAGE_SIZE;
use crate::ErrorCode;

/// Counters reserved per journal write.
pub const RESERVE_BLOCK: u32 = 64;
/// Entries per journal page.
pub const JOURNAL_ENTRIES: u32 = FLASH_PAGE_SIZE / ENTRY_LEN;
const ENTRY_LEN: u32 = 8;

/// Where the journal stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterState {
    /// Current epoch.
    pub epoch: u32,
    /// First counter that was certainly never used in `epoch`.
    pub mark: u32,
}

/// One journal entry: `epoch u32le | mark u32le`.
impl Codec<'_> for CounterState {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u32(self.epoch)?;
        w.u32(self.mark)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            epoch: r.u32()?,
            mark: r.u32()?,
        })
    }
}

/// The two-page journal at `base` (two pages, page aligned).
pub struct CounterJournal {
    base: u32,
    /// Page (0/1) and slot of the next free entry.
    page: u32,
    slot: u32,
    state: CounterState,
}

impl CounterJournal {
    /// Reads the journal at `base`: the highest entry of both pages wins; blank flash is epoch 0,
    /// mark 0.
    pub fn load<F: NorFlash>(flash: &mut F, base: u32) -> Result<Self, ErrorCode> {
        let mut best: Option<(CounterState, u32, u32)> = None;
        for page in 0..2 {
            for slot in 0..JOURNAL_ENTRIES {
                let mut raw = [0u8; ENTRY_LEN as usize];
                flash.read(base + page * FLASH_PAGE_SIZE + slot * ENTRY_LEN, &mut raw)?;
                if raw == [0xFF; ENTRY_LEN as usize] {
                    break;
                }
                let state = CounterState::read_bytes(&raw)?;
                if best.is_none_or(|(b, _, _)| (state.epoch, state.mark) > (b.epoch, b.mark)) {
                    best = Some((state, page, slot + 1));
                }
            }
        }
        let (state, page, slot) = best.unwrap_or((CounterState::default(), 0, 0));
        Ok(Self {
            base,
            page,
            slot,
            state,
        })
    }

    /// The state read or last written.
    pub fn state(&self) -> CounterState {
        self.state
    }

    /// Persists `epoch`/`mark`, which must be above the current state.
    pub fn reserve<F: NorFlash>(
        &mut self,
        flash: &mut F,
        epoch: u32,
        mark: u32,
    ) -> Result<(), ErrorCode> {
        if (epoch, mark) <= (self.state.epoch, self.state.mark) {
            return Err(ErrorCode::DataCounterExhausted);
        }
        if self.slot == JOURNAL_ENTRIES {
            self.page ^= 1;
            self.slot = 0;
            flash.erase_page(self.base + self.page * FLASH_PAGE_SIZE)?;
        }
        let raw: [u8; ENTRY_LEN as usize] = codec::to_array(&CounterState { epoch, mark });
        let at = self.base + self.page * FLASH_PAGE_SIZE + self.slot * ENTRY_LEN;
        flash.program(at, &raw)?;
        self.slot += 1;
        self.state = CounterState { epoch, mark };
        Ok(())
    }
}
