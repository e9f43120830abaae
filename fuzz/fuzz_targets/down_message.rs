#![no_main]
//! A message down as the device receives it from the network or the UART, unauthenticated:
//! the header, the device's window (which never moves backwards), then the AEAD. And the
//! seal/open round trip: whatever `seal_down` accepts, `open_down` gives back unchanged.
use flashgate_fuzz::device;
use flashgate_protocol::data_stream::{
    open_down, seal_down, DownHeader, DownKind, DownWindow, MAX_DOWN_LEN,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(header) = DownHeader::decode(data) {
        flashgate_fuzz::check_codec!(DownHeader, data);
        let window = DownWindow {
            epoch: 1,
            next: 100,
        };
        if window.check(&header).is_ok() {
            if let Some(state) = window.after(&header) {
                let mut moved = window;
                moved.accept(state);
                assert!(
                    moved.check(&header).is_err(),
                    "an accepted counter is spent"
                );
            }
        }
        let mut message = data.to_vec();
        if let Ok(opened) = open_down(&device::DEVICE_KEY, &mut message) {
            assert_eq!(opened.header, header);
            assert!(opened.body.end <= message.len());
        }
    }
    if let [kind, counter, body @ ..] = data {
        let Some(kind) = DownKind::from_u8(*kind) else {
            return;
        };
        let header = DownHeader {
            epoch: 0,
            counter: u32::from(*counter),
        };
        let mut out = [0u8; MAX_DOWN_LEN];
        if let Ok(n) = seal_down(&device::DEVICE_KEY, &header, kind, body, &mut out) {
            let opened =
                open_down(&device::DEVICE_KEY, &mut out[..n]).expect("a sealed message opens");
            assert_eq!(opened.kind, kind);
            assert_eq!(&out[opened.body], body);
        }
    }
});
