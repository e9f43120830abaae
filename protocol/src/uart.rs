//! Framing and request handling on the device's UART (the update link).
//!
//! ```text
//! frame := 0xF7 0x47 type:u8 len:u16le payload[len] crc32:u32le
//! crc32  = CRC-32/ISO-HDLC over type, len and payload (catches line noise, not attackers:
//!          everything that matters inside is authenticated with the device key)
//! ```
//! Types: `0x01` hello request (challenge[32]) → `0x81` hello response ([`crate::hello`]);
//! `0x82` boot banner (text, sent unasked by the OS when it starts); `0xEE` error (code u32);
//! `0x14` status request → `0x95` status receipt ([`crate::update::receipt`]); the update
//! transfer (`0x10`–`0x13`) is [`crate::update::session`].

use zeroize::Zeroizing;

use crate::codec::Writer;
use crate::device_record::DeviceRecord;
use crate::hello::{self, DeviceState, HelloInfo, CHALLENGE_LEN};
use crate::update::boot_state::BootState;
use crate::update::receipt;
use crate::update::session::msg as update_msg;
use crate::ErrorCode;

/// First sync byte.
pub const SYNC0: u8 = 0xF7;
/// Second sync byte.
pub const SYNC1: u8 = 0x47;
/// Largest payload a frame may carry.
pub const MAX_PAYLOAD: usize = 4352;
/// Bytes a frame adds to its payload.
pub const OVERHEAD: usize = 2 + 1 + 2 + 4;

/// Message types on the UART.
pub mod msg {
    /// Host asks the device to prove its identity.
    pub const HELLO_REQUEST: u8 = 0x01;
    /// Device's identity and proof.
    pub const HELLO_RESPONSE: u8 = 0x81;
    /// Sent by the OS when it starts.
    pub const BOOT_BANNER: u8 = 0x82;
    /// The device refused a request.
    pub const ERROR: u8 = 0xEE;

    // Data streams (0x30–0x3F), see `crate::data_stream`.
    /// Device → host, unasked: one sealed data record (the payload is the record).
    pub const DATA_RECORD: u8 = 0x30;
    /// Host → device: seal and send `count: u8` telemetry records now (tests, bench).
    pub const DATA_EMIT: u8 = 0x31;
    /// Host → device: rotate to a new epoch (the device sends the sealed rotation record).
    pub const DATA_ROTATE: u8 = 0x32;
    /// Host → device: report the OS status (empty payload).
    pub const OS_STATUS: u8 = 0x33;
    /// Device → host: `uptime_ticks u64 | epoch u32 | next_counter u32 | apps_started u32 |
    /// app_version u32 | last_app_status u32 | first_record_ticks u32` (not authenticated: a
    /// diagnostic; ticks are SysTick, 40 instructions each under `-icount shift=0`).
    pub const OS_STATUS_REPLY: u8 = 0x34;

    // Applications (0x40–0x4F), see `crate::app`.
    /// Host → device: signed app header (128 B); the device checks it and erases the slot.
    pub const APP_BEGIN: u8 = 0x40;
    /// Host → device: `offset u32 | bytes` of the app body.
    pub const APP_DATA: u8 = 0x41;
    /// Host → device: body complete; verify digest and make the slot valid.
    pub const APP_COMMIT: u8 = 0x42;
    /// Host → device: verify the installed app again and call it (no reset).
    pub const APP_START: u8 = 0x43;
    /// Device → host: a line the app logged through the call table.
    pub const APP_LOG: u8 = 0x44;
    /// Device → host: `step u8 (the request type) | value u32` (bytes received, version, or
    /// the app's return status).
    pub const APP_ACK: u8 = 0x4F;
}

pub(crate) fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (!(crc & 1)).wrapping_add(1));
            }
        }
    }
    !crc
}

/// Encodes a frame into `out`, returning its length.
pub fn encode_frame(msg_type: u8, payload: &[u8], out: &mut [u8]) -> Result<usize, ErrorCode> {
    if payload.len() > MAX_PAYLOAD {
        return Err(ErrorCode::BadLength);
    }
    let len = (payload.len() as u16).to_le_bytes();
    let crc = crc32(&[&[msg_type], &len, payload]);
    let mut w = Writer::new(out);
    w.put(&[SYNC0, SYNC1, msg_type])?;
    w.put(&len)?;
    w.put(payload)?;
    w.u32(crc)?;
    Ok(w.len())
}

/// Encodes a frame into a new vector.
#[cfg(feature = "std")]
pub fn frame_to_vec(msg_type: u8, payload: &[u8]) -> Result<std::vec::Vec<u8>, ErrorCode> {
    let mut out = std::vec![0u8; payload.len() + OVERHEAD];
    let n = encode_frame(msg_type, payload, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Sync0,
    Sync1,
    Type,
    Len0,
    Len1,
    Payload,
    Crc,
}

/// Reassembles frames from a byte stream; resynchronises on the sync bytes after garbage.
pub struct FrameDecoder {
    phase: Phase,
    msg_type: u8,
    len: usize,
    got: usize,
    crc: [u8; 4],
    crc_got: usize,
    payload: [u8; MAX_PAYLOAD],
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
            msg_type: 0,
            len: 0,
            got: 0,
            crc: [0; 4],
            crc_got: 0,
            payload: [0; MAX_PAYLOAD],
        }
    }

    /// Feeds one byte. Returns `Some(Ok(type))` when a frame is complete (its payload is then
    /// [`FrameDecoder::payload`]), `Some(Err(_))` for a frame that was dropped.
    pub fn push(&mut self, byte: u8) -> Option<Result<u8, ErrorCode>> {
        match self.phase {
            Phase::Sync0 => {
                if byte == SYNC0 {
                    self.phase = Phase::Sync1;
                }
            }
            Phase::Sync1 => {
                self.phase = match byte {
                    SYNC1 => Phase::Type,
                    SYNC0 => Phase::Sync1,
                    _ => Phase::Sync0,
                }
            }
            Phase::Type => {
                self.msg_type = byte;
                self.phase = Phase::Len0;
            }
            Phase::Len0 => {
                self.len = usize::from(byte);
                self.phase = Phase::Len1;
            }
            Phase::Len1 => {
                self.len |= usize::from(byte) << 8;
                self.got = 0;
                self.crc_got = 0;
                if self.len > MAX_PAYLOAD {
                    self.phase = Phase::Sync0;
                    return Some(Err(ErrorCode::BadLength));
                }
                self.phase = if self.len == 0 {
                    Phase::Crc
                } else {
                    Phase::Payload
                };
            }
            Phase::Payload => {
                self.payload[self.got] = byte;
                self.got += 1;
                if self.got == self.len {
                    self.phase = Phase::Crc;
                }
            }
            Phase::Crc => {
                self.crc[self.crc_got] = byte;
                self.crc_got += 1;
                if self.crc_got == 4 {
                    self.phase = Phase::Sync0;
                    let len = (self.len as u16).to_le_bytes();
                    let want = crc32(&[&[self.msg_type], &len, &self.payload[..self.len]]);
                    if u32::from_le_bytes(self.crc) != want {
                        return Some(Err(ErrorCode::BadChecksum));
                    }
                    return Some(Ok(self.msg_type));
                }
            }
        }
        None
    }

    /// Payload of the frame [`FrameDecoder::push`] just completed.
    pub fn payload(&self) -> &[u8] {
        &self.payload[..self.len]
    }
}

/// Answers requests on the UART for the bootloader (and, with another state, the demo OS).
pub struct DeviceServer {
    identity: Option<(Zeroizing<[u8; 32]>, HelloInfo)>,
    boot: BootState,
}

impl DeviceServer {
    /// A server for a device with `record` (none if unprovisioned) in `state`.
    pub fn new(record: Option<&DeviceRecord>, state: DeviceState) -> Self {
        Self {
            identity: record.map(|r| {
                (
                    Zeroizing::new(r.device_key),
                    HelloInfo {
                        serial: r.config.serial,
                        product_id: r.config.product_id,
                        bootloader_version: r.bootloader_version,
                        state,
                    },
                )
            }),
            boot: BootState::default(),
        }
    }

    /// Sets the boot state the status receipt reports (`update::boot_state::read`).
    pub fn with_boot_state(mut self, boot: BootState) -> Self {
        self.boot = boot;
        self
    }

    /// Handles one request and encodes the response frame into `out`.
    pub fn handle(
        &mut self,
        msg_type: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, ErrorCode> {
        match self.respond(msg_type, payload, out) {
            Ok(n) => Ok(n),
            Err(code) => Self::error_frame(code, out),
        }
    }

    /// Encodes an error frame (e.g. for a frame the decoder dropped).
    pub fn error_frame(code: ErrorCode, out: &mut [u8]) -> Result<usize, ErrorCode> {
        encode_frame(msg::ERROR, &(code as u32).to_le_bytes(), out)
    }

    fn respond(
        &mut self,
        msg_type: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, ErrorCode> {
        match msg_type {
            msg::HELLO_REQUEST => {
                let challenge: &[u8; CHALLENGE_LEN] =
                    payload.try_into().map_err(|_| ErrorCode::BadLength)?;
                let (key, info) = self.identity.as_ref().ok_or(ErrorCode::NotProvisioned)?;
                let mut body = [0u8; hello::RESPONSE_LEN];
                let n = hello::encode_response(key, challenge, info, &mut body)?;
                encode_frame(msg::HELLO_RESPONSE, &body[..n], out)
            }
            update_msg::STATUS => {
                let challenge: &[u8; receipt::CHALLENGE_LEN] =
                    payload.try_into().map_err(|_| ErrorCode::BadLength)?;
                let (key, info) = self.identity.as_ref().ok_or(ErrorCode::NotProvisioned)?;
                let status = receipt::StatusReceipt::new(
                    info.serial,
                    info.product_id,
                    info.bootloader_version,
                    info.state,
                    &self.boot,
                );
                let raw = receipt::encode(key, challenge, &status);
                encode_frame(update_msg::RECEIPT, &raw, out)
            }
            _ => Err(ErrorCode::UnknownMessage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> ([u8; 64], usize, Option<Result<u8, ErrorCode>>) {
        let mut d = FrameDecoder::new();
        let mut last = None;
        let mut payload = [0u8; 64];
        let mut n = 0;
        for b in bytes {
            if let Some(r) = d.push(*b) {
                if r.is_ok() {
                    n = d.payload().len();
                    payload[..n].copy_from_slice(d.payload());
                }
                last = Some(r);
            }
        }
        (payload, n, last)
    }

    #[test]
    fn frame_round_trip_with_leading_garbage() {
        let mut buf = [0u8; 64];
        buf[0] = 0x00;
        buf[1] = SYNC0;
        let n = encode_frame(0x42, b"payload", &mut buf[2..]).unwrap();
        let (p, len, last) = decode_all(&buf[..n + 2]);
        assert_eq!(last, Some(Ok(0x42)));
        assert_eq!(&p[..len], b"payload");
    }

    #[test]
    fn corrupted_frame_is_dropped_with_checksum_error() {
        let mut buf = [0u8; 64];
        let n = encode_frame(0x42, b"payload", &mut buf).unwrap();
        buf[7] ^= 1;
        assert_eq!(decode_all(&buf[..n]).2, Some(Err(ErrorCode::BadChecksum)));
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
    }

    #[test]
    fn unprovisioned_device_refuses_hello() {
        let mut s = DeviceServer::new(None, DeviceState::OsRunning { version: 1 });
        let mut out = [0u8; 64];
        let n = s.handle(msg::HELLO_REQUEST, &[0; 32], &mut out).unwrap();
        let (p, len, last) = decode_all(&out[..n]);
        assert_eq!(last, Some(Ok(msg::ERROR)));
        assert_eq!(&p[..len], &(ErrorCode::NotProvisioned as u32).to_le_bytes());
    }
}
