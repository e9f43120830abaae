//! Property tests over [`Codec`]: for every wire type, values drawn at random encode and decode
//! back to themselves (`decode(encode(x)) == x`, filling exactly the encoding), and any byte
//! string decodes without a panic — to an error, or to a value that re-encodes to something
//! decoding the same. `round_trips.rs` has the fixed cases; `fuzz/` runs the same oracles
//! coverage-guided.

extern crate std;
use core::fmt::Debug;
use core::num::NonZeroU32;
use std::vec::Vec;

use proptest::prelude::*;

use crate::app::AppHeader;
use crate::certificate::{CertificateBody, DeviceCertificate};
use crate::codec::Codec;
use crate::data_stream::{CounterState, RecordHeader};
use crate::device_key_transport::SEALED_DEVICE_KEY_LEN;
use crate::device_record::{DeviceConfig, DeviceRecord};
use crate::hello::{DeviceState, HelloInfo};
use crate::image::{ImageHeader, ImageKind, SignedImageHeader, SIGNED_HEADER_LEN};
use crate::mailbox;
use crate::provisioning::messages::{Receipt, StationMessage, TargetReply};
use crate::provisioning::{LoaderHello, LoaderImageHeader, ParamBlock};
use crate::trust_anchors::TrustAnchors;
use crate::uart::{DeviceMessage, MsgType, OsStatus, Request, MAX_PAYLOAD};
use crate::update::boot_state::{BootState, Outcome, Phase};
use crate::update::package::{chunk_count, Envelope, CHUNK_SIZE};
use crate::update::receipt::StatusReceipt;
use crate::{hello, update::receipt as status, ErrorCode};

/// `decode(encode(x)) == x`, and the decoder consumes exactly the encoding.
fn round_trips<'a, T: Codec<'a> + PartialEq + Debug>(value: &T, buf: &'a mut Vec<u8>) {
    *buf = value.get_encoding().expect("a generated value encodes");
    let buf: &'a [u8] = buf;
    let mut r = crate::codec::Reader::new(buf);
    assert_eq!(T::read(&mut r).as_ref(), Ok(value));
    assert_eq!(r.remaining(), 0, "{value:?} left bytes unread");
}

/// Any bytes: an error, or a value whose encoding decodes to the same value.
fn decodes_safely<'a, T: Codec<'a> + PartialEq + Debug>(bytes: &'a [u8], buf: &'a mut Vec<u8>) {
    let Ok(value) = T::read_bytes(bytes) else {
        return;
    };
    *buf = value.get_encoding().expect("a decoded value encodes");
    assert_eq!(T::read_bytes(buf).as_ref(), Ok(&value));
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL)
}

fn image_kind() -> impl Strategy<Value = ImageKind> {
    proptest::sample::select(&ImageKind::ALL[..])
}

fn outcome() -> impl Strategy<Value = Outcome> {
    (0u8..4).prop_map(|v| Outcome::from_u8(v).expect("0..4 are outcomes"))
}

fn phase() -> impl Strategy<Value = Phase> {
    proptest::sample::select(
        &[
            Phase::Idle,
            Phase::Backup,
            Phase::Copy,
            Phase::Trial,
            Phase::Revert,
        ][..],
    )
}

prop_compose! {
    fn boot_state()(seq in any::<u32>(), phase in phase(), attempts in any::<u8>(),
        outcome in outcome(), versions in any::<[u32; 4]>(), pages in any::<[u16; 2]>())
        -> BootState {
        BootState {
            seq, phase, attempts, outcome,
            floor: versions[0], new_version: versions[1], old_version: versions[2],
            old_pages: pages[0], new_pages: pages[1], last_error: versions[3],
        }
    }
}

fn device_state() -> impl Strategy<Value = DeviceState> {
    prop_oneof![
        error_code().prop_map(|reason| DeviceState::NoValidImage { reason }),
        any::<u32>().prop_map(|version| DeviceState::OsRunning { version }),
    ]
}

prop_compose! {
    fn device_config()(serial in any::<[u8; 16]>(), product_id in any::<u32>(),
        keys in (any::<[u8; 32]>(), any::<[u8; 32]>()), rollback_floor in any::<u32>(), flags in any::<u32>())
        -> DeviceConfig {
        DeviceConfig { serial, product_id, vendor_public: keys.0, authority_public: keys.1, rollback_floor, flags }
    }
}

prop_compose! {
    fn certificate()(seed in any::<[u8; 32]>(), unique_id in any::<[u8; 16]>(), product_id in any::<u32>(),
        key_commitment in any::<[u8; 32]>(), order_ref in any::<[u8; 16]>(), sequence in any::<u32>(),
        issued_at_ms in any::<u64>())
        -> DeviceCertificate {
        CertificateBody { product_id, unique_id, key_commitment, order_ref, sequence, issued_at_ms }
            .sign(&ed25519_dalek::SigningKey::from_bytes(&seed))
    }
}

prop_compose! {
    fn image_header()(kind in image_kind(), product_id in any::<u32>(), version in any::<u32>(),
        load_addr in any::<u32>(), body_size in any::<u32>(), body_digest in any::<[u8; 32]>())
        -> ImageHeader {
        ImageHeader { kind, product_id, version, load_addr, body_size, body_digest }
    }
}

prop_compose! {
    fn signed_image_header()(header in image_header(), signature in proptest::collection::vec(any::<u8>(), 64))
        -> SignedImageHeader {
        SignedImageHeader::new(header, signature.try_into().expect("64 bytes"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn fixed_layout_types_round_trip(
        entry in any::<u32>(),
        counter in (any::<u32>(), any::<u32>()),
        anchors in (any::<[u8; 32]>(), any::<[u8; 32]>()),
        config in device_config(),
        secrets in (any::<[u8; 32]>(), any::<u32>(), any::<u32>(), any::<[u8; 32]>()),
        receipt in (any::<[u8; 16]>(), any::<[u8; 32]>(), any::<[u8; 32]>(), any::<u32>()),
        loader in (any::<u32>(), any::<u32>(), any::<u32>()),
        hello in (any::<[u8; 32]>(), any::<[u8; 16]>(), any::<[u8; 32]>()),
        params in (any::<[u8; 32]>(), any::<[u8; 16]>(), any::<[u8; 32]>()),
        certificate in certificate(),
    ) {
        round_trips(&AppHeader { entry }, &mut Vec::new());
        round_trips(&CounterState { epoch: counter.0, mark: counter.1 }, &mut Vec::new());
        round_trips(&TrustAnchors { vendor_public: anchors.0, authority_public: anchors.1 }, &mut Vec::new());
        round_trips(&config, &mut Vec::new());
        // A device record holds the device key and has no `PartialEq`: compare encodings.
        let record = DeviceRecord {
            config,
            device_key: secrets.0,
            bootloader_version: secrets.1,
            bootloader_size: secrets.2,
            bootloader_digest: secrets.3,
            certificate,
        };
        let encoded = record.get_encoding().expect("a record encodes");
        let read = DeviceRecord::read_bytes(&encoded).expect("a record decodes");
        prop_assert_eq!(read.get_encoding(), Ok(encoded));
        round_trips(&Receipt {
            serial: receipt.0,
            bootloader_digest: receipt.1,
            record_digest: receipt.2,
            bootloader_version: receipt.3,
        }, &mut Vec::new());
        round_trips(&LoaderImageHeader { entry: loader.0, host_yield: loader.1, image_end: loader.2 }, &mut Vec::new());
        round_trips(&LoaderHello { loader_public: hello.0, serial: hello.1, loader_digest: hello.2 }, &mut Vec::new());
        round_trips(&ParamBlock { station_public: params.0, job_nonce: params.1, loader_digest: params.2 }, &mut Vec::new());
    }

    #[test]
    fn headers_and_identities_round_trip(
        header in signed_image_header(),
        serial in any::<[u8; 16]>(),
        product_id in any::<u32>(),
        bootloader_version in any::<u32>(),
        state in device_state(),
        outcome in outcome(),
        small in (any::<u8>(), any::<u8>()),
        versions in (any::<u32>(), any::<u32>(), any::<u32>()),
        record in (any::<[u8; 8]>(), any::<u32>(), any::<u32>()),
        boot in boot_state(),
    ) {
        round_trips(&boot, &mut Vec::new());
        round_trips(&header.header, &mut Vec::new());
        round_trips(&header, &mut Vec::new());
        round_trips(&HelloInfo { serial, chip_uid: record_uid(serial, small.0), product_id, bootloader_version, state }, &mut Vec::new());
        round_trips(&StatusReceipt {
            serial,
            product_id,
            bootloader_version,
            state,
            outcome,
            phase: small.0,
            attempts: small.1,
            floor: versions.0,
            new_version: versions.1,
            last_error: versions.2,
        }, &mut Vec::new());
        round_trips(&RecordHeader { device_id: record.0, epoch: record.1, counter: record.2 }, &mut Vec::new());
    }

    #[test]
    fn envelopes_round_trip(
        header in signed_image_header(),
        serial in any::<[u8; 16]>(),
        product_id in any::<u32>(),
        package_nonce in any::<[u8; 16]>(),
        wrapped_key in proptest::collection::vec(any::<u8>(), 48),
    ) {
        let envelope = Envelope {
            serial,
            product_id,
            chunk_size: CHUNK_SIZE,
            chunk_count: chunk_count(header.header.body_size),
            package_nonce,
            signed_header: header,
            wrapped_key: wrapped_key.try_into().expect("48 bytes"),
        };
        round_trips(&envelope, &mut Vec::new());
    }

    #[test]
    fn uart_requests_round_trip(
        variant in 0u8..15,
        challenge in any::<[u8; 32]>(),
        index in any::<u32>(),
        body in bytes(MAX_PAYLOAD - 4),
        count in any::<u8>(),
    ) {
        let request = match variant {
            0 => Request::Hello { challenge },
            1 => Request::Status { challenge },
            2 => Request::EnterUpdate,
            3 => Request::UpdateBegin { envelope: &body },
            4 => Request::UpdateChunk { index, sealed: &body },
            5 => Request::UpdateFinish,
            6 => Request::UpdateInstall { halt_after: NonZeroU32::new(index) },
            7 => Request::DataEmit { count },
            8 => Request::DataRotate,
            9 => Request::OsStatus,
            10 => Request::AppPackageBegin { envelope: &body },
            11 => Request::AppPackageChunk { index, sealed: &body },
            12 => Request::AppCommit,
            13 => Request::AppStatus { challenge },
            _ => Request::AppStart,
        };
        // A request's body must fit the frame it travels in; what encodes reads back.
        if let Ok(encoded) = request.get_encoding() {
            prop_assert_eq!(Request::read_bytes(&encoded), Ok(request));
        }
    }

    #[test]
    fn device_messages_round_trip(
        variant in 0u8..16,
        numbers in (any::<u32>(), any::<u32>()),
        body in bytes(MAX_PAYLOAD),
        hello_raw in proptest::collection::vec(any::<u8>(), hello::RESPONSE_LEN),
        receipt_raw in proptest::collection::vec(any::<u8>(), status::RECEIPT_LEN),
        code in error_code(),
        status in (any::<u64>(), any::<[u32; 6]>()),
        step in any::<u8>(),
    ) {
        let hello_raw: &[u8; hello::RESPONSE_LEN] = hello_raw.as_slice().try_into().expect("sized");
        let receipt_raw: &[u8; status::RECEIPT_LEN] = receipt_raw.as_slice().try_into().expect("sized");
        let (next, count) = numbers;
        let message = match variant {
            0 => DeviceMessage::HelloResponse(hello_raw),
            1 => DeviceMessage::BootBanner(&body),
            2 => DeviceMessage::Error(code),
            3 => DeviceMessage::UpdateMode,
            4 => DeviceMessage::UpdateReady { next, count },
            5 => DeviceMessage::ChunkAck { next },
            6 => DeviceMessage::UpdateStaged { version: next },
            7 => DeviceMessage::UpdateInstalled { version: next },
            8 => DeviceMessage::InstallHalted { step: next },
            9 => DeviceMessage::StatusReceipt(receipt_raw),
            10 => DeviceMessage::DataRecord(&body),
            11 => DeviceMessage::OsStatusReply(OsStatus {
                uptime_ticks: status.0,
                epoch: status.1[0],
                next_counter: status.1[1],
                apps_started: status.1[2],
                app_version: status.1[3],
                last_app_status: status.1[4],
                first_record_ticks: status.1[5],
            }),
            12 => DeviceMessage::AppLog(&body),
            13 => match MsgType::try_from(step) {
                Ok(step) => DeviceMessage::AppAck { step, value: next },
                Err(_) => DeviceMessage::UpdateMode,
            },
            14 => DeviceMessage::AppReceipt(
                receipt_raw[..crate::app::receipt::APP_RECEIPT_LEN].try_into().expect("sized"),
            ),
            _ => DeviceMessage::BenchReport(&body),
        };
        if let Ok(encoded) = message.get_encoding() {
            prop_assert_eq!(DeviceMessage::read_bytes(&encoded), Ok(message));
        }
    }

    #[test]
    fn provisioning_messages_round_trip(
        variant in 0u8..13,
        hash in any::<[u8; 32]>(),
        config in device_config(),
        offset in any::<u32>(),
        data in bytes(mailbox::IN_MAX),
        signed in proptest::collection::vec(any::<u8>(), SIGNED_HEADER_LEN),
        receipt in (any::<[u8; 16]>(), any::<[u8; 32]>(), any::<[u8; 32]>(), any::<u32>()),
        sealed in proptest::collection::vec(any::<u8>(), SEALED_DEVICE_KEY_LEN),
        certificate in certificate(),
    ) {
        let sealed: &[u8; SEALED_DEVICE_KEY_LEN] = sealed.as_slice().try_into().expect("sized");
        let signed: &[u8; SIGNED_HEADER_LEN] = signed.as_slice().try_into().expect("sized");
        let request = match variant {
            0 => Some(StationMessage::KeyConfirm { transcript_hash: hash }),
            1 => Some(StationMessage::DeviceSecrets { config, sealed_device_key: sealed, certificate }),
            2 => Some(StationMessage::BeginBootloader { signed_header: signed }),
            3 => Some(StationMessage::ImageData { offset, data: &data }),
            4 => Some(StationMessage::Commit),
            5 => Some(StationMessage::LockDebugPort),
            6 => Some(StationMessage::BeginTestApp { signed_header: signed }),
            7 => Some(StationMessage::TestAppData { offset, data: &data }),
            8 => Some(StationMessage::RunTestApp),
            _ => None,
        };
        if let Some(request) = request {
            if let Ok(encoded) = request.get_encoding() {
                prop_assert_eq!(StationMessage::read_bytes(&encoded), Ok(request));
            }
        }
        let reply = match variant % 4 {
            0 => TargetReply::Ack { seq: offset, bytes_programmed: receipt.3 },
            1 => TargetReply::Receipt(Receipt {
                serial: receipt.0,
                bootloader_digest: receipt.1,
                record_digest: receipt.2,
                bootloader_version: receipt.3,
            }),
            2 => TargetReply::Locked { serial: receipt.0 },
            _ => TargetReply::TestResult { failed: offset, log: &data },
        };
        if let Ok(encoded) = reply.get_encoding() {
            prop_assert_eq!(TargetReply::read_bytes(&encoded), Ok(reply));
        }
    }

    #[test]
    fn any_bytes_decode_without_panicking(input in bytes(600)) {
        decodes_safely::<AppHeader>(&input, &mut Vec::new());
        decodes_safely::<BootState>(&input, &mut Vec::new());
        decodes_safely::<StatusReceipt>(&input, &mut Vec::new());
        decodes_safely::<DeviceConfig>(&input, &mut Vec::new());
        if let Ok(record) = DeviceRecord::read_bytes(&input) {
            let encoded = record.get_encoding().expect("a decoded record encodes");
            prop_assert_eq!(DeviceRecord::read_bytes(&encoded).map(|r| r.config), Ok(record.config));
        }
        decodes_safely::<mailbox::Header>(&input, &mut Vec::new());
        decodes_safely::<ImageHeader>(&input, &mut Vec::new());
        decodes_safely::<SignedImageHeader>(&input, &mut Vec::new());
        decodes_safely::<CounterState>(&input, &mut Vec::new());
        decodes_safely::<RecordHeader>(&input, &mut Vec::new());
        decodes_safely::<crate::data_stream::CompactHeader>(&input, &mut Vec::new());
        decodes_safely::<HelloInfo>(&input, &mut Vec::new());
        decodes_safely::<TrustAnchors>(&input, &mut Vec::new());
        decodes_safely::<StationMessage<'_>>(&input, &mut Vec::new());
        decodes_safely::<Receipt>(&input, &mut Vec::new());
        decodes_safely::<TargetReply<'_>>(&input, &mut Vec::new());
        decodes_safely::<LoaderImageHeader>(&input, &mut Vec::new());
        decodes_safely::<ParamBlock>(&input, &mut Vec::new());
        decodes_safely::<LoaderHello>(&input, &mut Vec::new());
        decodes_safely::<Envelope>(&input, &mut Vec::new());
        decodes_safely::<Request<'_>>(&input, &mut Vec::new());
        decodes_safely::<DeviceMessage<'_>>(&input, &mut Vec::new());
        decodes_safely::<OsStatus>(&input, &mut Vec::new());
    }

    /// Stateful decoders must not panic either: a frame decoder fed any line noise yields only
    /// frames whose checksum held, and a data record of any bytes is refused or opens.
    #[test]
    fn stream_decoders_never_panic(input in bytes(2000), key in any::<[u8; 32]>()) {
        let mut decoder = crate::uart::FrameDecoder::new();
        for b in &input {
            if let Some(Ok(frame)) = decoder.push(*b) {
                prop_assert!(frame.body().len() <= MAX_PAYLOAD + 3);
            }
        }
        let mut record = input.clone();
        let _ = crate::data_stream::open_in_place(&key, &mut record);
        let _ = crate::sealed_frame::open_in_place(&key, 0, &mut record);
    }
}

/// Any data record the sealer produces opens to the same header, kind and body.
mod data_records {
    use super::*;
    use crate::data_stream::{open_in_place, seal, RecordKind, MAX_BODY_LEN, MAX_RECORD_LEN};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn sealed_records_open_to_what_was_sealed(
            key in any::<[u8; 32]>(),
            device_id in any::<[u8; 8]>(),
            epoch in any::<u32>(),
            counter in any::<u32>(),
            body in bytes(MAX_BODY_LEN + 1),
        ) {
            let header = RecordHeader { device_id, epoch, counter };
            let mut out = std::vec![0u8; MAX_RECORD_LEN];
            let n = seal(&key, &header, RecordKind::Telemetry, &body, &mut out)
                .expect("a body up to the maximum seals");
            let opened = open_in_place(&key, &mut out[..n]).expect("a sealed record opens");
            prop_assert_eq!(opened.header, crate::data_stream::Header::V1(header));
            prop_assert_eq!(opened.kind, RecordKind::Telemetry);
            prop_assert_eq!(&out[opened.body], &body[..]);
        }

        #[test]
        fn compact_records_open_to_what_was_sealed(
            key in any::<[u8; 32]>(),
            serial in any::<[u8; 16]>(),
            epoch in any::<u32>(),
            counter in any::<u16>(),
            rotation in any::<bool>(),
            body in bytes(MAX_BODY_LEN + 1),
        ) {
            use crate::data_stream::{seal_compact, CompactHeader, Header};
            let kind = if rotation { RecordKind::Rotation } else { RecordKind::Telemetry };
            let body = if rotation { &body[..body.len().min(4)] } else { &body[..] };
            let header = CompactHeader::new(&serial, epoch, u32::from(counter), kind)
                .expect("a 16-bit counter fits");
            let mut out = std::vec![0u8; MAX_RECORD_LEN];
            let n = seal_compact(&key, &header, body, &mut out).expect("a body up to the maximum seals");
            match open_in_place(&key, &mut out[..n]) {
                Ok(opened) => {
                    prop_assert_eq!(opened.header, Header::V2(header));
                    prop_assert_eq!(opened.kind, kind);
                    prop_assert_eq!(&out[opened.body], body);
                }
                // A rotation whose body is not 4 bytes is refused after its tag verified.
                Err(code) => prop_assert!(rotation && body.len() != 4 && code == crate::ErrorCode::DataMalformed),
            }
        }
    }
}

/// A chip id equal to `serial` or not (a clone's hello names another chip).
fn record_uid(serial: [u8; 16], pick: u8) -> [u8; 16] {
    if pick % 2 == 0 {
        serial
    } else {
        let mut other = serial;
        other[0] ^= 0x5A;
        other
    }
}
