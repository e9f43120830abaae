//! The demo OS's data stream: a [`RecordSealer`] whose counters are reserved in blocks in the
//! flash journal at `DATA_COUNTER_ADDR` before they are used, so no counter is ever sealed twice
//! across resets, and flash sees one 8-byte write per `RESERVE_BLOCK` records.

use flashgate_board::NorFlash;
use flashgate_protocol::data_stream::{CounterJournal, RecordKind, RecordSealer};
use flashgate_protocol::device_record::DeviceRecord;
use flashgate_protocol::layout::DATA_COUNTER_ADDR;
use flashgate_protocol::ErrorCode;

/// Journal + sealer.
pub struct DataStream {
    journal: CounterJournal,
    sealer: RecordSealer,
}

impl DataStream {
    /// Continues at the journal's mark (every counter below it may have been used before the
    /// reset) and reserves the first block at once.
    pub fn open<F: NorFlash>(flash: &mut F, record: &DeviceRecord) -> Result<Self, ErrorCode> {
        let journal = CounterJournal::load(flash, DATA_COUNTER_ADDR)?;
        let state = journal.state();
        let sealer = RecordSealer::new(
            &record.device_key,
            &record.config.serial,
            state.epoch,
            state.mark,
            state.mark,
        );
        let mut this = Self { journal, sealer };
        this.reserve_if_due(flash)?;
        Ok(this)
    }

    fn reserve_if_due<F: NorFlash>(&mut self, flash: &mut F) -> Result<(), ErrorCode> {
        // Past the last counter of an epoch this is the next epoch's first block.
        if let Some(due) = self.sealer.needs_reservation() {
            self.journal.reserve(flash, due.epoch, due.mark)?;
            self.sealer.reserved(due);
        }
        Ok(())
    }

    /// Current epoch.
    pub fn epoch(&self) -> u32 {
        self.sealer.epoch()
    }

    /// Counter of the next record.
    pub fn next_counter(&self) -> u32 {
        self.sealer.next_counter()
    }

    /// Seals a telemetry record; returns its counter and length.
    pub fn seal_telemetry<F: NorFlash>(
        &mut self,
        flash: &mut F,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<(u32, usize), ErrorCode> {
        self.reserve_if_due(flash)?;
        let counter = self.sealer.next_counter();
        let n = self.sealer.seal(RecordKind::Telemetry, body, out)?;
        Ok((counter, n))
    }

    /// Seals the rotation record under the current epoch and moves to the next one, whose first
    /// block is reserved (in the journal, epoch + 1 outranks every mark of the old epoch).
    pub fn rotate<F: NorFlash>(
        &mut self,
        flash: &mut F,
        out: &mut [u8],
    ) -> Result<usize, ErrorCode> {
        self.reserve_if_due(flash)?;
        let n = self.sealer.rotate(out)?;
        self.reserve_if_due(flash)?;
        Ok(n)
    }
}
