//! The services on the host: frames in as bytes (through the decoder), frames out through a
//! sink, against a RamFlash device.

extern crate std;
use std::vec::Vec;

use core::num::NonZeroU32;

use ed25519_dalek::SigningKey;

use super::*;
use crate::app::receipt::AppReceipt;
use crate::app::APP_BODY_ADDR;
use crate::codec::Codec;
use crate::flash::RamFlash;
use crate::uart::frame::{frame_to_vec, FrameDecoder, SYNC0, SYNC1};
use crate::uart::message::{DeviceMessage, Request};
use crate::uart::msg_type::MsgType;
use crate::update::boot_state::BootState;
use crate::update::receipt;
use crate::update::tests::{device, os_image, package, record, vendor, KEY, SERIAL};

/// What a service sent.
#[derive(Default)]
struct Sent(Vec<u8>);

impl FrameSink for Sent {
    fn send_frame(&mut self, frame: &[u8]) {
        self.0.extend_from_slice(frame);
    }
}

impl Sent {
    /// The frames, as bodies.
    fn bodies(&self) -> Vec<Vec<u8>> {
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        for b in &self.0 {
            if let Some(r) = d.push(*b) {
                out.push(r.expect("the service sends good frames").body().to_vec());
            }
        }
        out
    }
}

/// Feeds `bytes` to a decoder and `serve` for each frame; returns the frames sent back (as
/// bodies) and the last action.
fn exchange<A>(
    bytes: &[u8],
    mut serve: impl FnMut(Result<crate::uart::Frame<'_>, ErrorCode>, &mut Sent) -> A,
) -> (Vec<Vec<u8>>, Option<A>) {
    let mut decoder = FrameDecoder::new();
    let mut sent = Sent::default();
    let mut action = None;
    for b in bytes {
        if let Some(frame) = decoder.push(*b) {
            action = Some(serve(frame, &mut sent));
        }
    }
    (sent.bodies(), action)
}

fn frame(r: &Request<'_>) -> Vec<u8> {
    frame_to_vec(r).unwrap()
}

fn message(body: &[u8]) -> DeviceMessage<'_> {
    DeviceMessage::read_bytes(body).unwrap()
}

/// One request to a bootloader on `flash`; its replies and action.
fn to_bootloader(
    service: &mut BootloaderService<'_>,
    flash: &mut RamFlash,
    bytes: &[u8],
) -> (Vec<Vec<u8>>, BootloaderAction) {
    let (replies, action) = exchange(bytes, |f, link| service.handle(f, flash, link));
    (replies, action.expect("a frame was decoded"))
}

fn refused(replies: &[Vec<u8>]) -> ErrorCode {
    match replies {
        [one] => match message(one) {
            DeviceMessage::Error(code) => code,
            other => panic!("expected an error frame, got {other:?}"),
        },
        _ => panic!("expected one reply, got {}", replies.len()),
    }
}

const NO_OS: DeviceState = DeviceState::NoValidImage {
    reason: ErrorCode::NoValidImage,
};

#[test]
fn unprovisioned_bootloader_refuses_identity_and_updates() {
    let mut flash = RamFlash::erased(crate::layout::FLASH_SIZE as usize);
    let mut s = BootloaderService::new(None, SERIAL, NO_OS, BootState::default());
    for r in [
        Request::Hello { challenge: [0; 32] },
        Request::Status { challenge: [0; 32] },
        Request::UpdateBegin {
            envelope: &[0; crate::update::package::ENVELOPE_LEN],
        },
        Request::UpdateFinish,
    ] {
        let (replies, action) = to_bootloader(&mut s, &mut flash, &frame(&r));
        assert_eq!(refused(&replies), ErrorCode::NotProvisioned, "{r:?}");
        assert_eq!(action, BootloaderAction::Continue);
    }
}

#[test]
fn bootloader_proves_identity_and_refuses_what_it_does_not_serve() {
    let rec = record();
    let mut flash = device();
    let boot = BootState {
        floor: 4,
        ..BootState::default()
    };
    let mut s = BootloaderService::new(Some(&rec), SERIAL, NO_OS, boot);

    let (replies, _) = to_bootloader(
        &mut s,
        &mut flash,
        &frame(&Request::Hello { challenge: [9; 32] }),
    );
    let DeviceMessage::HelloResponse(raw) = message(&replies[0]) else {
        panic!("hello answered with {:?}", message(&replies[0]));
    };
    let info = crate::hello::verify_response(&KEY, &[9; 32], raw).unwrap();
    assert_eq!((info.serial, info.state), (SERIAL, NO_OS));

    let (replies, _) = to_bootloader(
        &mut s,
        &mut flash,
        &frame(&Request::Status { challenge: [8; 32] }),
    );
    let DeviceMessage::StatusReceipt(raw) = message(&replies[0]) else {
        panic!("status answered with {:?}", message(&replies[0]));
    };
    let r = receipt::verify(&KEY, &[8; 32], raw).unwrap();
    assert_eq!((r.state, r.floor), (NO_OS, 4));

    let (replies, _) = to_bootloader(&mut s, &mut flash, &frame(&Request::EnterUpdate));
    assert_eq!(message(&replies[0]), DeviceMessage::UpdateMode);

    // OS requests, an unknown type, a short hello, a bad checksum: one error frame each.
    for (bytes, code) in [
        (
            frame(&Request::DataEmit { count: 1 }),
            ErrorCode::UnknownMessage,
        ),
        (frame(&Request::AppStart), ErrorCode::UnknownMessage),
        (raw_frame(&[0x77, 0, 0]), ErrorCode::UnknownMessage),
        (hello_with_challenge_len(31), ErrorCode::BadLength),
        (
            corrupted(frame(&Request::EnterUpdate)),
            ErrorCode::BadChecksum,
        ),
    ] {
        let (replies, action) = to_bootloader(&mut s, &mut flash, &bytes);
        assert_eq!(refused(&replies), code);
        assert_eq!(action, BootloaderAction::Continue);
    }
}

/// A frame around any body (one no `Request` encodes).
fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut f = std::vec![SYNC0, SYNC1];
    f.extend_from_slice(body);
    f.extend(crate::crc::crc32(&[body]).to_le_bytes());
    f
}

fn hello_with_challenge_len(n: usize) -> Vec<u8> {
    let mut body = std::vec![MsgType::HelloRequest as u8];
    body.extend((n as u16).to_le_bytes());
    body.extend(std::vec![0u8; n]);
    raw_frame(&body)
}

fn corrupted(mut f: Vec<u8>) -> Vec<u8> {
    f[2] ^= 0x40;
    f
}

/// Sends a whole package as frames; returns the bootloader's action after the install.
fn push_update(
    s: &mut BootloaderService<'_>,
    flash: &mut RamFlash,
    halt_after: Option<NonZeroU32>,
) -> (Vec<Vec<u8>>, BootloaderAction) {
    let (env, chunks) = package(&os_image(2, 13000, &vendor()), &SERIAL, &KEY);
    let (replies, _) = to_bootloader(s, flash, &frame(&Request::UpdateBegin { envelope: &env }));
    assert_eq!(
        message(&replies[0]),
        DeviceMessage::UpdateReady {
            next: 0,
            count: chunks.len() as u32
        }
    );
    for (i, c) in chunks.iter().enumerate() {
        let index = i as u32;
        let (replies, _) =
            to_bootloader(s, flash, &frame(&Request::UpdateChunk { index, sealed: c }));
        assert_eq!(
            message(&replies[0]),
            DeviceMessage::ChunkAck { next: index + 1 }
        );
    }
    let (replies, _) = to_bootloader(s, flash, &frame(&Request::UpdateFinish));
    assert_eq!(
        message(&replies[0]),
        DeviceMessage::UpdateStaged { version: 2 }
    );
    to_bootloader(s, flash, &frame(&Request::UpdateInstall { halt_after }))
}

#[test]
fn bootloader_routes_the_transfer_and_starts_the_installed_image() {
    let rec = record();
    let mut flash = device();
    let mut s = BootloaderService::new(Some(&rec), SERIAL, NO_OS, BootState::default());
    // Nothing staged yet.
    let install = frame(&Request::UpdateInstall { halt_after: None });
    let (replies, _) = to_bootloader(&mut s, &mut flash, &install);
    assert_eq!(refused(&replies), ErrorCode::UnexpectedMessage);

    let (replies, action) = push_update(&mut s, &mut flash, None);
    assert_eq!(
        message(&replies[0]),
        DeviceMessage::UpdateInstalled { version: 2 }
    );
    let BootloaderAction::Start(os) = action else {
        panic!("the install did not start the image: {action:?}");
    };
    assert_eq!(os.version, 2);
    // The staged image was used up.
    let (replies, _) = to_bootloader(&mut s, &mut flash, &install);
    assert_eq!(refused(&replies), ErrorCode::UnexpectedMessage);
}

#[test]
fn a_bootloader_about_to_start_the_new_image_reports_it_on_trial() {
    let rec = record();
    let mut flash = device();
    let mut s = BootloaderService::new(Some(&rec), SERIAL, NO_OS, BootState::default());
    let (_, action) = push_update(&mut s, &mut flash, None);
    let BootloaderAction::Start(os) = action else {
        panic!("the install did not start the image: {action:?}");
    };
    let challenge = [9u8; receipt::CHALLENGE_LEN];
    let status = frame(&Request::Status { challenge });
    // Before `starting`: the state it was made with.
    let (replies, _) = to_bootloader(&mut s, &mut flash, &status);
    let DeviceMessage::StatusReceipt(raw) = message(&replies[0]) else {
        panic!("a receipt")
    };
    let r = receipt::verify(&KEY, &challenge, raw).unwrap();
    assert_eq!(r.state, NO_OS);
    s.starting(&os, crate::update::boot_state::read(&mut flash).unwrap());
    let (replies, _) = to_bootloader(&mut s, &mut flash, &status);
    let DeviceMessage::StatusReceipt(raw) = message(&replies[0]) else {
        panic!("a receipt")
    };
    let r = receipt::verify(&KEY, &challenge, raw).unwrap();
    assert_eq!(r.state, DeviceState::OsRunning { version: 2 });
    assert!(r.on_trial(), "{r:?}");
    assert_eq!((r.new_version, r.attempts), (2, 1));
}

#[test]
fn a_device_refused_at_boot_still_takes_updates_but_starts_nothing() {
    let rec = record();
    let mut flash = device();
    let clone = DeviceState::NoValidImage {
        reason: ErrorCode::UidMismatch,
    };
    let mut other_chip = SERIAL;
    other_chip[0] ^= 1;
    let mut s = BootloaderService::new(Some(&rec), other_chip, clone, BootState::default())
        .refusing_to_boot(ErrorCode::UidMismatch);
    // Its hello says why, with the chip's own unique ID beside the record's serial.
    let challenge = [9u8; 32];
    let (replies, _) = to_bootloader(&mut s, &mut flash, &frame(&Request::Hello { challenge }));
    let DeviceMessage::HelloResponse(raw) = message(&replies[0]) else {
        panic!("no hello response");
    };
    let info = crate::hello::verify_response(&KEY, &challenge, raw).unwrap();
    assert_eq!(
        (info.serial, info.chip_uid, info.state),
        (SERIAL, other_chip, clone)
    );
    assert!(!info.on_its_own_chip());
    let (replies, action) = push_update(&mut s, &mut flash, None);
    assert_eq!(
        message(&replies[0]),
        DeviceMessage::UpdateInstalled { version: 2 }
    );
    assert_eq!(action, BootloaderAction::Continue, "nothing was started");
    assert_eq!(refused(&replies[1..]), ErrorCode::UidMismatch);
}

#[test]
fn bootloader_halts_where_asked_and_says_so() {
    let rec = record();
    let mut flash = device();
    let mut s = BootloaderService::new(Some(&rec), SERIAL, NO_OS, BootState::default());
    let (replies, action) = push_update(&mut s, &mut flash, NonZeroU32::new(2));
    assert_eq!(action, BootloaderAction::Halt);
    assert_eq!(
        message(replies.last().unwrap()),
        DeviceMessage::InstallHalted { step: 2 }
    );
}

/// One request to an OS; its replies and action.
fn to_os(s: &mut OsService<'_>, flash: &mut RamFlash, bytes: &[u8]) -> (Vec<Vec<u8>>, OsAction) {
    let (replies, action) = exchange(bytes, |f, link| s.handle(f, flash, link));
    (replies, action.expect("a frame was decoded"))
}

/// An app package of version 6 for this device (or the one `serial`/`key` name).
fn app_package(signer: &SigningKey, serial: &[u8; 16], key: &[u8; 32]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let image = crate::app::install::tests::app_image(6, 5000, signer);
    crate::app::install::tests::package_for(&image, serial, key)
}

fn app_ack(replies: &[Vec<u8>]) -> (MsgType, u32) {
    match message(&replies[0]) {
        DeviceMessage::AppAck { step, value } => (step, value),
        other => panic!("expected an app ack, got {other:?}"),
    }
}

/// An app receipt for `challenge`, verified.
fn app_receipt(s: &mut OsService<'_>, flash: &mut RamFlash, challenge: [u8; 32]) -> AppReceipt {
    let (replies, _) = to_os(s, flash, &frame(&Request::AppStatus { challenge }));
    let DeviceMessage::AppReceipt(raw) = message(&replies[0]) else {
        panic!("no app receipt");
    };
    crate::app::receipt::verify(&KEY, &challenge, raw).unwrap()
}

#[test]
fn os_hands_over_and_leaves_data_and_status_to_the_firmware() {
    let rec = record();
    let mut flash = device();
    let mut s = OsService::new(Some(&rec), SERIAL, 1, BootState::default());
    let (replies, action) = to_os(&mut s, &mut flash, &frame(&Request::EnterUpdate));
    assert_eq!(message(&replies[0]), DeviceMessage::UpdateMode);
    assert_eq!(action, OsAction::EnterBootloader);
    for (r, want) in [
        (
            Request::DataEmit { count: 3 },
            OsAction::EmitTelemetry { count: 3 },
        ),
        (Request::DataRotate, OsAction::RotateEpoch),
        (Request::OsStatus, OsAction::ReportStatus),
    ] {
        let (replies, action) = to_os(&mut s, &mut flash, &frame(&r));
        assert!(replies.is_empty(), "{r:?}: the firmware answers");
        assert_eq!(action, want);
    }
    // The transfer is the bootloader's.
    let (replies, _) = to_os(&mut s, &mut flash, &frame(&Request::UpdateFinish));
    assert_eq!(refused(&replies), ErrorCode::UnknownMessage);
    // hello says the OS runs.
    let (replies, _) = to_os(
        &mut s,
        &mut flash,
        &frame(&Request::Hello { challenge: [1; 32] }),
    );
    let DeviceMessage::HelloResponse(raw) = message(&replies[0]) else {
        panic!("no hello");
    };
    let info = crate::hello::verify_response(&KEY, &[1; 32], raw).unwrap();
    assert_eq!(info.state, DeviceState::OsRunning { version: 1 });
}

#[test]
fn os_installs_an_app_package_step_by_step_reports_it_and_counts_its_starts() {
    let rec = record();
    let mut flash = device();
    let mut s = OsService::new(Some(&rec), SERIAL, 1, BootState::default());
    let (envelope, chunks) = app_package(&vendor(), &SERIAL, &KEY);

    // A chunk before a begin, a start before any install; the receipt says there is no app.
    let (replies, _) = to_os(
        &mut s,
        &mut flash,
        &frame(&Request::AppPackageChunk {
            index: 0,
            sealed: &chunks[0],
        }),
    );
    assert_eq!(refused(&replies), ErrorCode::UnexpectedMessage);
    let (replies, _) = to_os(&mut s, &mut flash, &frame(&Request::AppStart));
    assert_eq!(refused(&replies), ErrorCode::NoValidImage);
    let none = app_receipt(&mut s, &mut flash, [8; 32]);
    assert_eq!(
        (none.version, none.floor, none.reason),
        (0, 0, Some(ErrorCode::NoValidImage))
    );

    let (replies, _) = to_os(
        &mut s,
        &mut flash,
        &frame(&Request::AppPackageBegin {
            envelope: &envelope,
        }),
    );
    assert_eq!(app_ack(&replies), (MsgType::AppPackageBegin, 2));
    for (i, sealed) in chunks.iter().enumerate() {
        let index = i as u32;
        let (replies, _) = to_os(
            &mut s,
            &mut flash,
            &frame(&Request::AppPackageChunk { index, sealed }),
        );
        assert_eq!(app_ack(&replies), (MsgType::AppPackageChunk, index + 1));
    }
    let (replies, _) = to_os(&mut s, &mut flash, &frame(&Request::AppCommit));
    assert_eq!(app_ack(&replies), (MsgType::AppCommit, 6));
    let installed = app_receipt(&mut s, &mut flash, [9; 32]);
    assert_eq!(
        (
            installed.serial,
            installed.version,
            installed.floor,
            installed.reason
        ),
        (SERIAL, 6, 6, None)
    );

    let (replies, action) = to_os(&mut s, &mut flash, &frame(&Request::AppStart));
    assert!(replies.is_empty());
    let OsAction::StartApp(app) = action else {
        panic!("no start: {action:?}");
    };
    assert_eq!((app.version, app.entry), (6, APP_BODY_ADDR + 0x21));
    let mut sent = Sent::default();
    s.app_returned(&app, 7, &mut sent);
    assert_eq!(
        message(&sent.bodies()[0]),
        DeviceMessage::AppAck {
            step: MsgType::AppStart,
            value: 7
        }
    );
    assert_eq!(
        s.app_stats(),
        AppStats {
            started: 1,
            version: 6,
            last_status: 7
        }
    );
}

#[test]
fn os_refuses_a_foreign_package_a_forged_app_a_tampered_chunk_and_a_gap() {
    let rec = record();
    let mut flash = device();
    let mut s = OsService::new(Some(&rec), SERIAL, 1, BootState::default());
    let begin = |s: &mut OsService<'_>, flash: &mut RamFlash, envelope: &[u8]| {
        to_os(s, flash, &frame(&Request::AppPackageBegin { envelope })).0
    };
    let mut other = SERIAL;
    other[15] ^= 0x80;
    let (foreign, _) = app_package(&vendor(), &other, &[0x77; 32]);
    assert_eq!(
        refused(&begin(&mut s, &mut flash, &foreign)),
        ErrorCode::WrongSerial
    );
    let (forged, _) = app_package(&SigningKey::from_bytes(&[0x42; 32]), &SERIAL, &KEY);
    assert_eq!(
        refused(&begin(&mut s, &mut flash, &forged)),
        ErrorCode::BadSignature
    );

    let (envelope, chunks) = app_package(&vendor(), &SERIAL, &KEY);
    assert_eq!(begin(&mut s, &mut flash, &envelope).len(), 1);
    let gap = Request::AppPackageChunk {
        index: 1,
        sealed: &chunks[1],
    };
    let (replies, _) = to_os(&mut s, &mut flash, &frame(&gap));
    assert_eq!(refused(&replies), ErrorCode::BadOffset);
    // The install was abandoned: more chunks are out of step.
    let first = Request::AppPackageChunk {
        index: 0,
        sealed: &chunks[0],
    };
    let (replies, _) = to_os(&mut s, &mut flash, &frame(&first));
    assert_eq!(refused(&replies), ErrorCode::UnexpectedMessage);
    // A tampered chunk is refused before it is programmed; nothing got installed.
    assert_eq!(begin(&mut s, &mut flash, &envelope).len(), 1);
    let mut tampered = chunks[0].clone();
    tampered[3] ^= 4;
    let (replies, _) = to_os(
        &mut s,
        &mut flash,
        &frame(&Request::AppPackageChunk {
            index: 0,
            sealed: &tampered,
        }),
    );
    assert_eq!(refused(&replies), ErrorCode::BadTag);
    let (replies, _) = to_os(&mut s, &mut flash, &frame(&Request::AppCommit));
    assert_eq!(refused(&replies), ErrorCode::UnexpectedMessage);
    assert_eq!(app_receipt(&mut s, &mut flash, [1; 32]).version, 0);
}

#[test]
fn every_reply_fits_the_reply_buffer() {
    // The largest replies a service builds itself are the hello response and the receipt;
    // larger frames are the firmware's (records, logs), sent from its own buffer.
    let raw = [0u8; receipt::RECEIPT_LEN];
    let receipt = frame_to_vec(&DeviceMessage::StatusReceipt(&raw)).unwrap();
    let raw = [0u8; crate::hello::RESPONSE_LEN];
    let hello = frame_to_vec(&DeviceMessage::HelloResponse(&raw)).unwrap();
    assert_eq!(receipt.len().max(hello.len()), REPLY_MAX);
}
