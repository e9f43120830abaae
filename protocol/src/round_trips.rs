//! Every wire type through the same round trip: `read_bytes(encode(x)) == x`, the encoding
//! fills exactly what `read` consumes, and one byte less is refused. (Property tests and fuzz
//! targets go over the same trait; these are the fixed cases.)

extern crate std;
use core::fmt::Debug;
use std::vec::Vec;

use crate::app::AppHeader;
use crate::certificate::{CertificateBody, DeviceCertificate};
use crate::codec::Codec;
use crate::data_stream::{CompactHeader, CounterState, RecordHeader, RecordKind};
use crate::device_record::{DeviceConfig, DeviceRecord};
use crate::hello::{DeviceState, HelloInfo};
use crate::image::{sign_image, ImageKind, SignedImageHeader};
use crate::mailbox;
use crate::provisioning::messages::{Receipt, StationMessage, TargetReply};
use crate::provisioning::{LoaderHello, LoaderImageHeader, ParamBlock};
use crate::trust_anchors::TrustAnchors;
use crate::uart::OsStatus;
use crate::update::boot_state::{BootState, Outcome, Phase};
use crate::update::package::{Envelope, SealedRelease};
use crate::update::receipt::StatusReceipt;
use crate::ErrorCode;

fn round_trip<'a, T: Codec<'a> + PartialEq + Debug>(value: &T, buf: &'a mut Vec<u8>) {
    *buf = value.get_encoding().unwrap();
    let n = buf.len();
    buf.push(0);
    let buf: &'a [u8] = buf;
    assert_eq!(T::read_bytes(&buf[..n]).as_ref(), Ok(value));
    // Neither a byte less nor a byte more reads as the same value (messages whose body runs
    // to the end of their frame read as another value; every other type is refused).
    assert_ne!(
        T::read_bytes(&buf[..n - 1]).as_ref(),
        Ok(value),
        "a truncated encoding of {value:?}"
    );
    assert_ne!(
        T::read_bytes(buf).as_ref(),
        Ok(value),
        "a trailing byte after {value:?}"
    );
}

macro_rules! round_trips {
    ($($value:expr),* $(,)?) => {
        $( round_trip(&$value, &mut Vec::new()); )*
    };
}

fn certificate() -> DeviceCertificate {
    CertificateBody {
        product_id: 7,
        unique_id: [1; 16],
        key_commitment: [2; 32],
        order_ref: [3; 16],
        sequence: 4,
        issued_at_ms: 5,
    }
    .sign(&ed25519_dalek::SigningKey::from_bytes(&[8; 32]))
}

fn config() -> DeviceConfig {
    DeviceConfig {
        serial: [1; 16],
        product_id: 7,
        vendor_public: [2; 32],
        authority_public: [6; 32],
        rollback_floor: 3,
        flags: 0,
    }
}

#[test]
fn every_wire_type_round_trips() {
    let vendor = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let image = sign_image(ImageKind::Os, 7, 3, 0x40200, b"body", &vendor);
    let signed = SignedImageHeader::parse(&image).unwrap();
    let header_bytes = signed.to_bytes();
    let release = SealedRelease::seal(&image, zeroize::Zeroizing::new([5; 32])).unwrap();
    let envelope = Envelope::read_bytes(
        &release
            .envelope_for(&[1; 16], 7, &[3; 32], &[8; 16])
            .unwrap(),
    )
    .unwrap();
    round_trips![
        signed.header,
        signed,
        config(),
        ParamBlock {
            station_public: [4; 32],
            job_nonce: [5; 16],
            loader_digest: [7; 32],
        },
        LoaderHello {
            loader_public: [6; 32],
            serial: [1; 16],
            loader_digest: [7; 32],
        },
        LoaderImageHeader {
            entry: 0x2000_0101,
            host_yield: 0x2000_0201,
            image_end: 0x2000_9000,
        },
        StationMessage::KeyConfirm {
            transcript_hash: [8; 32],
        },
        StationMessage::DeviceSecrets {
            config: config(),
            sealed_device_key: &[9; 80],
            certificate: certificate(),
        },
        certificate(),
        StationMessage::BeginBootloader {
            signed_header: &header_bytes,
        },
        StationMessage::ImageData {
            offset: 4096,
            data: b"piece",
        },
        StationMessage::Commit,
        StationMessage::LockDebugPort,
        StationMessage::BeginTestApp {
            signed_header: &header_bytes,
        },
        StationMessage::TestAppData {
            offset: 0,
            data: b"app",
        },
        StationMessage::RunTestApp,
        TargetReply::Ack {
            seq: 3,
            bytes_programmed: 8192,
        },
        TargetReply::Receipt(Receipt {
            serial: [1; 16],
            bootloader_digest: [2; 32],
            record_digest: [3; 32],
            bootloader_version: 4,
        }),
        TargetReply::Locked { serial: [1; 16] },
        TargetReply::TestResult {
            failed: 0,
            log: b"ok all\nPASS\n",
        },
        mailbox::Header {
            state: mailbox::State::Error,
            error: Some(ErrorCode::BadTag),
            error_raw: ErrorCode::BadTag as u32,
            out_len: 0,
            in_len: 100,
            handshake_ticks: 1,
            flash_ticks: 2,
            busy_ticks: 3,
        },
        HelloInfo {
            serial: [1; 16],
            chip_uid: [2; 16],
            product_id: 7,
            bootloader_version: 3,
            state: DeviceState::NoValidImage {
                reason: ErrorCode::Rollback,
            },
        },
        StatusReceipt::new(
            [1; 16],
            7,
            3,
            DeviceState::OsRunning { version: 2 },
            &BootState {
                outcome: Outcome::Updated,
                floor: 2,
                ..BootState::default()
            },
        ),
        BootState {
            seq: 9,
            phase: Phase::Revert,
            attempts: 2,
            outcome: Outcome::InProgress,
            floor: 1,
            new_version: 5,
            old_version: 4,
            old_pages: 10,
            new_pages: 11,
            last_error: ErrorCode::NotConfirmed as u32,
        },
        envelope,
        RecordHeader {
            device_id: [1; 8],
            epoch: 300,
            counter: 1 << 20,
        },
        CompactHeader {
            handle: [1, 2, 3],
            epoch_low: 12,
            counter: 300,
            kind: RecordKind::Rotation,
        },
        CounterState { epoch: 1, mark: 64 },
        AppHeader { entry: 0x0020_0221 },
        OsStatus::default(),
        TrustAnchors {
            vendor_public: [2; 32],
            authority_public: [3; 32],
        },
    ];
    // The device record has no `PartialEq` (it holds the key): compare encodings.
    let record = DeviceRecord {
        config: config(),
        device_key: [3; 32],
        bootloader_version: 5,
        bootloader_size: 1234,
        bootloader_digest: [4; 32],
        certificate: certificate(),
    };
    let bytes = record.to_bytes();
    assert_eq!(DeviceRecord::read_bytes(&bytes).unwrap().to_bytes(), bytes);
}

#[test]
fn encoders_refuse_what_decoders_would_refuse() {
    let long_log = [b'x'; crate::provisioning::messages::MAX_TEST_LOG + 1];
    let reply = TargetReply::TestResult {
        failed: 1,
        log: &long_log,
    };
    assert_eq!(reply.get_encoding(), Err(ErrorCode::BadLength));
    let big = std::vec![0u8; crate::provisioning::messages::MAX_IMAGE_CHUNK + 1];
    let data = StationMessage::ImageData {
        offset: 0,
        data: &big,
    };
    assert_eq!(data.get_encoding(), Err(ErrorCode::BadLength));
    let mut frame = std::vec![0x04];
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&big);
    assert_eq!(
        StationMessage::read_bytes(&frame),
        Err(ErrorCode::BadLength)
    );
}
