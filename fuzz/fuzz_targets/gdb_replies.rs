#![no_main]
//! What the station reads out of GDB server replies: stop replies, `qSupported`, hex memory
//! and register dumps, `Exx` errors.
use flashgate_station::probe::gdb::packet::{error_code, parse_hex_u64, unhex, unhex_into};
use flashgate_station::probe::gdb::{parse_stop_reply, ServerFeatures};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = parse_stop_reply(data);
    let features = ServerFeatures::parse(data);
    assert!((64..=1 << 20).contains(&features.packet_size));
    if let Some(bytes) = unhex(data) {
        assert_eq!(bytes.len() * 2, data.len());
    }
    let mut words = [0u8; 68];
    let _ = unhex_into(data, &mut words);
    let _ = parse_hex_u64(data);
    let _ = error_code(data);
});
