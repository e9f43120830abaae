#![no_main]
//! The OS's app installer: the first message is an app package envelope (its mode odd: sent as
//! is, else re-made by the device's genuine key around the signed header it carries, so the
//! checks past the envelope are reached), then chunks (index u32le, then ciphertext and tag),
//! then a commit (mode 2).
use flashgate_fuzz::{device, messages};
use flashgate_protocol::app::{parse_app_header, AppInstaller, APP_HEADER_LEN};
use flashgate_protocol::update::package::{SealedRelease, ENVELOPE_LEN};
use zeroize::Zeroizing;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = messages(data);
    let Some(first) = input.next() else {
        return;
    };
    if let Some(head) = first.bytes.first_chunk::<APP_HEADER_LEN>() {
        let _ = parse_app_header(head, u32::from(first.mode) << 8);
    }
    let record = device::record();
    let mut flash = device::flash();
    let envelope: Vec<u8> = if first.mode % 2 == 0 {
        // The bytes as an image (header + body): sealed and addressed to this device.
        let Ok(release) = SealedRelease::seal(&first.bytes, Zeroizing::new([7; 32])) else {
            return;
        };
        match release.envelope_for(&device::SERIAL, device::PRODUCT, &device::DEVICE_KEY, &[1; 16]) {
            Ok(env) => env.to_vec(),
            Err(_) => return,
        }
    } else {
        first.bytes.iter().copied().take(ENVELOPE_LEN).collect()
    };
    let Ok(mut installer) = AppInstaller::begin(&mut flash, &record, &envelope) else {
        return;
    };
    for m in input {
        if m.mode % 4 == 2 {
            let _ = installer.commit(&mut flash);
            return;
        }
        let Some((index, sealed)) = m.bytes.split_first_chunk::<4>() else {
            continue;
        };
        if installer
            .chunk(&mut flash, u32::from_le_bytes(*index), sealed)
            .is_err()
        {
            return;
        }
    }
});
