//! What the data stream stores.
//!
//! | key | value |
//! | --- | --- |
//! | `data/windows/{serial}` | [`WindowRecord`]: the open epochs' replay windows |
//! | `data/records/{serial}/{received_ms:013}-{epoch:010}-{counter:010}` | [`DataRecordEntry`] |

use flashgate_proto::v1;
use flashgate_protocol::data_stream::{ReplayWindow, EPOCH_LOOKAHEAD, WINDOW};
use flashgate_protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// [`record_digest`]s of the records the window holds, the one of counter `c` at
    /// `(c mod 64) × 8` (empty: none kept, as in windows stored before digests were).
    #[serde(with = "hex", default)]
    pub digests: Vec<u8>,
    /// The counter of the rotation record that closed this epoch: the device seals nothing
    /// after it in this epoch.
    #[serde(default)]
    pub closed_at: Option<u32>,
}

/// Bytes of a record digest.
pub const DIGEST_LEN: usize = 8;

/// What tells two records of one counter apart: the first bytes of SHA-256 over the record
/// as received (a replay is the same bytes).
pub fn record_digest(raw: &[u8]) -> [u8; DIGEST_LEN] {
    let digest = Sha256::digest(raw);
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&digest[..DIGEST_LEN]);
    out
}

impl EpochWindow {
    /// The digest kept for the accepted `counter`, if the window holds it. Within the window
    /// counters differ mod 64, so its slot was written by it alone; zeros are a slot never
    /// written (a counter accepted before digests were kept).
    pub fn digest_of(&self, counter: u32) -> Option<[u8; DIGEST_LEN]> {
        if self.window().check(counter) != Err(ErrorCode::DataReplay) {
            return None;
        }
        let at = Self::digest_at(counter);
        let digest: [u8; DIGEST_LEN] = self.digests.get(at..at + DIGEST_LEN)?.try_into().ok()?;
        (digest != [0; DIGEST_LEN]).then_some(digest)
    }

    /// Keeps the digest of the record just accepted with `counter`.
    pub fn keep_digest(&mut self, counter: u32, digest: [u8; DIGEST_LEN]) {
        self.digests.resize(WINDOW as usize * DIGEST_LEN, 0);
        let at = Self::digest_at(counter);
        self.digests[at..at + DIGEST_LEN].copy_from_slice(&digest);
    }

    fn digest_at(counter: u32) -> usize {
        (counter % WINDOW) as usize * DIGEST_LEN
    }

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

    /// The window of `epoch`. A valid record of a newer epoch, up to [`EPOCH_LOOKAHEAD`] ahead,
    /// opens it: its rotation record may have been lost on UDP, and a device moves on by itself
    /// when an epoch's 16-bit counters run out, so whole epochs of its records may have been
    /// lost. The epoch it leaves stays open as the previous one; older epochs are stale.
    pub fn slot(&mut self, epoch: u32) -> Result<&mut EpochWindow, ErrorCode> {
        let ahead = epoch.saturating_sub(self.current.epoch);
        if (1..=EPOCH_LOOKAHEAD).contains(&ahead) {
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
