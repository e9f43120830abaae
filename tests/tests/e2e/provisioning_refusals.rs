//! Tampering on the debug link (a [`FaultyProbe`](flashgate_tests::faults::FaultyProbe) under
//! the station's own flow) and a station that breaks the protocol on purpose: each refused by
//! the real loader with its own error code, and the board left without a valid bootloader,
//! unlocked, with no plaintext left in flash.

use flashgate_protocol::boot::verify_installed_bootloader;
use flashgate_protocol::image::SIGNED_HEADER_LEN;
use flashgate_protocol::ErrorCode;
use flashgate_station::fixture::TargetFixture;
use flashgate_station::provisioning::{OrderPlan, ProvisioningError, Step, TargetFault};
use flashgate_tests::bay::TestBay;
use flashgate_tests::faults::{image_frame, LinkFault};
use flashgate_tests::malicious_station::{provision_misbehaving, Misbehaviour};
use flashgate_tests::{persisted_flash, provision, Firmware, Vendor, STEP_TIMEOUT};

use crate::PRODUCT_ID;

/// What an attack attempt is.
enum Attack {
    /// Through the factory's flow, with the link tampered with.
    Link(LinkFault),
    /// Through the factory's flow, with a bootloader whose signature is broken.
    BadSignature,
    /// A station misbehaving itself.
    Station(Misbehaviour),
}

/// Runs `attack` on a fresh board; returns the error, after checking the board holds no valid
/// bootloader, no plaintext, and stays unlocked.
fn refused(attack: Attack) -> ProvisioningError {
    let fw = Firmware::load();
    let vendor = Vendor::new(PRODUCT_ID);
    let keys = vendor.issuer();
    let plan = vendor.plan(&fw, 3);
    let (bay, err) = match attack {
        Attack::Link(fault) => {
            let mut bay = TestBay::new("e2e").with_fault(0, fault);
            let failed = provision(&mut bay, plan, keys).expect_err("the target must refuse");
            assert!(failed.serial.is_some(), "refused after the handshake");
            (bay, failed.error)
        }
        Attack::BadSignature => {
            let mut image = plan.bootloader().to_vec();
            image[SIGNED_HEADER_LEN - 5] ^= 0x01;
            let plan = OrderPlan::new(fw.loader.clone(), image, PRODUCT_ID).unwrap();
            let mut bay = TestBay::new("e2e");
            let failed = provision(&mut bay, plan, keys).expect_err("the target must refuse");
            assert_eq!(failed.step, Step::Transfer);
            (bay, failed.error)
        }
        Attack::Station(how) => {
            let mut bay = TestBay::new("e2e");
            let mut probe = bay.attach_next(STEP_TIMEOUT).unwrap();
            let err = provision_misbehaving(&mut *probe, &plan, &*keys, how, STEP_TIMEOUT)
                .expect("the target must refuse");
            drop(probe);
            bay.detach();
            (bay, err)
        }
    };
    let files = bay.board_files(0);
    let flash = &mut persisted_flash(&files);
    assert!(
        verify_installed_bootloader(flash).is_err(),
        "after {err} the board must not hold a valid bootloader"
    );
    assert!(
        !files.is_debug_locked().unwrap(),
        "a failed board stays unlocked"
    );
    // No plaintext bootloader piece may stay readable through the open debug port.
    let region = &flash.bytes[8..fw.bootloader.len()];
    assert!(
        region.iter().all(|b| *b == 0xFF),
        "partially written bootloader left in flash after {err}"
    );
    err
}

fn assert_target_refused(err: ProvisioningError, want: ErrorCode) {
    assert_eq!(
        err.refusal(),
        Some(want),
        "expected the target to refuse with {want}, got: {err}"
    );
}

#[test]
fn flipped_ciphertext_bit_is_refused() {
    assert_target_refused(
        refused(Attack::Link(LinkFault::FlipCiphertextBit {
            frame: image_frame(3),
        })),
        ErrorCode::BadTag,
    );
}

#[test]
fn replayed_chunk_is_refused() {
    assert_target_refused(
        refused(Attack::Link(LinkFault::ReplayFrame {
            frame: image_frame(2),
        })),
        ErrorCode::Replay,
    );
}

#[test]
fn reordered_chunk_is_refused() {
    assert_target_refused(
        refused(Attack::Station(Misbehaviour::SwapChunks { chunk: 1 })),
        ErrorCode::OutOfOrder,
    );
}

#[test]
fn wrong_station_key_is_refused() {
    assert_target_refused(
        refused(Attack::Link(LinkFault::ImpostorStationKey)),
        ErrorCode::KeyConfirmationFailed,
    );
}

#[test]
fn truncated_image_is_refused() {
    assert_target_refused(
        refused(Attack::Station(Misbehaviour::TruncateImage {
            bytes_missing: 5000,
        })),
        ErrorCode::ImageIncomplete,
    );
}

#[test]
fn bad_vendor_signature_is_refused() {
    assert_target_refused(refused(Attack::BadSignature), ErrorCode::BadSignature);
}

/// The loader no longer hashes itself: the station reads back what it wrote, so a loader
/// image corrupted on the way into RAM is refused before it runs (no hello, nothing written
/// to flash, no certificate asked for).
#[test]
fn a_loader_corrupted_on_its_way_into_ram_never_runs() {
    let fw = Firmware::load();
    let vendor = Vendor::new(PRODUCT_ID);
    let mut bay = TestBay::new("e2e").with_fault(0, LinkFault::CorruptLoaderWrite);
    let failed = provision(&mut bay, vendor.plan(&fw, 1), vendor.issuer())
        .expect_err("the station must refuse the loader it did not write");
    assert_eq!(failed.step, Step::Handshake);
    assert!(failed.serial.is_none(), "refused before the loader's hello");
    assert!(
        matches!(
            failed.error,
            ProvisioningError::Target(TargetFault::Unverified {
                code: ErrorCode::LoaderMismatch,
                ..
            })
        ),
        "expected LoaderMismatch, got: {}",
        failed.error
    );
    bay.detach();
    let flash = &mut persisted_flash(&bay.board_files(0));
    assert!(verify_installed_bootloader(flash).is_err());
}
