#![no_main]
//! The OS's app installer: the first message is the signed header (its mode odd: sent with a
//! forged install authorisation, else the device's genuine one), then body pieces (offset u32le,
//! then bytes), then a commit (mode 2).
use flashgate_fuzz::{device, messages};
use flashgate_protocol::app::{install_authorization, parse_app_header, AppInstaller, APP_HEADER_LEN};
use flashgate_protocol::image::SIGNED_HEADER_LEN;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = messages(data);
    let Some(header) = input.next() else {
        return;
    };
    if let Some(head) = header.bytes.first_chunk::<APP_HEADER_LEN>() {
        let _ = parse_app_header(head, u32::from(header.mode) << 8);
    }
    let record = device::record();
    let mut flash = device::flash();
    let Some(signed) = header.bytes.first_chunk::<SIGNED_HEADER_LEN>() else {
        return;
    };
    let authorization = if header.mode % 2 == 0 {
        install_authorization(&device::DEVICE_KEY, &device::SERIAL, signed)
    } else {
        [0; 32]
    };
    let Ok(mut installer) = AppInstaller::begin(&mut flash, &record, signed, &authorization) else {
        return;
    };
    for m in input {
        if m.mode % 4 == 2 {
            let _ = installer.commit(&mut flash);
            return;
        }
        let Some((offset, bytes)) = m.bytes.split_first_chunk::<4>() else {
            continue;
        };
        if installer
            .data(&mut flash, u32::from_le_bytes(*offset), bytes)
            .is_err()
        {
            return;
        }
    }
});
