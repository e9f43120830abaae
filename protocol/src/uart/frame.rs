//! Framing on the UART: a frame carries one message and a checksum, and a streaming decoder
//! finds frames in a byte stream.
//!
//! ```text
//! frame := 0xF7 0x47 body crc32:u32le
//! body  := type:u8 len:u16le payload[len]       (the message's Codec encoding, `uart::message`)
//! crc32  = CRC-32/ISO-HDLC over body (catches line noise, not attackers: everything that
//!          matters inside is authenticated with the device key)
//! ```
//! This module knows nothing of what a message means; [`super::message`] does.

use crate::codec::{Codec, Writer};
use crate::crc::crc32;
use crate::ErrorCode;

use super::msg_type::{MsgType, UnknownMsgType};

/// First sync byte.
pub const SYNC0: u8 = 0xF7;
/// Second sync byte.
pub const SYNC1: u8 = 0x47;
/// Largest payload a frame may carry.
pub const MAX_PAYLOAD: usize = 4352;
/// Bytes a frame adds to its payload: sync, type, length, CRC.
pub const OVERHEAD: usize = 2 + BODY_HEADER + 4;
/// Largest frame.
pub const MAX_FRAME: usize = MAX_PAYLOAD + OVERHEAD;
const BODY_HEADER: usize = 1 + 2;

/// A message that travels in one frame: its [`Codec`] encoding is `type u8 | len u16le |
/// payload`.
pub trait UartMessage<'a>: Codec<'a> {
    /// The frame's type byte for this message.
    fn msg_type(&self) -> MsgType;
}

/// Encodes `msg` as one frame into `out`, returning the frame's length.
pub fn encode_frame<'a, M: UartMessage<'a>>(msg: &M, out: &mut [u8]) -> Result<usize, ErrorCode> {
    let mut w = Writer::new(out);
    w.put(&[SYNC0, SYNC1])?;
    msg.encode(&mut w)?;
    let body = &w.written()[2..];
    if body.len() > BODY_HEADER + MAX_PAYLOAD {
        return Err(ErrorCode::BadLength);
    }
    let crc = crc32(&[body]);
    w.u32(crc)?;
    Ok(w.len())
}

/// Encodes `msg` as one frame into a new vector.
#[cfg(feature = "std")]
pub fn frame_to_vec<'a, M: UartMessage<'a>>(msg: &M) -> Result<std::vec::Vec<u8>, ErrorCode> {
    let mut out = std::vec![0u8; MAX_FRAME];
    let n = encode_frame(msg, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// A frame the decoder accepted (checksum good), borrowed from the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// `type | len | payload`: what a message's [`Codec::read`] takes.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The type byte.
    pub fn msg_type(&self) -> Result<MsgType, UnknownMsgType> {
        MsgType::try_from(self.body[0])
    }

    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.body[BODY_HEADER..]
    }

    /// Decodes the frame as message `M`.
    pub fn read<M: UartMessage<'a>>(&self) -> Result<M, ErrorCode> {
        M::read_bytes(self.body)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Sync0,
    Sync1,
    Header,
    Payload,
    Crc,
}

/// Reassembles frames from a byte stream; resynchronises on the sync bytes after garbage.
pub struct FrameDecoder {
    phase: Phase,
    /// Bytes of `body` (or of `crc`, in [`Phase::Crc`]) received.
    got: usize,
    /// Body length announced by the header.
    len: usize,
    crc: [u8; 4],
    body: [u8; BODY_HEADER + MAX_PAYLOAD],
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self {
            phase: Phase::Sync0,
            got: 0,
            len: 0,
            crc: [0; 4],
            body: [0; BODY_HEADER + MAX_PAYLOAD],
        }
    }

    /// Feeds one byte. Returns `Some(Ok(frame))` when a frame is complete, `Some(Err(_))` for a
    /// frame that was dropped (too long: [`ErrorCode::BadLength`]; bad checksum:
    /// [`ErrorCode::BadChecksum`]).
    pub fn push(&mut self, byte: u8) -> Option<Result<Frame<'_>, ErrorCode>> {
        match self.phase {
            Phase::Sync0 => {
                if byte == SYNC0 {
                    self.phase = Phase::Sync1;
                }
            }
            Phase::Sync1 => {
                self.phase = match byte {
                    SYNC1 => {
                        self.got = 0;
                        Phase::Header
                    }
                    SYNC0 => Phase::Sync1,
                    _ => Phase::Sync0,
                }
            }
            Phase::Header => {
                self.body[self.got] = byte;
                self.got += 1;
                if self.got == BODY_HEADER {
                    let payload = usize::from(u16::from_le_bytes([self.body[1], self.body[2]]));
                    if payload > MAX_PAYLOAD {
                        self.phase = Phase::Sync0;
                        return Some(Err(ErrorCode::BadLength));
                    }
                    self.len = BODY_HEADER + payload;
                    self.phase = if payload == 0 {
                        self.got = 0;
                        Phase::Crc
                    } else {
                        Phase::Payload
                    };
                }
            }
            Phase::Payload => {
                self.body[self.got] = byte;
                self.got += 1;
                if self.got == self.len {
                    self.got = 0;
                    self.phase = Phase::Crc;
                }
            }
            Phase::Crc => {
                self.crc[self.got] = byte;
                self.got += 1;
                if self.got == 4 {
                    self.phase = Phase::Sync0;
                    let body = &self.body[..self.len];
                    if u32::from_le_bytes(self.crc) != crc32(&[body]) {
                        return Some(Err(ErrorCode::BadChecksum));
                    }
                    return Some(Ok(Frame { body }));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::codec::Reader;

    /// Any type byte and payload: framing does not care what a message means.
    #[derive(Debug, PartialEq, Eq)]
    struct Raw<'a>(MsgType, &'a [u8]);

    impl<'a> Codec<'a> for Raw<'a> {
        fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
            w.u8(self.0 as u8)?;
            w.u16_prefixed(|w| w.put(self.1))
        }
        fn read(r: &mut Reader<'a>) -> Result<Self, ErrorCode> {
            let msg_type = MsgType::try_from(r.u8()?)?;
            let len = r.u16()?;
            Ok(Self(msg_type, r.take(usize::from(len))?))
        }
    }

    impl<'a> UartMessage<'a> for Raw<'a> {
        fn msg_type(&self) -> MsgType {
            self.0
        }
    }

    /// The frames and errors a decoder reports for `bytes`.
    fn decode_all(bytes: &[u8]) -> Vec<Result<Vec<u8>, ErrorCode>> {
        let mut d = FrameDecoder::new();
        bytes
            .iter()
            .filter_map(|b| d.push(*b).map(|r| r.map(|f| f.body().to_vec())))
            .collect()
    }

    fn banner(text: &[u8]) -> Vec<u8> {
        frame_to_vec(&Raw(MsgType::BootBanner, text)).unwrap()
    }

    #[test]
    fn frame_round_trip_with_leading_garbage_and_a_false_sync() {
        let mut bytes = std::vec![0x00, SYNC0, 0x13, SYNC0];
        bytes.extend(banner(b"payload"));
        bytes.extend(banner(b""));
        let frames = decode_all(&bytes);
        assert_eq!(frames.len(), 2);
        let body = frames[0].clone().unwrap();
        let mut d = FrameDecoder::new();
        let mut first = None;
        for b in &bytes[4..] {
            if let Some(f) = d.push(*b) {
                first = Some(f.map(|f| (f.msg_type(), f.payload().to_vec(), f.body().to_vec())));
                break;
            }
        }
        let (msg_type, payload, whole) = first.unwrap().unwrap();
        assert_eq!(msg_type, Ok(MsgType::BootBanner));
        assert_eq!(payload, b"payload");
        assert_eq!(whole, body);
        assert_eq!(
            Raw::read_bytes(&whole),
            Ok(Raw(MsgType::BootBanner, b"payload"))
        );
        assert_eq!(frames[1], Ok(std::vec![MsgType::BootBanner as u8, 0, 0]));
    }

    #[test]
    fn corrupted_frame_is_dropped_and_the_next_one_decodes() {
        let mut bytes = banner(b"payload");
        bytes[7] ^= 1;
        bytes.extend(banner(b"next"));
        let frames = decode_all(&bytes);
        assert_eq!(frames[0], Err(ErrorCode::BadChecksum));
        assert!(frames[1].is_ok());
    }

    #[test]
    fn oversized_length_is_refused_at_the_header() {
        let mut bytes = std::vec![SYNC0, SYNC1, 0x82];
        bytes.extend(((MAX_PAYLOAD + 1) as u16).to_le_bytes());
        assert_eq!(decode_all(&bytes), [Err(ErrorCode::BadLength)]);
        let too_long = std::vec![0u8; MAX_PAYLOAD + 1];
        assert_eq!(
            frame_to_vec(&Raw(MsgType::BootBanner, &too_long)).err(),
            Some(ErrorCode::BadLength)
        );
        let longest = std::vec![0u8; MAX_PAYLOAD];
        let frame = frame_to_vec(&Raw(MsgType::BootBanner, &longest)).unwrap();
        assert_eq!(frame.len(), MAX_FRAME);
        assert!(decode_all(&frame)[0].is_ok());
    }

    #[test]
    fn frame_bytes_are_unchanged() {
        // sync | type 0x82 | len 2 | "ok" | CRC-32 over type, len and payload (as before the
        // split into modules).
        let frame = banner(b"ok");
        let crc = crc32(&[&[0x82, 2, 0, b'o', b'k']]).to_le_bytes();
        assert_eq!(
            frame,
            [SYNC0, SYNC1, 0x82, 2, 0, b'o', b'k', crc[0], crc[1], crc[2], crc[3]]
        );
    }
}
