//! Both sides of provisioning, in process, against a simulated NOR flash.

extern crate std;
use std::vec::Vec;

use ed25519_dalek::SigningKey;
use rand_core::OsRng;
use x25519_dalek::StaticSecret;

use x25519_dalek::PublicKey;

use super::messages::{StationMessage, TargetReply};
use super::station::{StationHandshake, StationSession};
use super::target::LoaderSession;
use super::LoaderHello;
use crate::boot::verify_installed_bootloader;
use crate::certificate::{key_commitment, order_ref, CertificateBody, DeviceCertificate};
use crate::codec::Codec;
use crate::device_key_transport::{self, SEALED_DEVICE_KEY_LEN};
use crate::device_record::DeviceConfig;
use crate::flash::{NorFlash, RamFlash, RamTarget};
use crate::image::{sign_image, ImageKind, SIGNED_HEADER_LEN};
use crate::layout::{DEBUG_LOCK_ADDR, DEBUG_LOCK_MAGIC, FLASH_SIZE, TRUST_ANCHORS_OFFSET};
use crate::trust_anchors::{self, TrustAnchors};
use crate::{mailbox, ErrorCode, Serial};

const SERIAL: [u8; 16] = *b"serial-0123456ab";
const LOADER_DIGEST: [u8; 32] = [0x5A; 32];
/// The loader's ephemeral secret in these tests (its public half is in the hello).
const LOADER_SECRET: [u8; 32] = [7; 32];
const DEVICE_KEY: [u8; 32] = [0xD5; 32];
const PRODUCT: u32 = 77;

struct Rig {
    loader: LoaderSession,
    station: StationSession,
    flash: RamTarget,
    vendor: SigningKey,
    authority: SigningKey,
}

/// What the coordinator gives the station for one chip: a certificate and the key sealed to
/// this loader run.
struct Issued {
    certificate: DeviceCertificate,
    sealed: [u8; SEALED_DEVICE_KEY_LEN],
}

fn loader_public() -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(LOADER_SECRET)).to_bytes()
}

fn certify(
    authority: &SigningKey,
    uid: Serial,
    product_id: u32,
    key: &[u8; 32],
) -> DeviceCertificate {
    CertificateBody {
        product_id,
        unique_id: uid,
        key_commitment: key_commitment(key),
        order_ref: order_ref("order-1"),
        sequence: 1,
        issued_at_ms: 1,
    }
    .sign(authority)
}

fn issue(certificate: DeviceCertificate, key: &[u8; 32]) -> Issued {
    Issued {
        sealed: device_key_transport::seal(
            &loader_public(),
            &SERIAL,
            &certificate,
            key,
            &mut OsRng,
        )
        .unwrap(),
        certificate,
    }
}

impl Rig {
    fn new() -> Self {
        Self::with_station_keys(StaticSecret::random_from_rng(OsRng), None)
    }

    /// `impostor`: the station that actually talks holds this key instead of the one named in
    /// the parameter block.
    fn with_station_keys(station_key: StaticSecret, impostor: Option<StaticSecret>) -> Self {
        let hs = StationHandshake::new(station_key, [3; 16], LOADER_DIGEST);
        let params = hs.params().to_bytes();
        let mut hello = [0u8; 128];
        let (loader, n) = LoaderSession::start(&params, SERIAL, LOADER_SECRET, &mut hello).unwrap();
        let hello = LoaderHello::read_bytes(&hello[..n]).unwrap();
        let hs = match impostor {
            Some(k) => StationHandshake::new(k, [3; 16], LOADER_DIGEST),
            None => hs,
        };
        Self {
            loader,
            station: hs.complete(&hello).unwrap(),
            flash: RamTarget {
                flash: RamFlash::erased(FLASH_SIZE as usize),
                test_app: Vec::new(),
                test_outcome: (0, b"ok all\nPASS\n"),
            },
            vendor: SigningKey::from_bytes(&[0x11; 32]),
            authority: SigningKey::from_bytes(&[0x21; 32]),
        }
    }

    fn config(&self) -> DeviceConfig {
        DeviceConfig {
            serial: SERIAL,
            product_id: PRODUCT,
            vendor_public: self.vendor.verifying_key().to_bytes(),
            authority_public: self.authority.verifying_key().to_bytes(),
            rollback_floor: 1,
            flags: 0,
        }
    }

    fn anchors(&self) -> TrustAnchors {
        TrustAnchors {
            vendor_public: self.vendor.verifying_key().to_bytes(),
            authority_public: self.authority.verifying_key().to_bytes(),
        }
    }

    /// This chip's certificate and key, as the coordinator issues them.
    fn issued(&self) -> Issued {
        issue(
            certify(&self.authority, SERIAL, PRODUCT, &DEVICE_KEY),
            &DEVICE_KEY,
        )
    }

    /// `DeviceSecrets` with `config` and what was issued.
    fn send_secrets(
        &mut self,
        config: DeviceConfig,
        issued: &Issued,
    ) -> Result<TargetReply<'static>, ErrorCode> {
        self.send(&StationMessage::DeviceSecrets {
            config,
            sealed_device_key: &issued.sealed,
            certificate: issued.certificate,
        })
    }

    /// A bootloader body pinning this rig's keys.
    fn body(&self) -> Vec<u8> {
        body_pinning(&self.anchors())
    }

    fn seal(&mut self, msg: &StationMessage<'_>) -> Vec<u8> {
        self.station.seal_to_vec(msg).unwrap()
    }

    fn deliver(&mut self, mut frame: Vec<u8>) -> Result<TargetReply<'static>, ErrorCode> {
        let out = Vec::leak(std::vec![0u8; mailbox::OUT_MAX]);
        let n = self.loader.handle(&mut frame, &mut self.flash, out)?;
        Ok(self.station.open(&mut out[..n]).expect("reply opens"))
    }

    fn send(&mut self, msg: &StationMessage<'_>) -> Result<TargetReply<'static>, ErrorCode> {
        let f = self.seal(msg);
        self.deliver(f)
    }

    fn image(&self, body: &[u8]) -> Vec<u8> {
        sign_image(ImageKind::Bootloader, PRODUCT, 3, 0, body, &self.vendor)
    }

    /// Key confirmation and secrets, then the signed header.
    /// Announces `app` as the test app, signed by the vendor.
    fn begin_test_app(&mut self, app: &[u8]) {
        let signed = sign_image(
            ImageKind::TestApp,
            PRODUCT,
            1,
            crate::layout::TEST_APP_ADDR,
            app,
            &self.vendor,
        );
        let header: &[u8; SIGNED_HEADER_LEN] = signed[..SIGNED_HEADER_LEN].try_into().unwrap();
        self.send(&StationMessage::BeginTestApp {
            signed_header: header,
        })
        .unwrap();
    }

    fn begin(&mut self, image: &[u8]) -> Result<(), ErrorCode> {
        let config = self.config();
        self.begin_with(image, config)
    }

    fn begin_with(&mut self, image: &[u8], config: DeviceConfig) -> Result<(), ErrorCode> {
        let confirm = self.station.key_confirm();
        self.send(&confirm)?;
        let issued = self.issued();
        self.send_secrets(config, &issued)?;
        let header: &[u8; SIGNED_HEADER_LEN] = image[..SIGNED_HEADER_LEN].try_into().unwrap();
        self.send(&StationMessage::BeginBootloader {
            signed_header: header,
        })?;
        Ok(())
    }

    fn body_frames(&mut self, body: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        body.chunks(chunk)
            .enumerate()
            .map(|(i, data)| {
                self.seal(&StationMessage::ImageData {
                    offset: (i * chunk) as u32,
                    data,
                })
            })
            .collect()
    }

    fn assert_no_valid_bootloader(&mut self) {
        assert!(verify_installed_bootloader(&mut self.flash).is_err());
        assert!(!self.loader.is_committed());
    }
}

/// A 10,000-byte bootloader body with a trust-anchor block pinning `anchors`.
fn body_pinning(anchors: &TrustAnchors) -> Vec<u8> {
    let mut body: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let at = TRUST_ANCHORS_OFFSET as usize;
    body[at..at + trust_anchors::ANCHORS_LEN].copy_from_slice(&trust_anchors::PLACEHOLDER);
    trust_anchors::embed(&mut body, anchors).unwrap();
    body
}

#[test]
fn happy_path_installs_a_verifiable_bootloader() {
    let mut rig = Rig::new();
    let body = rig.body();
    let image = rig.image(&body);
    rig.begin(&image).unwrap();
    for f in rig.body_frames(&body, 4096) {
        rig.deliver(f).unwrap();
    }
    let TargetReply::Receipt(receipt) = rig.send(&StationMessage::Commit).unwrap() else {
        panic!("commit must answer with a receipt");
    };
    assert_eq!(receipt.serial, SERIAL);
    let record = verify_installed_bootloader(&mut rig.flash).unwrap();
    assert_eq!(record.bootloader_digest, receipt.bootloader_digest);
    assert_eq!(record.public_digest(), receipt.record_digest);
    assert_eq!(record.device_key, DEVICE_KEY);
    assert_eq!(record.certificate, rig.issued().certificate);
    assert_eq!(&rig.flash.flash.bytes[..body.len()], &body[..]);

    assert_eq!(
        rig.send(&StationMessage::LockDebugPort).unwrap(),
        TargetReply::Locked { serial: SERIAL }
    );
    let mut word = [0u8; 4];
    rig.flash.read(DEBUG_LOCK_ADDR, &mut word).unwrap();
    assert_eq!(u32::from_le_bytes(word), DEBUG_LOCK_MAGIC);
}

#[test]
fn flipped_ciphertext_bit_is_bad_tag_and_erases() {
    let mut rig = Rig::new();
    let body = rig.body();
    let image = rig.image(&body);
    rig.begin(&image).unwrap();
    let mut frames = rig.body_frames(&body, 4096);
    rig.deliver(frames.remove(0)).unwrap();
    frames[0][100] ^= 0x04;
    assert_eq!(rig.deliver(frames.remove(0)), Err(ErrorCode::BadTag));
    rig.assert_no_valid_bootloader();
    assert!(
        rig.flash.flash.bytes[..body.len()]
            .iter()
            .all(|b| *b == 0xFF),
        "partial plaintext left in flash"
    );
    assert_eq!(
        rig.send(&StationMessage::Commit),
        Err(ErrorCode::SessionAborted)
    );
}

#[test]
fn replayed_chunk_is_refused() {
    let mut rig = Rig::new();
    let body = rig.body();
    let image = rig.image(&body);
    rig.begin(&image).unwrap();
    let frames = rig.body_frames(&body, 4096);
    rig.deliver(frames[0].clone()).unwrap();
    assert_eq!(rig.deliver(frames[0].clone()), Err(ErrorCode::Replay));
    rig.assert_no_valid_bootloader();
}

#[test]
fn reordered_chunk_is_refused() {
    let mut rig = Rig::new();
    let body = rig.body();
    let image = rig.image(&body);
    rig.begin(&image).unwrap();
    let frames = rig.body_frames(&body, 4096);
    assert_eq!(rig.deliver(frames[1].clone()), Err(ErrorCode::OutOfOrder));
    rig.assert_no_valid_bootloader();
}

#[test]
fn wrong_station_key_fails_key_confirmation() {
    let mut rig = Rig::with_station_keys(
        StaticSecret::random_from_rng(OsRng),
        Some(StaticSecret::random_from_rng(OsRng)),
    );
    let confirm = rig.station.key_confirm();
    assert_eq!(rig.send(&confirm), Err(ErrorCode::KeyConfirmationFailed));
    rig.assert_no_valid_bootloader();
}

#[test]
fn truncated_image_is_refused_at_commit() {
    let mut rig = Rig::new();
    let body = rig.body();
    let image = rig.image(&body);
    rig.begin(&image).unwrap();
    // The last chunk is never sealed, so sequence numbers stay consecutive.
    for f in rig.body_frames(&body[..8192], 4096) {
        rig.deliver(f).unwrap();
    }
    assert_eq!(
        rig.send(&StationMessage::Commit),
        Err(ErrorCode::ImageIncomplete)
    );
    rig.assert_no_valid_bootloader();
}

#[test]
fn bad_vendor_signature_is_refused_before_any_write() {
    let mut rig = Rig::new();
    let body = rig.body();
    let mut image = rig.image(&body);
    image[SIGNED_HEADER_LEN - 1] ^= 1;
    assert_eq!(rig.begin(&image), Err(ErrorCode::BadSignature));
    rig.assert_no_valid_bootloader();
}

#[test]
fn image_signed_by_another_vendor_is_refused() {
    let mut rig = Rig::new();
    let body = rig.body();
    let image = sign_image(
        ImageKind::Bootloader,
        PRODUCT,
        3,
        0,
        &body,
        &SigningKey::from_bytes(&[0x12; 32]),
    );
    assert_eq!(rig.begin(&image), Err(ErrorCode::BadSignature));
}

#[test]
fn tampered_body_is_a_digest_mismatch() {
    let mut rig = Rig::new();
    let body = rig.body();
    let image = rig.image(&body);
    rig.begin(&image).unwrap();
    let mut evil = body.clone();
    evil[5000] ^= 1;
    for f in rig.body_frames(&evil, 4096) {
        rig.deliver(f).unwrap();
    }
    assert_eq!(
        rig.send(&StationMessage::Commit),
        Err(ErrorCode::DigestMismatch)
    );
    rig.assert_no_valid_bootloader();
}

#[test]
fn config_for_another_serial_is_refused() {
    let mut rig = Rig::new();
    let confirm = rig.station.key_confirm();
    rig.send(&confirm).unwrap();
    let mut config = rig.config();
    config.serial[0] ^= 1;
    let issued = rig.issued();
    let r = rig.send_secrets(config, &issued);
    assert_eq!(r, Err(ErrorCode::WrongSerial));
}

#[test]
fn messages_out_of_step_are_refused() {
    let mut rig = Rig::new();
    let confirm = rig.station.key_confirm();
    rig.send(&confirm).unwrap();
    assert_eq!(
        rig.send(&StationMessage::Commit),
        Err(ErrorCode::UnexpectedMessage)
    );
}

/// The loader binds the digest the parameter block states; a hello that echoes another one
/// (the loader read another station's block, or a stale one) is refused before any key is used.
#[test]
fn loader_digest_mismatch_is_refused_by_station() {
    let other = StationHandshake::new(StaticSecret::random_from_rng(OsRng), [3; 16], [1; 32]);
    let hs = StationHandshake::new(StaticSecret::random_from_rng(OsRng), [3; 16], [2; 32]);
    let mut hello = [0u8; 128];
    let (_, n) =
        LoaderSession::start(&other.params().to_bytes(), SERIAL, [7; 32], &mut hello).unwrap();
    let hello = LoaderHello::read_bytes(&hello[..n]).unwrap();
    assert_eq!(hello.loader_digest, [1; 32]);
    assert_eq!(hs.complete(&hello).err(), Some(ErrorCode::LoaderMismatch));
}

/// Editing the hello to echo the station's digest does not help: the loader's keys are bound
/// to the digest it read, so the first frame fails key confirmation.
#[test]
fn a_hello_edited_to_echo_the_digest_gets_no_session() {
    let hs = StationHandshake::new(StaticSecret::random_from_rng(OsRng), [3; 16], [2; 32]);
    let mut params = hs.params();
    params.loader_digest = [1; 32];
    let mut hello = [0u8; 128];
    let (mut loader, n) =
        LoaderSession::start(&params.to_bytes(), SERIAL, [7; 32], &mut hello).unwrap();
    let mut hello = LoaderHello::read_bytes(&hello[..n]).unwrap();
    hello.loader_digest = [2; 32];
    let mut station = hs.complete(&hello).unwrap();
    let confirm = station.key_confirm();
    let mut frame = station.seal_to_vec(&confirm).unwrap();
    let mut target = RamTarget {
        flash: RamFlash::erased(FLASH_SIZE as usize),
        test_app: Vec::new(),
        test_outcome: (0, b"PASS\n"),
    };
    let mut out = [0u8; 512];
    assert_eq!(
        loader.handle(&mut frame, &mut target, &mut out),
        Err(ErrorCode::KeyConfirmationFailed)
    );
}

#[test]
fn garbage_frames_are_refused_not_panicking() {
    let mut rig = Rig::new();
    for len in [0usize, 1, 5, 6, 21, 22, 100] {
        let mut rig2 = Rig::new();
        let mut junk = std::vec![0xAB; len];
        let mut out = [0u8; mailbox::OUT_MAX];
        let _ = &mut rig2.flash.flash;
        assert!(rig2
            .loader
            .handle(&mut junk, &mut rig2.flash, &mut out)
            .is_err());
    }
    let confirm = rig.station.key_confirm();
    rig.send(&confirm).unwrap();
}

fn committed_rig() -> Rig {
    let mut rig = Rig::new();
    let body = rig.body();
    let image = rig.image(&body);
    rig.begin(&image).unwrap();
    for f in rig.body_frames(&body, 4096) {
        rig.deliver(f).unwrap();
    }
    rig.send(&StationMessage::Commit).unwrap();
    rig
}

#[test]
fn test_app_is_verified_loaded_and_run() {
    let mut rig = committed_rig();
    let app: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    rig.begin_test_app(&app);
    for (i, data) in app.chunks(1024).enumerate() {
        rig.send(&StationMessage::TestAppData {
            offset: (i * 1024) as u32,
            data,
        })
        .unwrap();
    }
    assert_eq!(
        rig.send(&StationMessage::RunTestApp).unwrap(),
        TargetReply::TestResult {
            failed: 0,
            log: b"ok all\nPASS\n"
        }
    );
    assert_eq!(rig.flash.test_app, app);
    assert!(matches!(
        rig.send(&StationMessage::LockDebugPort),
        Ok(TargetReply::Locked { .. })
    ));
}

#[test]
fn unsigned_or_tampered_test_app_is_refused() {
    use crate::layout::TEST_APP_ADDR;
    let mut rig = committed_rig();
    let app = [0x55u8; 2000];
    let other = SigningKey::from_bytes(&[0x77; 32]);
    let signed = sign_image(ImageKind::TestApp, PRODUCT, 1, TEST_APP_ADDR, &app, &other);
    let header: &[u8; SIGNED_HEADER_LEN] = signed[..SIGNED_HEADER_LEN].try_into().unwrap();
    assert_eq!(
        rig.send(&StationMessage::BeginTestApp {
            signed_header: header
        }),
        Err(ErrorCode::BadSignature)
    );

    let mut rig = committed_rig();
    rig.begin_test_app(&app);
    let mut evil = app;
    evil[7] ^= 1;
    rig.send(&StationMessage::TestAppData {
        offset: 0,
        data: &evil,
    })
    .unwrap();
    assert_eq!(
        rig.send(&StationMessage::RunTestApp),
        Err(ErrorCode::DigestMismatch)
    );
}

#[test]
fn an_error_after_commit_ends_the_session_but_keeps_the_installed_bootloader() {
    let mut rig = committed_rig();
    let image = rig.image(&rig.body());
    let header: &[u8; SIGNED_HEADER_LEN] = image[..SIGNED_HEADER_LEN].try_into().unwrap();
    // A second bootloader after commit is out of step.
    assert_eq!(
        rig.send(&StationMessage::BeginBootloader {
            signed_header: header
        }),
        Err(ErrorCode::UnexpectedMessage)
    );
    let record = verify_installed_bootloader(&mut rig.flash).expect("still installed");
    assert_eq!(record.device_key, DEVICE_KEY);
    assert!(!rig.loader.is_committed(), "the session is over");
    assert_eq!(
        rig.send(&StationMessage::LockDebugPort),
        Err(ErrorCode::SessionAborted)
    );
}

#[test]
fn secrets_are_taken_once_and_only_after_key_confirmation() {
    let mut rig = Rig::new();
    let config = rig.config();
    let issued = rig.issued();
    let secrets = StationMessage::DeviceSecrets {
        config,
        sealed_device_key: &issued.sealed,
        certificate: issued.certificate,
    };
    // Before key confirmation: refused, and the session is over.
    assert_eq!(rig.send(&secrets), Err(ErrorCode::UnexpectedMessage));
    assert_eq!(rig.send(&secrets), Err(ErrorCode::SessionAborted));

    let mut rig = Rig::new();
    let confirm = rig.station.key_confirm();
    rig.send(&confirm).unwrap();
    rig.send(&secrets).unwrap();
    assert_eq!(rig.send(&secrets), Err(ErrorCode::UnexpectedMessage));
}

/// Key confirmation, then `DeviceSecrets` with `issued`.
fn secrets_with(rig: &mut Rig, config: DeviceConfig, issued: &Issued) -> Result<(), ErrorCode> {
    let confirm = rig.station.key_confirm();
    rig.send(&confirm).unwrap();
    rig.send_secrets(config, issued).map(drop)
}

#[test]
fn a_key_sealed_to_another_loader_run_is_wrong_device() {
    let mut rig = Rig::new();
    let certificate = certify(&rig.authority, SERIAL, PRODUCT, &DEVICE_KEY);
    let other_run = PublicKey::from(&StaticSecret::from([8u8; 32])).to_bytes();
    let sealed =
        device_key_transport::seal(&other_run, &SERIAL, &certificate, &DEVICE_KEY, &mut OsRng)
            .unwrap();
    let issued = Issued {
        certificate,
        sealed,
    };
    let config = rig.config();
    assert_eq!(
        secrets_with(&mut rig, config, &issued),
        Err(ErrorCode::WrongDevice)
    );
    assert!(rig.loader.is_over());
}

#[test]
fn a_certificate_of_another_chip_product_or_key_is_a_mismatch() {
    let other_key = [0xD6; 32];
    let authority = SigningKey::from_bytes(&[0x21; 32]);
    for (what, certificate) in [
        (
            "another chip",
            certify(&authority, [9; 16], PRODUCT, &DEVICE_KEY),
        ),
        (
            "another product",
            certify(&authority, SERIAL, PRODUCT + 1, &DEVICE_KEY),
        ),
        (
            "another key",
            certify(&authority, SERIAL, PRODUCT, &other_key),
        ),
    ] {
        let mut rig = Rig::new();
        let config = rig.config();
        assert_eq!(
            secrets_with(&mut rig, config, &issue(certificate, &DEVICE_KEY)),
            Err(ErrorCode::CertificateMismatch),
            "{what}"
        );
    }
    // The configuration's product must be the certificate's.
    let mut rig = Rig::new();
    let mut config = rig.config();
    config.product_id += 1;
    let issued = rig.issued();
    assert_eq!(
        secrets_with(&mut rig, config, &issued),
        Err(ErrorCode::CertificateMismatch)
    );
}

/// Installs `image` with `config` to the end, returning the first refusal.
fn install(rig: &mut Rig, image: &[u8], config: DeviceConfig) -> Result<(), ErrorCode> {
    rig.begin_with(image, config)?;
    let body = image[SIGNED_HEADER_LEN..].to_vec();
    for f in rig.body_frames(&body, 512) {
        rig.deliver(f)?;
    }
    rig.send(&StationMessage::Commit).map(drop)
}

#[test]
fn a_bootloader_pinning_other_keys_is_refused_before_the_rest_is_written() {
    let mut rig = Rig::new();
    let other = SigningKey::from_bytes(&[0x22; 32])
        .verifying_key()
        .to_bytes();
    let swapped = [
        TrustAnchors {
            authority_public: other,
            ..rig.anchors()
        },
        TrustAnchors {
            vendor_public: other,
            ..rig.anchors()
        },
    ];
    for anchors in swapped {
        let mut rig = Rig::new();
        let image = rig.image(&body_pinning(&anchors));
        let config = rig.config();
        assert_eq!(
            install(&mut rig, &image, config),
            Err(ErrorCode::TrustAnchorMismatch)
        );
        rig.assert_no_valid_bootloader();
        assert!(
            rig.flash.flash.bytes[..10_000].iter().all(|b| *b == 0xFF),
            "nothing of it left in flash"
        );
    }
    // Not linked with a block at all: no anchors to pin.
    let plain: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let image = rig.image(&plain);
    let config = rig.config();
    assert_eq!(
        install(&mut rig, &image, config),
        Err(ErrorCode::NoTrustAnchors)
    );
    rig.assert_no_valid_bootloader();
    // Too short to hold the block.
    let mut rig = Rig::new();
    let image = rig.image(&[0x11; 512]);
    let config = rig.config();
    assert_eq!(
        install(&mut rig, &image, config),
        Err(ErrorCode::NoTrustAnchors)
    );
    rig.assert_no_valid_bootloader();
}

#[test]
fn device_secrets_naming_other_keys_are_refused() {
    // The station names its own vendor key and re-signs the vendor's bootloader with it: the
    // body still pins the vendor's keys.
    let mut rig = Rig::new();
    let station_key = SigningKey::from_bytes(&[0x66; 32]);
    let body = rig.body();
    let resigned = sign_image(ImageKind::Bootloader, PRODUCT, 3, 0, &body, &station_key);
    let mut config = rig.config();
    config.vendor_public = station_key.verifying_key().to_bytes();
    assert_eq!(
        install(&mut rig, &resigned, config),
        Err(ErrorCode::TrustAnchorMismatch)
    );
    rig.assert_no_valid_bootloader();
    // Another vendor key with the vendor's own signature: the header does not verify under it.
    let mut rig = Rig::new();
    let image = rig.image(&rig.body());
    let mut config = rig.config();
    config.vendor_public = station_key.verifying_key().to_bytes();
    assert_eq!(
        install(&mut rig, &image, config),
        Err(ErrorCode::BadSignature)
    );
    // Another authority key (the station's own certificates): the bootloader pins the product's.
    let mut rig = Rig::new();
    let image = rig.image(&rig.body());
    let mut config = rig.config();
    config.authority_public = station_key.verifying_key().to_bytes();
    assert_eq!(
        install(&mut rig, &image, config),
        Err(ErrorCode::TrustAnchorMismatch)
    );
    rig.assert_no_valid_bootloader();
}

#[test]
fn the_test_app_is_hashed_from_the_ram_it_runs_from() {
    let mut rig = committed_rig();
    let app: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    rig.begin_test_app(&app);
    rig.send(&StationMessage::TestAppData {
        offset: 0,
        data: &app,
    })
    .unwrap();
    // Between two turns of the debug link, someone on it rewrites the loaded app in RAM.
    rig.flash.test_app[100] ^= 0xFF;
    assert_eq!(
        rig.send(&StationMessage::RunTestApp),
        Err(ErrorCode::DigestMismatch)
    );
}

#[test]
fn the_session_ends_and_forgets_its_keys_after_the_lock_and_after_a_failed_test() {
    let mut rig = committed_rig();
    rig.send(&StationMessage::LockDebugPort).unwrap();
    assert!(rig.loader.is_over());
    assert_eq!(
        rig.send(&StationMessage::LockDebugPort),
        Err(ErrorCode::SessionAborted)
    );

    let mut rig = committed_rig();
    rig.flash.test_outcome = (2, b"FAIL x\n");
    let app = [0x42u8; 64];
    rig.begin_test_app(&app);
    rig.send(&StationMessage::TestAppData {
        offset: 0,
        data: &app,
    })
    .unwrap();
    assert!(matches!(
        rig.send(&StationMessage::RunTestApp),
        Ok(TargetReply::TestResult { failed: 2, .. })
    ));
    assert!(
        rig.loader.is_over(),
        "a failed board is not locked: nothing more"
    );
}
