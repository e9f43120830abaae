//! The host link against a bootloader service in the same process: a fake transport feeds the
//! service what the link writes and hands back what the service sends, in reads of a chosen
//! size (one byte at a time, or several frames at once).

use std::collections::VecDeque;
use std::string::ToString;
use std::vec::Vec;

use super::*;
use crate::flash::RamFlash;
use crate::hello::DeviceState;
use crate::uart::frame::FrameDecoder;
use crate::uart::service::{BootloaderAction, BootloaderService};
use crate::update::boot_state::BootState;
use crate::update::tests::{device, os_image, package, record, vendor, KEY, SERIAL};

struct FakeDevice {
    service: BootloaderService<'static>,
    flash: RamFlash,
    decoder: FrameDecoder,
    to_host: VecDeque<u8>,
    /// Most bytes one read returns.
    read_size: usize,
    actions: Vec<BootloaderAction>,
    /// Sent before every reply (a banner, noise): what the link must skip.
    chatter: Vec<u8>,
}

impl FakeDevice {
    fn new(read_size: usize) -> Self {
        let record: &'static _ = std::boxed::Box::leak(std::boxed::Box::new(record()));
        let state = DeviceState::NoValidImage {
            reason: ErrorCode::NoValidImage,
        };
        Self {
            service: BootloaderService::new(
                Some(record),
                record.config.serial,
                state,
                BootState::default(),
            ),
            flash: device(),
            decoder: FrameDecoder::new(),
            to_host: VecDeque::new(),
            read_size,
            actions: Vec::new(),
            chatter: Vec::new(),
        }
    }
}

impl Read for FakeDevice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.to_host.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.read_size).min(self.to_host.len());
        for b in &mut buf[..n] {
            *b = self.to_host.pop_front().unwrap_or_default();
        }
        Ok(n)
    }
}

impl Write for FakeDevice {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        for &b in bytes {
            if let Some(frame) = self.decoder.push(b) {
                let mut out = Vec::new();
                out.extend_from_slice(&self.chatter);
                let action = self
                    .service
                    .handle(frame, &mut self.flash, &mut |f: &[u8]| {
                        out.extend_from_slice(f)
                    });
                self.actions.push(action);
                self.to_host.extend(out);
            }
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for FakeDevice {}

const T: Duration = Duration::from_secs(5);

#[test]
fn hello_verifies_for_every_read_size() {
    for read_size in [1, 7, 4096] {
        let mut link = HostLink::new(FakeDevice::new(read_size));
        let reply = link.hello([4; 32], T).unwrap();
        assert_eq!(reply.claimed.serial, SERIAL);
        assert_eq!(
            hello::verify_response(&KEY, &[4; 32], &reply.raw),
            Ok(reply.claimed)
        );
    }
}

#[test]
fn a_whole_update_goes_through_the_helpers_despite_chatter() {
    let mut device = FakeDevice::new(4096);
    // A banner and line noise before every reply: several frames land in one read.
    device.chatter = frame_to_vec(&DeviceMessage::BootBanner(b"noise")).unwrap();
    device.chatter.extend_from_slice(&[0x00, 0xF7, 0x13]);
    let mut link = HostLink::new(device);
    link.enter_update(T).unwrap();
    let (env, chunks) = package(&os_image(2, 13000, &vendor()), &SERIAL, &KEY);
    let ready = link.begin_update(&env, T).unwrap();
    assert_eq!((ready.next, ready.count), (0, chunks.len() as u32));
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(link.send_chunk(i as u32, c, T).unwrap(), i as u32 + 1);
    }
    assert_eq!(link.finish_update(T).unwrap(), 2);
    assert_eq!(
        link.install(None, T).unwrap(),
        InstallOutcome::Installed { version: 2 }
    );
    assert!(matches!(
        link.transport_mut().actions.last(),
        Some(BootloaderAction::Start(os)) if os.version == 2
    ));
}

#[test]
fn a_relayed_package_resumes_where_the_device_stopped() {
    let mut link = HostLink::new(FakeDevice::new(4096));
    let (env, chunks) = package(&os_image(2, 13000, &vendor()), &SERIAL, &KEY);
    let two = RelayLimits {
        max_chunks: Some(2),
        ..RelayLimits::default()
    };
    assert_eq!(
        link.relay_package(&env, &chunks, two, T).unwrap(),
        Relayed::Truncated { sent: 2 }
    );
    // The same envelope again: the device asks for chunk 2 first, and the rest goes through.
    assert_eq!(
        link.relay_package(&env, &chunks, RelayLimits::default(), T)
            .unwrap(),
        Relayed::Installed {
            version: 2,
            resumed_at: 2
        }
    );
    // A package for another device is refused at begin, before anything is sent.
    let mut link = HostLink::new(FakeDevice::new(4096));
    let (foreign, chunks) = package(&os_image(2, 13000, &vendor()), &[9; 16], &KEY);
    assert!(matches!(
        link.relay_package(&foreign, &chunks, RelayLimits::default(), T),
        Err(LinkError::Refused {
            request: Some(MsgType::UpdateBegin),
            code: ErrorCode::WrongSerial
        })
    ));
}

#[test]
fn an_error_frame_is_a_refusal_naming_the_request() {
    let mut link = HostLink::new(FakeDevice::new(3));
    let err = link.finish_update(T).unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::Refused {
                request: Some(MsgType::UpdateFinish),
                code: ErrorCode::UnexpectedMessage
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the device refused UpdateFinish: message not allowed at this step (code 0x0104)"
    );
}

#[test]
fn silence_is_a_timeout_and_a_closed_link_is_closed() {
    let mut link = HostLink::new(FakeDevice::new(1));
    let err = link
        .expect(MsgType::BootBanner, Duration::from_millis(20))
        .unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::Timeout {
                awaiting: Some(MsgType::BootBanner),
                ..
            }
        ),
        "{err}"
    );
    let mut closed = HostLink::new(Replay(VecDeque::new()));
    assert!(matches!(closed.receive(T), Err(LinkError::Closed)));
}

#[test]
fn data_records_are_picked_out_of_the_stream() {
    let mut stream = Vec::new();
    for m in [
        DeviceMessage::BootBanner(b"demo-os"),
        DeviceMessage::DataRecord(b"first"),
        DeviceMessage::Error(ErrorCode::BadLength),
        DeviceMessage::DataRecord(b"second"),
    ] {
        stream.extend(frame_to_vec(&m).unwrap());
    }
    let mut link = HostLink::new(Replay(stream.into()));
    assert_eq!(link.next_data_record(T).unwrap(), b"first");
    assert_eq!(link.next_data_record(T).unwrap(), b"second");
    assert!(matches!(link.next_data_record(T), Err(LinkError::Closed)));
}

#[test]
fn a_malformed_frame_of_a_known_type_is_an_error() {
    // A hello response one byte short.
    let body = [&[MsgType::HelloResponse as u8, 67, 0][..], &[0; 67]].concat();
    let mut stream = std::vec![0xF7, 0x47];
    stream.extend_from_slice(&body);
    stream.extend(crate::crc::crc32(&[&body]).to_le_bytes());
    let mut link = HostLink::new(Replay(stream.into()));
    assert!(matches!(
        link.receive(T),
        Err(LinkError::Malformed {
            msg_type: MsgType::HelloResponse,
            code: ErrorCode::BadLength
        })
    ));
}

/// Plays back fixed bytes, then reports the link closed.
struct Replay(VecDeque<u8>);

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.0.len());
        for b in &mut buf[..n] {
            *b = self.0.pop_front().unwrap_or_default();
        }
        Ok(n)
    }
}

impl Write for Replay {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Replay {}
