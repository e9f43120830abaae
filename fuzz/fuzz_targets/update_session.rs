#![no_main]
//! The update transfer on the device: begin with an envelope, chunks, finish, install — in any
//! order, with any bytes. Modes: 0 begin, 1 chunk (index u32le, then ciphertext and tag),
//! 2 finish, 3 install what is staged.
use flashgate_fuzz::{device, messages};
use flashgate_protocol::update::install::{self, Steps};
use flashgate_protocol::update::session::UpdateSession;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let record = device::record();
    let mut flash = device::flash();
    let mut session = UpdateSession::new();
    for m in messages(data) {
        match m.mode % 4 {
            0 => {
                if let Ok(ready) = session.begin(m.bytes, &mut flash, &record) {
                    assert!(ready.next <= ready.count);
                }
            }
            1 => {
                let Some((index, sealed)) = m.bytes.split_first_chunk::<4>() else {
                    continue;
                };
                let _ = session.chunk(u32::from_le_bytes(*index), sealed, &mut flash);
            }
            2 => {
                let _ = session.finish();
            }
            _ => {
                if session.take_staged().is_ok() {
                    let _ = install::install(&mut flash, &record, &mut Steps::unlimited());
                }
            }
        }
    }
});
