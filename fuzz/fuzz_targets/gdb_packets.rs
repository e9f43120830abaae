#![no_main]
//! The station's GDB remote-protocol decoder (acks, `$…#xx` packets, `}` escapes, `*`
//! run-length expansion) fed what a GDB server sends, in reads of varying size.
use flashgate_fuzz::pieces;
use flashgate_station::probe::gdb::packet::{expand, Decoder, Event};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new();
    for piece in pieces(data) {
        decoder.feed(piece);
        while let Some(event) = decoder.next_event() {
            if let Event::Packet(payload) = event {
                // Run-length expansion is bounded: each `*n` adds at most 226 bytes.
                assert!(payload.len() <= data.len() * 113 + 1);
            }
        }
    }
    let _ = expand(data);
});
