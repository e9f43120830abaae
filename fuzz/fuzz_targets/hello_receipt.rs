#![no_main]
//! A device's hello response and status receipt as the station peeks at them and the
//! coordinator verifies them (first byte picks which).
use flashgate_fuzz::device;
use flashgate_protocol::{hello, update::receipt};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, raw)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if hello::peek_identity(raw).is_ok() {
            let _ = hello::verify_response(&device::DEVICE_KEY, &[7; 32], raw);
        }
    } else if receipt::peek(raw).is_ok() {
        let _ = receipt::verify(&device::DEVICE_KEY, &[7; 32], raw);
    }
});
