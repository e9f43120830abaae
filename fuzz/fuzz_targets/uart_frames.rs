#![no_main]
//! The UART frame decoder, fed the line in reads of varying size; every frame it accepts is
//! decoded as the device (a request) and the station (a device message) would.
use flashgate_fuzz::pieces;
use flashgate_protocol::uart::{DeviceMessage, FrameDecoder, Request, MAX_FRAME};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::new();
    for piece in pieces(data) {
        for b in piece {
            if let Some(Ok(frame)) = decoder.push(*b) {
                assert!(frame.body().len() + 6 <= MAX_FRAME);
                let _ = frame.msg_type();
                flashgate_fuzz::check_codec!(Request<'_>, frame.body());
                flashgate_fuzz::check_codec!(DeviceMessage<'_>, frame.body());
            }
        }
    }
});
