#![no_main]
//! The update envelope the bootloader receives first: decoded, then opened with the device key
//! (the content key is unwrapped only for this device's serial and product).
use flashgate_fuzz::device;
use flashgate_protocol::codec::Codec;
use flashgate_protocol::update::package::Envelope;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    flashgate_fuzz::check_codec!(Envelope, data);
    if let Ok(envelope) = Envelope::read_bytes(data) {
        let _ = envelope.release_id();
        let _ = envelope.open(&device::DEVICE_KEY);
    }
});
