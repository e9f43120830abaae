//! The down-link: sealed messages from the coordinator to one device (configuration, a
//! command, "check for update"), replay-protected in their own direction.
//!
//! ```text
//! message := header ‖ ChaCha20-Poly1305(key, nonce, aad = header, kind u8 ‖ body) ‖ tag[16]
//! header  := format u8 (0x03) ‖ epoch u32le ‖ counter u32le                     9 bytes
//! key     := epoch_key(device_key, Direction::Down, epoch)   ("flashgate-data-down-v1" ‖ epoch)
//! nonce   := 0u32 ‖ counter u64le
//! kind    := 1 text (body: UTF-8, shown by the OS), 2 record interval (body: seconds u32le),
//!            3 check for update (body empty), 4 status request (body: the coordinator's
//!            receipt challenge[32]; the OS answers a status receipt on the same link)
//! ```
//! The down keys are not the up keys (another HKDF label), so a device record can never be
//! replayed to the device as a message, nor a message to the ingest as a record.
//!
//! The coordinator gives each device's messages strictly increasing (epoch, counter) pairs, from
//! a counter kept in its store, and delivers them in that order over one TCP connection; so the
//! device's window is the last pair it accepted ([`DownWindow`]): anything at or below it is a
//! replay (or a reordered-old message) and refused. The window is persisted before the message
//! is acted on ([`DownWindow::state`], a [`super::CounterJournal`] entry `epoch | counter + 1`),
//! so a replay after a reboot is refused too.

use core::ops::Range;

use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit, Tag};

use super::{epoch_key, nonce, CounterState, Direction, TAG_LEN};
use crate::codec::{Codec, Reader, Writer};
use crate::ErrorCode;

/// Format byte of a down message (v1 records are 0x01, v2 records 0b10xx_xxxx).
pub const FORMAT_DOWN_V1: u8 = 0x03;
/// Bytes of the clear header.
pub const DOWN_HEADER_LEN: usize = 1 + 4 + 4;
/// Largest body of a down message.
pub const MAX_DOWN_BODY: usize = 256;
/// Largest sealed down message.
pub const MAX_DOWN_LEN: usize = DOWN_HEADER_LEN + 1 + MAX_DOWN_BODY + TAG_LEN;

/// A sealed down message as received, copied out of its frame (the OS acts on it after the
/// frame's buffer is reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedDown {
    bytes: [u8; MAX_DOWN_LEN],
    len: usize,
}

impl SealedDown {
    /// Copies `message`; longer than any down message is [`ErrorCode::DataMalformed`].
    pub fn copy_of(message: &[u8]) -> Result<Self, ErrorCode> {
        let mut bytes = [0u8; MAX_DOWN_LEN];
        bytes
            .get_mut(..message.len())
            .ok_or(ErrorCode::DataMalformed)?
            .copy_from_slice(message);
        Ok(Self {
            bytes,
            len: message.len(),
        })
    }

    /// The message, to open in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }
}

/// What a down message asks of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DownKind {
    /// A line of text for the device to show (the demo OS writes it on its UART).
    Text = 1,
    /// Send a telemetry record every `seconds u32le` (configuration).
    RecordInterval = 2,
    /// Check for an update now (the OS hands over to the bootloader's update service).
    CheckUpdate = 3,
    /// Answer a status receipt (`update::receipt`) for this challenge[32] of the coordinator:
    /// the running OS's receipt of a network update.
    StatusRequest = 4,
}

impl DownKind {
    /// Decodes the kind byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Text),
            2 => Some(Self::RecordInterval),
            3 => Some(Self::CheckUpdate),
            4 => Some(Self::StatusRequest),
            _ => None,
        }
    }

    /// Whether `body` is what this kind carries.
    pub fn body_fits(self, body: &[u8]) -> bool {
        match self {
            Self::Text => body.len() <= MAX_DOWN_BODY,
            Self::RecordInterval => body.len() == 4,
            Self::CheckUpdate => body.is_empty(),
            Self::StatusRequest => body.len() == crate::update::receipt::CHALLENGE_LEN,
        }
    }

    /// A short name (the ack's text and the CLI's).
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::RecordInterval => "interval",
            Self::CheckUpdate => "check-update",
            Self::StatusRequest => "status",
        }
    }
}

/// The clear header of a down message (authenticated as AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DownHeader {
    /// Key epoch of the down direction.
    pub epoch: u32,
    /// Per-epoch message counter, strictly increasing for the device.
    pub counter: u32,
}

impl Codec<'_> for DownHeader {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u8(FORMAT_DOWN_V1)?;
        w.u32(self.epoch)?;
        w.u32(self.counter)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        if r.u8().map_err(|_| ErrorCode::DataTruncated)? != FORMAT_DOWN_V1 {
            return Err(ErrorCode::DataMalformed);
        }
        Ok(Self {
            epoch: r.u32().map_err(|_| ErrorCode::DataTruncated)?,
            counter: r.u32().map_err(|_| ErrorCode::DataTruncated)?,
        })
    }
}

impl DownHeader {
    /// Decodes the header at the start of `message`.
    pub fn decode(message: &[u8]) -> Result<Self, ErrorCode> {
        Self::read(&mut Reader::new(message))
    }
}

/// Seals one down message into `out` under `device_key`; returns its length.
pub fn seal_down(
    device_key: &[u8; 32],
    header: &DownHeader,
    kind: DownKind,
    body: &[u8],
    out: &mut [u8],
) -> Result<usize, ErrorCode> {
    if !kind.body_fits(body) {
        return Err(ErrorCode::BadLength);
    }
    let total = DOWN_HEADER_LEN + 1 + body.len() + TAG_LEN;
    let out = out.get_mut(..total).ok_or(ErrorCode::BadLength)?;
    header.encode_into(out)?;
    let (aad, rest) = out.split_at_mut(DOWN_HEADER_LEN);
    let (plain, tag_out) = rest.split_at_mut(1 + body.len());
    plain[0] = kind as u8;
    plain[1..].copy_from_slice(body);
    let key = epoch_key(device_key, Direction::Down, header.epoch);
    let tag = ChaCha20Poly1305::new(key.as_ref().into())
        .encrypt_in_place_detached(&nonce(header.counter), aad, plain)
        .map_err(|_| ErrorCode::BadLength)?;
    tag_out.copy_from_slice(&tag);
    Ok(total)
}

/// An opened down message: header, kind and where its body is in the caller's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedDown {
    /// The authenticated header.
    pub header: DownHeader,
    /// What it asks.
    pub kind: DownKind,
    /// Range of the body in the buffer passed to [`open_down`].
    pub body: Range<usize>,
}

/// Verifies and decrypts `message` in place under `device_key`. Too short is
/// [`ErrorCode::DataTruncated`]; a failed tag [`ErrorCode::DataForged`]; an unknown kind or a
/// body that does not fit it [`ErrorCode::DataMalformed`]. Says nothing about replays: check the
/// header against the [`DownWindow`].
pub fn open_down(device_key: &[u8; 32], message: &mut [u8]) -> Result<OpenedDown, ErrorCode> {
    let header = DownHeader::decode(message)?;
    if message.len() < DOWN_HEADER_LEN + 1 + TAG_LEN {
        return Err(ErrorCode::DataTruncated);
    }
    if message.len() > MAX_DOWN_LEN {
        return Err(ErrorCode::DataMalformed);
    }
    let tag_at = message.len() - TAG_LEN;
    let (aad, rest) = message.split_at_mut(DOWN_HEADER_LEN);
    let (plain, tag) = rest.split_at_mut(tag_at - DOWN_HEADER_LEN);
    let key = epoch_key(device_key, Direction::Down, header.epoch);
    ChaCha20Poly1305::new(key.as_ref().into())
        .decrypt_in_place_detached(&nonce(header.counter), aad, plain, Tag::from_slice(tag))
        .map_err(|_| ErrorCode::DataForged)?;
    let kind = DownKind::from_u8(plain[0]).ok_or(ErrorCode::DataMalformed)?;
    let body = DOWN_HEADER_LEN + 1..tag_at;
    if !kind.body_fits(&message[body.clone()]) {
        return Err(ErrorCode::DataMalformed);
    }
    Ok(OpenedDown { header, kind, body })
}

/// The device's down window: every (epoch, counter) below `(epoch, next)` is spent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DownWindow {
    /// The newest epoch a message was accepted in.
    pub epoch: u32,
    /// The lowest counter of `epoch` not yet spent.
    pub next: u32,
}

impl DownWindow {
    /// The window as persisted (a [`super::CounterJournal`] entry: `epoch | next`).
    pub fn from_state(state: CounterState) -> Self {
        Self {
            epoch: state.epoch,
            next: state.mark,
        }
    }

    /// Whether a message with `header` may be accepted: an older epoch is
    /// [`ErrorCode::DataStaleEpoch`], a spent counter of this epoch [`ErrorCode::DataReplay`]
    /// (a replay, or an old message delivered after a newer one: both refused).
    pub fn check(&self, header: &DownHeader) -> Result<(), ErrorCode> {
        if header.epoch < self.epoch {
            return Err(ErrorCode::DataStaleEpoch);
        }
        if header.epoch == self.epoch && header.counter < self.next {
            return Err(ErrorCode::DataReplay);
        }
        Ok(())
    }

    /// What to persist before acting on the (checked, authenticated) message `header`; the
    /// window after it. `None`: the counter space of the epoch is used up (refused as
    /// [`ErrorCode::DataCounterExhausted`] by the caller).
    pub fn after(&self, header: &DownHeader) -> Option<CounterState> {
        Some(CounterState {
            epoch: header.epoch,
            mark: header.counter.checked_add(1)?,
        })
    }

    /// Moves the window past `header` (after [`Self::after`]'s state is persisted).
    pub fn accept(&mut self, state: CounterState) {
        *self = Self::from_state(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn sealed(epoch: u32, counter: u32, kind: DownKind, body: &[u8]) -> std::vec::Vec<u8> {
        let mut out = [0u8; MAX_DOWN_LEN];
        let n = seal_down(&KEY, &DownHeader { epoch, counter }, kind, body, &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn a_message_opens_under_its_device_key_only_and_is_laid_out_as_documented() {
        let mut m = sealed(2, 5, DownKind::Text, b"hello");
        assert_eq!(m.len(), DOWN_HEADER_LEN + 1 + 5 + TAG_LEN);
        assert_eq!(&m[..DOWN_HEADER_LEN], &[3, 2, 0, 0, 0, 5, 0, 0, 0]);
        let mut other = m.clone();
        assert_eq!(open_down(&[8; 32], &mut other), Err(ErrorCode::DataForged));
        let opened = open_down(&KEY, &mut m).unwrap();
        assert_eq!(
            opened.header,
            DownHeader {
                epoch: 2,
                counter: 5
            }
        );
        assert_eq!(opened.kind, DownKind::Text);
        assert_eq!(&m[opened.body], b"hello");
    }

    #[test]
    fn flipped_bytes_a_changed_header_and_short_messages_are_refused() {
        let m = sealed(0, 1, DownKind::RecordInterval, &3u32.to_le_bytes());
        for i in 0..m.len() {
            let mut flipped = m.clone();
            flipped[i] ^= 1;
            let got = open_down(&KEY, &mut flipped);
            assert!(got.is_err(), "byte {i} flipped was accepted");
        }
        assert_eq!(
            open_down(&KEY, &mut m[..8].to_vec()),
            Err(ErrorCode::DataTruncated)
        );
        assert_eq!(
            open_down(&KEY, &mut m[..DOWN_HEADER_LEN + TAG_LEN].to_vec()),
            Err(ErrorCode::DataTruncated)
        );
    }

    #[test]
    fn a_down_message_is_not_an_up_record_under_the_same_device_key() {
        // The up key of the same epoch does not open it: the directions have their own keys.
        let m = sealed(0, 0, DownKind::CheckUpdate, &[]);
        let up = epoch_key(&KEY, Direction::Up, 0);
        let down = epoch_key(&KEY, Direction::Down, 0);
        assert_ne!(*up, *down);
        let mut as_record = m.clone();
        as_record[0] = super::super::FORMAT_UP_V1;
        assert!(super::super::open_in_place(&up, &mut as_record).is_err());
    }

    #[test]
    fn bodies_must_fit_their_kind() {
        let mut out = [0u8; MAX_DOWN_LEN + 8];
        let h = DownHeader {
            epoch: 0,
            counter: 0,
        };
        assert_eq!(
            seal_down(&KEY, &h, DownKind::RecordInterval, &[1, 2], &mut out),
            Err(ErrorCode::BadLength)
        );
        assert_eq!(
            seal_down(&KEY, &h, DownKind::CheckUpdate, &[1], &mut out),
            Err(ErrorCode::BadLength)
        );
        assert_eq!(
            seal_down(
                &KEY,
                &h,
                DownKind::Text,
                &[b'a'; MAX_DOWN_BODY + 1],
                &mut out
            ),
            Err(ErrorCode::BadLength)
        );
    }

    #[test]
    fn the_window_refuses_replays_old_epochs_and_reordered_old_messages_across_a_reboot() {
        let mut w = DownWindow::default();
        let h = |epoch, counter| DownHeader { epoch, counter };
        assert_eq!(w.check(&h(0, 0)), Ok(()));
        let state = w.after(&h(0, 0)).unwrap();
        w.accept(state);
        assert_eq!(w.check(&h(0, 0)), Err(ErrorCode::DataReplay));
        // 2 arrives before 1: 2 is accepted, 1 (older) is then refused.
        w.accept(w.after(&h(0, 2)).unwrap());
        assert_eq!(w.check(&h(0, 1)), Err(ErrorCode::DataReplay));
        assert_eq!(w.check(&h(0, 3)), Ok(()));
        // A newer epoch moves on; the old one is closed.
        w.accept(w.after(&h(1, 0)).unwrap());
        assert_eq!(w.check(&h(0, 9)), Err(ErrorCode::DataStaleEpoch));
        // The persisted state is the window after a reboot.
        let rebooted = DownWindow::from_state(w.after(&h(1, 4)).unwrap());
        assert_eq!(rebooted.check(&h(1, 4)), Err(ErrorCode::DataReplay));
        assert_eq!(rebooted.check(&h(1, 5)), Ok(()));
        assert_eq!(w.after(&h(1, u32::MAX)), None);
    }

    #[test]
    fn the_window_survives_a_reboot_through_the_counter_journal() {
        use crate::data_stream::CounterJournal;
        use crate::flash::RamFlash;
        let mut flash = RamFlash::erased(0x4000);
        let mut journal = CounterJournal::load(&mut flash, 0).unwrap();
        let mut w = DownWindow::from_state(journal.state());
        for counter in 0..3 {
            let h = DownHeader { epoch: 0, counter };
            w.check(&h).unwrap();
            let state = w.after(&h).unwrap();
            journal
                .reserve(&mut flash, state.epoch, state.mark)
                .unwrap();
            w.accept(state);
        }
        let again = DownWindow::from_state(CounterJournal::load(&mut flash, 0).unwrap().state());
        assert_eq!(again, w);
        assert_eq!(
            again.check(&DownHeader {
                epoch: 0,
                counter: 2
            }),
            Err(ErrorCode::DataReplay)
        );
    }
}
