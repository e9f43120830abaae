#![no_main]
//! The OS's app installer: the first message is the signed header, then body pieces (offset
//! u32le, then bytes), then a commit (mode 2).
use flashgate_fuzz::{device, messages};
use flashgate_protocol::app::{parse_app_header, AppInstaller, APP_HEADER_LEN};

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
    let Ok(mut installer) = AppInstaller::begin(&mut flash, &record, header.bytes) else {
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
