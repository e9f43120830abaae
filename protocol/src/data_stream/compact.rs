//! Record format v2: a 6-byte header, so a record adds 22 bytes to its body with a 16-byte tag.
//!
//! ```text
//! header := flags:u8  handle[3]  counter:u16le
//! flags  := 0b10 (bits 7–6: format v2)  kind (bit 5: 0 telemetry, 1 rotation)  epoch mod 32 (bits 4–0)
//! handle := SHA-256("flashgate-data-handle-v1" ‖ serial)[..3]
//! plain  := body                  (the kind is in the flags, authenticated as AAD, not encrypted)
//! ```
//! Key, nonce and AAD are v1's (`super`): the key commits to the full epoch and the nonce to the
//! full counter, so a header the receiver completes wrongly (another device with the same
//! handle, another epoch with the same low bits) fails its tag and is never accepted.
//!
//! - The handle is a function of the serial, so provisioning writes nothing new; two devices
//!   may share one (2^24 values): the receiver tries each one's key, as it does for v1's id prefix.
//! - The counter is the whole per-epoch counter (not a partial one): the replay window sees
//!   exactly what it saw in v1. An epoch holds [`MAX_COMPACT_COUNTER`] + 1 records; the sender
//!   then moves to the next epoch by itself (no rotation record needed: a valid record of a newer
//!   epoch opens it).
//! - The epoch's low bits are completed from the oldest epoch the receiver holds open for the
//!   device `p` (its previous one, or its current one if it has none) into `[p, p + 31]`
//!   ([`reconstruct_epoch`]): the previous epoch, the current one, and newer ones up to
//!   [`EPOCH_LOOKAHEAD`] ahead of the current one (usually `p + 1`; a device whose records were
//!   all lost for whole epochs still gets in).

use sha2::{Digest, Sha256};

use super::RecordKind;
use crate::codec::{Codec, Reader, Writer};
use crate::{ErrorCode, Serial};

/// Bits 7–6 of a v2 flags byte (v1's format byte 0x01 has them clear).
pub const FORMAT_V2_BITS: u8 = 0b1000_0000;
const FORMAT_MASK: u8 = 0b1100_0000;
const ROTATION_BIT: u8 = 0b0010_0000;
/// Low bits of the epoch a v2 header carries.
pub const EPOCH_LOW_MASK: u8 = 0b0001_1111;
/// Bytes of a device handle.
pub const HANDLE_LEN: usize = 3;
/// Length of a v2 header.
pub const COMPACT_HEADER_LEN: usize = 1 + HANDLE_LEN + 2;
/// Highest counter a v2 header can carry: an epoch holds this many records plus one.
pub const MAX_COMPACT_COUNTER: u32 = u16::MAX as u32;
/// How many epochs ahead of the receiver's current one a record may open one.
pub const EPOCH_LOOKAHEAD: u32 = EPOCH_LOW_MASK as u32 - 1;

const HANDLE_LABEL: &[u8] = b"flashgate-data-handle-v1";

/// The handle a v2 record names its device by.
pub fn handle(serial: &Serial) -> [u8; HANDLE_LEN] {
    let mut h = Sha256::new();
    h.update(HANDLE_LABEL);
    h.update(serial);
    let digest = h.finalize();
    let mut out = [0u8; HANDLE_LEN];
    out.copy_from_slice(&digest[..HANDLE_LEN]);
    out
}

/// The full epoch of a v2 header whose low bits are `low`, for a receiver whose oldest open
/// epoch for the device is `oldest` (`None`: it has seen nothing of the device, which starts at
/// epoch 0): the one value with those low bits in `[oldest, oldest + 31]`. Unambiguous because
/// the receiver's open epochs (previous, current) and the ones it would open all lie in that
/// range. `None` past `u32::MAX`.
pub fn reconstruct_epoch(low: u8, oldest: Option<u32>) -> Option<u32> {
    let start = oldest.unwrap_or(0);
    let offset = u32::from(low).wrapping_sub(start) & u32::from(EPOCH_LOW_MASK);
    start.checked_add(offset)
}

/// The clear header of a v2 record (authenticated as AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompactHeader {
    /// [`handle`] of the device serial.
    pub handle: [u8; HANDLE_LEN],
    /// The epoch's low 5 bits.
    pub epoch_low: u8,
    /// Per-epoch record counter.
    pub counter: u16,
    /// What the record carries.
    pub kind: RecordKind,
}

impl CompactHeader {
    /// The header of record `counter` of `epoch` (which must fit: see [`MAX_COMPACT_COUNTER`]).
    pub fn new(
        serial: &Serial,
        epoch: u32,
        counter: u32,
        kind: RecordKind,
    ) -> Result<Self, ErrorCode> {
        Ok(Self {
            handle: handle(serial),
            epoch_low: (epoch & u32::from(EPOCH_LOW_MASK)) as u8,
            counter: u16::try_from(counter).map_err(|_| ErrorCode::DataCounterExhausted)?,
            kind,
        })
    }
}

/// `flags | handle | counter u16le`. A short header is [`ErrorCode::DataTruncated`], another
/// format or a clear bit set wrongly [`ErrorCode::DataMalformed`].
impl Codec<'_> for CompactHeader {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        if self.epoch_low > EPOCH_LOW_MASK {
            return Err(ErrorCode::DataMalformed);
        }
        let kind = match self.kind {
            RecordKind::Telemetry => 0,
            RecordKind::Rotation => ROTATION_BIT,
        };
        w.u8(FORMAT_V2_BITS | kind | self.epoch_low)?;
        w.put(&self.handle)?;
        w.u16(self.counter)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let flags = r.u8().map_err(|_| ErrorCode::DataTruncated)?;
        if flags & FORMAT_MASK != FORMAT_V2_BITS {
            return Err(ErrorCode::DataMalformed);
        }
        let kind = if flags & ROTATION_BIT == 0 {
            RecordKind::Telemetry
        } else {
            RecordKind::Rotation
        };
        Ok(Self {
            handle: r.array().map_err(|_| ErrorCode::DataTruncated)?,
            epoch_low: flags & EPOCH_LOW_MASK,
            counter: r.u16().map_err(|_| ErrorCode::DataTruncated)?,
            kind,
        })
    }
}
