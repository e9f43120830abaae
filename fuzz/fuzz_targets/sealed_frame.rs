#![no_main]
//! A sealed provisioning frame opened by its receiver (first byte: the sequence number it
//! expects); a frame that opens must hold its plaintext within the frame.
use flashgate_protocol::sealed_frame::open_in_place;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&seq, frame)) = data.split_first() else {
        return;
    };
    let mut frame = frame.to_vec();
    if let Ok(range) = open_in_place(&[0x42; 32], u32::from(seq), &mut frame) {
        assert!(range.end <= frame.len());
    }
});
