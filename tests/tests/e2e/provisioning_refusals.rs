//! Tampering on the debug link, each refused by the real loader with its own error code, and
//! the board left without a valid bootloader.

use flashgate_protocol::boot::verify_installed_bootloader;
use flashgate_protocol::image::SIGNED_HEADER_LEN;
use flashgate_protocol::ErrorCode;
use flashgate_station::provisioning::{provision, LinkFault, ProvisioningError};
use flashgate_tests::{persisted_flash, Firmware, TestBoard, Vendor};

use crate::{job, STEP_TIMEOUT};

/// Provisions with `fault` (or with a corrupted image) and returns the error and whether the
/// board ended up with a valid bootloader.
fn refused(fault: Option<LinkFault>, corrupt_signature: bool) -> ProvisioningError {
    let fw = Firmware::load();
    let vendor = Vendor::new(7);
    let mut bootloader = vendor.sign_bootloader(&fw.bootloader, 3);
    if corrupt_signature {
        bootloader[SIGNED_HEADER_LEN - 5] ^= 0x01;
    }
    let mut tb = TestBoard::new();
    let mut probe = tb.probe(None);
    let err = provision(
        &mut probe,
        &fw.loader,
        &job(&vendor, &bootloader, true, fault),
        STEP_TIMEOUT,
    )
    .expect_err("the target must refuse");
    drop(probe);
    tb.board.power_off().unwrap();
    let flash = &mut persisted_flash(&tb.board);
    assert!(
        verify_installed_bootloader(flash).is_err(),
        "after {err} the board must not hold a valid bootloader"
    );
    assert!(
        !tb.board.files().is_debug_locked().unwrap(),
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
    match err {
        ProvisioningError::TargetRefused { code, .. } => assert_eq!(code, want, "{err}"),
        other => panic!("expected the target to refuse with {want}, got: {other}"),
    }
}

#[test]
fn flipped_ciphertext_bit_is_refused() {
    assert_target_refused(
        refused(Some(LinkFault::FlipCiphertextBit { chunk: 3 }), false),
        ErrorCode::BadTag,
    );
}

#[test]
fn replayed_chunk_is_refused() {
    assert_target_refused(
        refused(Some(LinkFault::ReplayChunk { chunk: 2 }), false),
        ErrorCode::Replay,
    );
}

#[test]
fn reordered_chunk_is_refused() {
    assert_target_refused(
        refused(Some(LinkFault::SwapChunks { chunk: 1 }), false),
        ErrorCode::OutOfOrder,
    );
}

#[test]
fn wrong_station_key_is_refused() {
    assert_target_refused(
        refused(Some(LinkFault::ImpostorStationKey), false),
        ErrorCode::KeyConfirmationFailed,
    );
}

#[test]
fn truncated_image_is_refused() {
    assert_target_refused(
        refused(
            Some(LinkFault::TruncateImage {
                bytes_missing: 5000,
            }),
            false,
        ),
        ErrorCode::ImageIncomplete,
    );
}

#[test]
fn bad_vendor_signature_is_refused() {
    assert_target_refused(refused(None, true), ErrorCode::BadSignature);
}
