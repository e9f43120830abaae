//! What the data stream stores.
//!
//! | key | value |
//! | --- | --- |
//! | `data/windows/{serial}` | [`WindowRecord`]: the open epochs' replay windows |
//! | `data/records/{serial}/{received_ms:013}-{epoch:010}-{counter:010}` | [`DataRecordEntry`] |

use flashgate_proto::v1;
use flashgate_protocol::data_stream::ReplayWindow;
use flashgate_protocol::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::ids::{ProductId, Serial};
use crate::repository::{hex, JsonRecord, KeyPart};

/// One epoch's replay window, as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EpochWindow {
    /// The epoch whose stream key the window's records were sealed with.
    pub epoch: u32,
    /// Highest counter accepted in this epoch, if any.
    pub highest: Option<u32>,
    /// Bit `i` set: counter `highest - i` was accepted.
    pub bitmap: u64,
}

impl EpochWindow {
    /// The window in the protocol crate's form, to check a counter against.
    pub fn window(&self) -> ReplayWindow {
        ReplayWindow {
            highest: self.highest,
            bitmap: self.bitmap,
        }
    }

    /// Stores `w` after a record was accepted.
    pub fn set(&mut self, w: ReplayWindow) {
        self.highest = w.highest;
        self.bitmap = w.bitmap;
    }
}

/// `data/windows/{serial}`: per device, the current epoch's replay window and the previous
/// epoch's (records of the old epoch still in flight when the device rotated are accepted).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowRecord {
    /// The device's product.
    pub product_id: ProductId,
    /// The newest epoch seen.
    pub current: EpochWindow,
    /// The epoch before it, kept open for records still in flight.
    pub previous: Option<EpochWindow>,
}

impl JsonRecord for WindowRecord {
    const PREFIX: &'static str = "data/windows/";
    type Key = Serial;
}

impl WindowRecord {
    /// A device's first window, opened at `epoch`.
    pub fn new(product_id: ProductId, epoch: u32) -> Self {
        Self {
            product_id,
            current: EpochWindow {
                epoch,
                ..EpochWindow::default()
            },
            previous: None,
        }
    }

    /// Moves to `epoch` (the device rotated its stream key): the current window becomes the
    /// previous one and the older one is dropped.
    pub fn open_epoch(&mut self, epoch: u32) {
        let old = std::mem::replace(
            &mut self.current,
            EpochWindow {
                epoch,
                ..EpochWindow::default()
            },
        );
        self.previous = Some(old);
    }

    /// The window of `epoch`; a valid record of `current + 1` opens that epoch (its rotation
    /// record may have been lost on UDP). Older epochs are stale.
    pub fn slot(&mut self, epoch: u32) -> Result<&mut EpochWindow, ErrorCode> {
        if epoch == self.current.epoch.wrapping_add(1) && epoch != 0 {
            self.open_epoch(epoch);
        }
        if self.current.epoch == epoch {
            return Ok(&mut self.current);
        }
        match &mut self.previous {
            Some(p) if p.epoch == epoch => Ok(p),
            _ => Err(ErrorCode::DataStaleEpoch),
        }
    }
}

/// Where an accepted record is kept: per device, in arrival order.
pub struct EntryKey {
    /// The device that sent it.
    pub serial: Serial,
    /// When the coordinator received it (Unix milliseconds): records list in arrival order.
    pub received_ms: i64,
    /// The record's epoch.
    pub epoch: u32,
    /// The record's counter within its epoch.
    pub counter: u32,
}

impl KeyPart for EntryKey {
    fn write_key(&self, out: &mut String) {
        self.serial.write_key(out);
        out.push_str(&format!(
            "/{:013}-{:010}-{:010}",
            self.received_ms, self.epoch, self.counter
        ));
    }
}

/// `data/records/…`: one accepted record, opened.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataRecordEntry {
    /// The sending device's product.
    pub product_id: ProductId,
    /// The stream-key epoch it was sealed under.
    pub epoch: u32,
    /// Its counter within that epoch (unique: the replay window refused repeats).
    pub counter: u32,
    /// The record's kind (1 telemetry, 2 rotation).
    pub kind: u8,
    /// The opened body.
    #[serde(rename = "body_hex", with = "hex")]
    pub body: Vec<u8>,
    /// When the coordinator received it (Unix milliseconds).
    pub received_at_ms: i64,
    /// Who forwarded it, as the relay said (free text).
    pub source: String,
    /// Bytes of the sealed record on the wire.
    pub wire_len: u32,
}

impl JsonRecord for DataRecordEntry {
    const PREFIX: &'static str = "data/records/";
    type Key = EntryKey;
}

impl DataRecordEntry {
    /// The record as the API shows it, for the device `serial`.
    pub fn to_proto(&self, serial: Serial) -> v1::DataRecord {
        v1::DataRecord {
            serial: serial.0.to_vec(),
            product_id: self.product_id.0,
            epoch: self.epoch,
            counter: self.counter,
            kind: u32::from(self.kind),
            body: self.body.clone(),
            received_at_ms: self.received_at_ms,
            source: self.source.clone(),
            wire_len: self.wire_len,
        }
    }
}
