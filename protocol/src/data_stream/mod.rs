//! Data streams: telemetry records the device seals on its own, with no round trip.
//!
//! Two header formats share one key schedule, nonce and replay window: v2 ([`compact`], 6 bytes,
//! what devices send) and v1 (below, 11–19 bytes, still accepted from devices that have not been
//! updated).
//!
//! ```text
//! record  := header ciphertext tag[16]
//! header  := format:u8 (0x01 = device→cloud, v1)  device_id[8]  epoch:varint  counter:varint
//! plain   := kind:u8 body            (kind 1 telemetry, 2 rotation: body = new epoch u32le)
//! key     := HKDF-SHA256(salt "flashgate-data-v1", ikm device_key,
//!                        info "flashgate-data-up-v1" ‖ epoch u32le)      (per direction, per epoch)
//! nonce   := 0u32 ‖ counter as u64le     (the key changes with the epoch, so the counter is unique)
//! aad     := header
//! ```
//! `device_id` is the first 8 bytes of the serial; `varint` is unsigned LEB128 of a u32, minimal
//! (a longer encoding of the same value is refused, so a header has exactly one form).
//! A record is self-contained: the receiver needs the device key, nothing from the device.
//!
//! Replay protection on the receiver: [`ReplayWindow`] per device and epoch. Counter
//! persistence on the device without flash wear: [`CounterJournal`].

pub mod compact;
mod counter;
pub mod down;
mod replay;

pub use compact::{
    handle, reconstruct_epoch, CompactHeader, COMPACT_HEADER_LEN, EPOCH_LOOKAHEAD, HANDLE_LEN,
    MAX_COMPACT_COUNTER,
};
pub use counter::{CounterJournal, CounterState, JOURNAL_ENTRIES, RESERVE_BLOCK};
pub use down::{
    open_down, seal_down, DownHeader, DownKind, DownWindow, OpenedDown, DOWN_HEADER_LEN,
    FORMAT_DOWN_V1, MAX_DOWN_BODY, MAX_DOWN_LEN,
};
pub use replay::{ReplayWindow, WINDOW};

use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::codec::{Codec, Reader, Writer};
use crate::{ErrorCode, Serial};

/// Header format byte of a device→cloud record, version 1.
pub const FORMAT_UP_V1: u8 = 0x01;
/// Bytes of the serial that name the device in a header.
pub const DEVICE_ID_LEN: usize = 8;
/// Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Longest header: format, device id, two 5-byte varints.
pub const MAX_HEADER_LEN: usize = 1 + DEVICE_ID_LEN + 5 + 5;
/// Largest record body (kind byte excluded); a record fits one UART frame and one datagram.
pub const MAX_BODY_LEN: usize = 1024;
/// Largest record on any wire.
pub const MAX_RECORD_LEN: usize = MAX_HEADER_LEN + 1 + MAX_BODY_LEN + TAG_LEN;
/// Bytes a v2 record adds to its body, every record: header 6 + tag 16.
pub const OVERHEAD: usize = COMPACT_HEADER_LEN + TAG_LEN;
/// Bytes a v1 record adds to its body in the usual case (epoch < 128, counter < 16384):
/// header 12 + kind 1 + tag 16.
pub const V1_TYPICAL_OVERHEAD: usize = 1 + DEVICE_ID_LEN + 1 + 2 + 1 + TAG_LEN;

const KEY_SALT: &[u8] = b"flashgate-data-v1";

/// The short id a record names its device by: the first 8 bytes of the serial.
pub fn device_id(serial: &Serial) -> [u8; DEVICE_ID_LEN] {
    let mut id = [0u8; DEVICE_ID_LEN];
    id.copy_from_slice(&serial[..DEVICE_ID_LEN]);
    id
}

/// Which way a stream flows; each direction has its own keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Device to cloud (telemetry).
    Up,
    /// Cloud to device (down messages: [`down`]).
    Down,
}

impl Direction {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Up => b"flashgate-data-up-v1",
            Self::Down => b"flashgate-data-down-v1",
        }
    }
}

/// The stream key of one direction and epoch.
pub fn epoch_key(device_key: &[u8; 32], direction: Direction, epoch: u32) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(KEY_SALT), device_key);
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand_multi_info(&[direction.label(), &epoch.to_le_bytes()], key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

/// What a record's plaintext is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// Telemetry: the body is the application's (the demo OS sends UTF-8 text).
    Telemetry = 1,
    /// The device moves to a new epoch: body = the new epoch, u32le. Sealed under the old one.
    Rotation = 2,
}

impl RecordKind {
    /// Decodes the kind byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Telemetry),
            2 => Some(Self::Rotation),
            _ => None,
        }
    }
}

/// The clear header of a record (authenticated as AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    /// First 8 bytes of the device serial.
    pub device_id: [u8; DEVICE_ID_LEN],
    /// Key epoch.
    pub epoch: u32,
    /// Per-epoch record counter, strictly increasing on the device.
    pub counter: u32,
}

fn put_varint(w: &mut Writer<'_>, mut v: u32) -> Result<(), ErrorCode> {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            return w.u8(byte);
        }
        w.u8(byte | 0x80)?;
    }
}

fn read_varint(r: &mut Reader<'_>) -> Result<u32, ErrorCode> {
    let mut v: u64 = 0;
    for i in 0..5 {
        let byte = r.u8().map_err(|_| ErrorCode::DataTruncated)?;
        v |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // Minimal form only: a trailing zero group (other than a lone 0) is a second encoding.
            if (i > 0 && byte == 0) || v > u64::from(u32::MAX) {
                return Err(ErrorCode::DataMalformed);
            }
            return Ok(v as u32);
        }
    }
    Err(ErrorCode::DataMalformed)
}

impl RecordHeader {
    /// Decodes the header at the start of `record`; returns it and its length.
    pub fn decode(record: &[u8]) -> Result<(Self, usize), ErrorCode> {
        let mut r = Reader::new(record);
        let header = Self::read(&mut r)?;
        Ok((header, record.len() - r.remaining()))
    }
}

/// `format | device_id | epoch varint | counter varint`. A short header is
/// [`ErrorCode::DataTruncated`], any other departure from the format
/// [`ErrorCode::DataMalformed`] (the codes the receiver counts refusals by).
impl Codec<'_> for RecordHeader {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u8(FORMAT_UP_V1)?;
        w.put(&self.device_id)?;
        put_varint(w, self.epoch)?;
        put_varint(w, self.counter)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        if r.u8().map_err(|_| ErrorCode::DataTruncated)? != FORMAT_UP_V1 {
            return Err(ErrorCode::DataMalformed);
        }
        let device_id = r.array().map_err(|_| ErrorCode::DataTruncated)?;
        Ok(Self {
            device_id,
            epoch: read_varint(r)?,
            counter: read_varint(r)?,
        })
    }
}

pub(crate) fn nonce(counter: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&u64::from(counter).to_le_bytes());
    Nonce::from(n)
}

/// How a record names its device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceRef {
    /// v1: the serial's first 8 bytes ([`device_id`]).
    Id([u8; DEVICE_ID_LEN]),
    /// v2: the serial's [`handle`].
    Handle([u8; HANDLE_LEN]),
}

impl DeviceRef {
    /// Whether `serial` has this id or handle.
    pub fn names(&self, serial: &Serial) -> bool {
        match self {
            Self::Id(id) => *id == device_id(serial),
            Self::Handle(h) => *h == handle(serial),
        }
    }
}

/// The clear header of a record in either format, as read from the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Header {
    /// Format 1: full epoch and counter, 8-byte device id.
    V1(RecordHeader),
    /// Format 2: the epoch's low bits, a 16-bit counter, a 3-byte handle, the kind.
    V2(CompactHeader),
}

impl Header {
    /// Decodes the header at the start of `record` (the first byte says which format); returns it
    /// and its length.
    pub fn decode(record: &[u8]) -> Result<(Self, usize), ErrorCode> {
        let first = *record.first().ok_or(ErrorCode::DataTruncated)?;
        if first == FORMAT_UP_V1 {
            let (h, len) = RecordHeader::decode(record)?;
            return Ok((Self::V1(h), len));
        }
        let mut r = Reader::new(record);
        let h = CompactHeader::read(&mut r)?;
        Ok((Self::V2(h), record.len() - r.remaining()))
    }

    /// The device it names.
    pub fn device(&self) -> DeviceRef {
        match self {
            Self::V1(h) => DeviceRef::Id(h.device_id),
            Self::V2(h) => DeviceRef::Handle(h.handle),
        }
    }

    /// Its counter within its epoch.
    pub fn counter(&self) -> u32 {
        match self {
            Self::V1(h) => h.counter,
            Self::V2(h) => u32::from(h.counter),
        }
    }

    /// Its full epoch, for a receiver whose oldest open epoch for the device is `oldest`
    /// (v2 carries only the low bits: [`reconstruct_epoch`]).
    pub fn epoch(&self, oldest: Option<u32>) -> Option<u32> {
        match self {
            Self::V1(h) => Some(h.epoch),
            Self::V2(h) => reconstruct_epoch(h.epoch_low, oldest),
        }
    }

    /// Whether the epoch needs the receiver's state to be known (v2).
    pub fn needs_current_epoch(&self) -> bool {
        matches!(self, Self::V2(_))
    }
}

/// Seals one v1 record into `out`; returns its length.
pub fn seal(
    key: &[u8; 32],
    header: &RecordHeader,
    kind: RecordKind,
    body: &[u8],
    out: &mut [u8],
) -> Result<usize, ErrorCode> {
    if body.len() > MAX_BODY_LEN {
        return Err(ErrorCode::BadLength);
    }
    let h = header.encode_into(out)?;
    let plain = out
        .get_mut(h..h + 1 + body.len())
        .ok_or(ErrorCode::BadLength)?;
    plain[0] = kind as u8;
    plain[1..].copy_from_slice(body);
    seal_in_place(key, header.counter, h, 1 + body.len(), out)
}

/// Seals one v2 record (the kind is in the header) into `out`; returns its length.
pub fn seal_compact(
    key: &[u8; 32],
    header: &CompactHeader,
    body: &[u8],
    out: &mut [u8],
) -> Result<usize, ErrorCode> {
    if body.len() > MAX_BODY_LEN {
        return Err(ErrorCode::BadLength);
    }
    let h = header.encode_into(out)?;
    out.get_mut(h..h + body.len())
        .ok_or(ErrorCode::BadLength)?
        .copy_from_slice(body);
    seal_in_place(key, u32::from(header.counter), h, body.len(), out)
}

/// Encrypts the `plain_len` bytes after the `h`-byte header of `out` and appends the tag.
fn seal_in_place(
    key: &[u8; 32],
    counter: u32,
    h: usize,
    plain_len: usize,
    out: &mut [u8],
) -> Result<usize, ErrorCode> {
    let total = h + plain_len + TAG_LEN;
    if out.len() < total {
        return Err(ErrorCode::BadLength);
    }
    let (aad, rest) = out.split_at_mut(h);
    let (plain, tail) = rest.split_at_mut(plain_len);
    let tag = ChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(&nonce(counter), aad, plain)
        .map_err(|_| ErrorCode::BadLength)?;
    tail[..TAG_LEN].copy_from_slice(&tag);
    Ok(total)
}

/// An opened record: header, kind and where the body is in the caller's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The authenticated header.
    pub header: Header,
    /// What it carries.
    pub kind: RecordKind,
    /// Range of the body in the buffer passed to [`open_in_place`].
    pub body: core::ops::Range<usize>,
}

/// Verifies and decrypts `record` (either format) in place under `key` (the key of the
/// record's epoch; find it with [`Header::decode`] first). A record too short for a tag is
/// [`ErrorCode::DataTruncated`]; any other failure to authenticate is [`ErrorCode::DataForged`].
pub fn open_in_place(key: &[u8; 32], record: &mut [u8]) -> Result<Opened, ErrorCode> {
    let (header, h) = Header::decode(record)?;
    // v1 encrypts the kind byte; v2 carries the kind in its header.
    let kind_len = usize::from(matches!(header, Header::V1(_)));
    if record.len() < h + kind_len + TAG_LEN {
        return Err(ErrorCode::DataTruncated);
    }
    if record.len() > h + kind_len + MAX_BODY_LEN + TAG_LEN {
        return Err(ErrorCode::DataMalformed);
    }
    let tag_at = record.len() - TAG_LEN;
    let (aad, rest) = record.split_at_mut(h);
    let (plain, tag) = rest.split_at_mut(tag_at - h);
    ChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(&nonce(header.counter()), aad, plain, Tag::from_slice(tag))
        .map_err(|_| ErrorCode::DataForged)?;
    let kind = match header {
        Header::V1(_) => RecordKind::from_u8(plain[0]).ok_or(ErrorCode::DataMalformed)?,
        Header::V2(c) => c.kind,
    };
    if kind == RecordKind::Rotation && plain.len() != kind_len + 4 {
        return Err(ErrorCode::DataMalformed);
    }
    Ok(Opened {
        header,
        kind,
        body: h + kind_len..tag_at,
    })
}

/// The device's sending side (format v2): serial, current epoch key and the next counter.
///
/// The caller persists counters through [`CounterJournal`]: it must call
/// [`RecordSealer::needs_reservation`] before each record and persist what it is told. When an
/// epoch's counters are used up (past [`MAX_COMPACT_COUNTER`]) the reservation due is the next
/// epoch's first block, and [`RecordSealer::reserved`] moves the sealer into that epoch.
pub struct RecordSealer {
    device_key: Zeroizing<[u8; 32]>,
    key: Zeroizing<[u8; 32]>,
    serial: Serial,
    epoch: u32,
    next: u32,
    reserved_until: u32,
}

impl RecordSealer {
    /// Starts sending in `epoch` at `next` (a value from the journal), with counters below
    /// `reserved_until` already persisted as possibly used.
    pub fn new(
        device_key: &[u8; 32],
        serial: &Serial,
        epoch: u32,
        next: u32,
        reserved_until: u32,
    ) -> Self {
        Self {
            device_key: Zeroizing::new(*device_key),
            key: epoch_key(device_key, Direction::Up, epoch),
            serial: *serial,
            epoch,
            next,
            reserved_until,
        }
    }

    /// The current epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The counter of the next record.
    pub fn next_counter(&self) -> u32 {
        self.next
    }

    /// Whether the next record needs a new reservation in the journal first; returns the
    /// journal entry to persist (then call [`RecordSealer::reserved`] with it): a further block
    /// of this epoch, or the first block of the next epoch once this one is used up.
    pub fn needs_reservation(&self) -> Option<CounterState> {
        if self.next < self.reserved_until {
            return None;
        }
        if self.next > MAX_COMPACT_COUNTER {
            return Some(CounterState {
                epoch: self.epoch.checked_add(1)?,
                mark: RESERVE_BLOCK,
            });
        }
        Some(CounterState {
            epoch: self.epoch,
            mark: (self.next + RESERVE_BLOCK).min(MAX_COMPACT_COUNTER + 1),
        })
    }

    /// The journal now holds `state`; a newer epoch than the current one is entered at counter 0.
    pub fn reserved(&mut self, state: CounterState) {
        if state.epoch != self.epoch {
            self.enter_epoch(state.epoch);
        }
        self.reserved_until = state.mark;
    }

    fn enter_epoch(&mut self, epoch: u32) {
        self.epoch = epoch;
        self.key = epoch_key(&self.device_key, Direction::Up, epoch);
        self.next = 0;
        self.reserved_until = 0;
    }

    /// Seals the next record. Fails (without using a counter) if a reservation is due
    /// ([`ErrorCode::DataCounterExhausted`]).
    pub fn seal(
        &mut self,
        kind: RecordKind,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<usize, ErrorCode> {
        if self.next >= self.reserved_until {
            return Err(ErrorCode::DataCounterExhausted);
        }
        let header = CompactHeader::new(&self.serial, self.epoch, self.next, kind)?;
        let n = seal_compact(&self.key, &header, body, out)?;
        self.next += 1;
        Ok(n)
    }

    /// Seals the rotation record (under the current epoch) announcing `epoch + 1`, then switches
    /// to the new epoch with counter 0 and nothing reserved. The caller persists the new epoch's
    /// first reservation before the next record (the journal orders epochs, so the old
    /// epoch's counters can never come back).
    pub fn rotate(&mut self, out: &mut [u8]) -> Result<usize, ErrorCode> {
        let new_epoch = self
            .epoch
            .checked_add(1)
            .ok_or(ErrorCode::DataCounterExhausted)?;
        let n = self.seal(RecordKind::Rotation, &new_epoch.to_le_bytes(), out)?;
        self.enter_epoch(new_epoch);
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
