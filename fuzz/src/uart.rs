//! Session inputs for the device's UART services: each [`crate::Message`] with an odd mode is a
//! `Request` encoding the harness frames properly (so the fuzzer need not forge CRCs); one with
//! an even mode is raw bytes on the line (garbage, torn or bad-CRC frames).

use flashgate_protocol::codec::Codec;
use flashgate_protocol::uart::frame::frame_to_vec;
use flashgate_protocol::uart::message::{DeviceMessage, Request};
use flashgate_protocol::uart::{Frame, FrameDecoder};
use flashgate_protocol::ErrorCode;

use crate::messages;

/// Feeds the session input `data` through a frame decoder, calling `serve` for every frame it
/// yields (good or refused), as the device's receive loop does.
pub fn frames_in(data: &[u8], mut serve: impl FnMut(Result<Frame<'_>, ErrorCode>)) {
    let mut decoder = FrameDecoder::new();
    for m in messages(data) {
        let framed;
        let bytes: &[u8] = if m.mode & 1 == 1 {
            match Request::read_bytes(m.bytes).and_then(|r| frame_to_vec(&r)) {
                Ok(f) => {
                    framed = f;
                    &framed
                }
                Err(_) => continue,
            }
        } else {
            m.bytes
        };
        for b in bytes {
            if let Some(frame) = decoder.push(*b) {
                serve(frame);
            }
        }
    }
}

/// What a device sent must be good frames carrying messages the host can decode: a service that
/// answers garbage with garbage would leave the station guessing.
pub fn check_sent(sent: &[u8]) {
    let mut decoder = FrameDecoder::new();
    for b in sent {
        if let Some(frame) = decoder.push(*b) {
            let frame = frame.expect("the device sends good frames");
            DeviceMessage::read_bytes(frame.body())
                .expect("the device sends messages the host reads");
        }
    }
}
