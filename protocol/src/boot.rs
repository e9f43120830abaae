//! What the secure bootloader checks at every reset (and the demo OS at its start).
//!
//! Before anything is started, [`check_identity`]: the device record names this chip, its keys
//! are the ones the running image pins, and its certificate verifies under the pinned
//! authority key and binds this chip, product and device key. Then the OS image itself
//! ([`verify_os_image`]).

use sha2::{Digest, Sha256};

use crate::codec::Codec;
use crate::device_record::{DeviceRecord, RECORD_LEN};
use crate::flash::NorFlash;
use crate::image::{BodyHasher, ImageKind, SignedImageHeader, SIGNED_HEADER_LEN};
use crate::layout::{
    BOOTLOADER_BASE, DEVICE_RECORD_ADDR, IMAGE_HEADER_SPACE, OS_SLOT_ADDR, OS_SLOT_SIZE,
};
use crate::trust_anchors::TrustAnchors;
use crate::{ErrorCode, Serial};

/// The checks that bind a device record to the chip it runs on and to the keys the running
/// (vendor-signed) image pins, in this order:
/// 1. the record's serial is `chip_uid`, the unique ID read from the hardware
///    ([`ErrorCode::UidMismatch`]: a flash image copied from another board);
/// 2. the record's vendor and authority keys are the image's `anchors`
///    ([`ErrorCode::TrustAnchorMismatch`]; an image with unfilled anchors pins nothing and
///    matches no record);
/// 3. the certificate verifies under the pinned authority key ([`ErrorCode::BadCertificate`]);
/// 4. it names this chip, the record's product and the record's device key
///    ([`ErrorCode::CertificateMismatch`]).
pub fn check_identity(
    record: &DeviceRecord,
    chip_uid: &Serial,
    anchors: &TrustAnchors,
) -> Result<(), ErrorCode> {
    if record.config.serial != *chip_uid {
        return Err(ErrorCode::UidMismatch);
    }
    if !anchors.is_filled()
        || record.config.vendor_public != anchors.vendor_public
        || record.config.authority_public != anchors.authority_public
    {
        return Err(ErrorCode::TrustAnchorMismatch);
    }
    record.certificate.verify(&anchors.authority_public)?;
    record
        .certificate
        .check_binding(chip_uid, record.config.product_id, &record.device_key)
}

/// Reads and checks the device record.
pub fn read_device_record<F: NorFlash>(flash: &mut F) -> Result<DeviceRecord, ErrorCode> {
    let mut buf = [0u8; RECORD_LEN];
    flash.read(DEVICE_RECORD_ADDR, &mut buf)?;
    DeviceRecord::read_bytes(&buf)
}

/// Checks that a complete, committed bootloader is installed: record valid, reset vector
/// programmed, and the bootloader region hashes to the digest in the record.
pub fn verify_installed_bootloader<F: NorFlash>(flash: &mut F) -> Result<DeviceRecord, ErrorCode> {
    let record = read_device_record(flash)?;
    let mut head = [0u8; 8];
    flash.read(BOOTLOADER_BASE, &mut head)?;
    if head == [0xFF; 8] {
        return Err(ErrorCode::NotProvisioned);
    }
    let digest = hash_flash(flash, BOOTLOADER_BASE, record.bootloader_size)?;
    if digest != record.bootloader_digest {
        return Err(ErrorCode::DigestMismatch);
    }
    Ok(record)
}

/// An OS image that passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OsImage {
    /// Its version.
    pub version: u32,
    /// Address of its vector table (initial SP, then reset vector).
    pub vector_table: u32,
    /// Size of its body (the slot holds header space + body).
    pub body_size: u32,
}

/// Verifies the OS image in its slot: vendor signature, product, load address, size,
/// anti-rollback floor, then the body digest read back from flash.
pub fn verify_os_image<F: NorFlash>(
    flash: &mut F,
    record: &DeviceRecord,
    rollback_floor: u32,
) -> Result<OsImage, ErrorCode> {
    verify_os_image_in(flash, OS_SLOT_ADDR, record, rollback_floor)
}

/// Like [`verify_os_image`] for an OS image stored at `slot_addr` (the OS slot, or the
/// staging and backup slots of the update path, which hold the same layout). The image must
/// still be linked for the OS slot: it runs only after being copied there.
pub fn verify_os_image_in<F: NorFlash>(
    flash: &mut F,
    slot_addr: u32,
    record: &DeviceRecord,
    rollback_floor: u32,
) -> Result<OsImage, ErrorCode> {
    let mut raw = [0u8; SIGNED_HEADER_LEN];
    flash.read(slot_addr, &mut raw)?;
    if raw.iter().all(|b| *b == 0xFF) {
        return Err(ErrorCode::NoValidImage);
    }
    let signed = SignedImageHeader::parse(&raw)?;
    let header = *signed.verify(&record.config.vendor_public)?;
    let load_addr = OS_SLOT_ADDR + IMAGE_HEADER_SPACE;
    SignedImageHeader::check_fits(
        &header,
        ImageKind::Os,
        record.config.product_id,
        load_addr,
        OS_SLOT_SIZE - IMAGE_HEADER_SPACE,
        rollback_floor.max(record.config.rollback_floor),
    )?;
    let mut hasher = BodyHasher::new(header.body_size);
    let mut buf = [0u8; 256];
    let mut at = 0u32;
    let body_addr = slot_addr + IMAGE_HEADER_SPACE;
    while at < header.body_size {
        let n = (header.body_size - at).min(buf.len() as u32) as usize;
        flash.read(body_addr + at, &mut buf[..n])?;
        hasher.update(&buf[..n])?;
        at += n as u32;
    }
    hasher.finish(&header.body_digest)?;
    Ok(OsImage {
        version: header.version,
        vector_table: load_addr,
        body_size: header.body_size,
    })
}

fn hash_flash<F: NorFlash>(flash: &mut F, addr: u32, len: u32) -> Result<[u8; 32], ErrorCode> {
    let mut h = Sha256::new();
    let mut buf = [0u8; 256];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(buf.len() as u32) as usize;
        flash.read(addr + at, &mut buf[..n])?;
        h.update(&buf[..n]);
        at += n as u32;
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::tests::{authority, body};
    use crate::certificate::{key_commitment, CertificateBody};
    use crate::update::tests::{record, vendor, KEY, SERIAL};
    use ed25519_dalek::SigningKey;

    fn anchors() -> TrustAnchors {
        TrustAnchors {
            vendor_public: vendor().verifying_key().to_bytes(),
            authority_public: authority().verifying_key().to_bytes(),
        }
    }

    #[test]
    fn a_genuine_record_on_its_own_chip_passes() {
        assert_eq!(check_identity(&record(), &SERIAL, &anchors()), Ok(()));
    }

    #[test]
    fn a_copied_flash_on_another_chip_is_a_uid_mismatch() {
        let mut other_chip = SERIAL;
        other_chip[15] ^= 1;
        assert_eq!(
            check_identity(&record(), &other_chip, &anchors()),
            Err(ErrorCode::UidMismatch)
        );
    }

    #[test]
    fn keys_other_than_the_pinned_ones_are_refused() {
        let other = SigningKey::from_bytes(&[0x77; 32])
            .verifying_key()
            .to_bytes();
        for pinned in [
            TrustAnchors {
                vendor_public: other,
                ..anchors()
            },
            TrustAnchors {
                authority_public: other,
                ..anchors()
            },
            TrustAnchors {
                vendor_public: [0; 32],
                authority_public: [0; 32],
            },
        ] {
            assert_eq!(
                check_identity(&record(), &SERIAL, &pinned),
                Err(ErrorCode::TrustAnchorMismatch)
            );
        }
    }

    #[test]
    fn forged_or_foreign_certificates_boot_nothing() {
        // Signed by a key that is not the product's authority (a station's own "authority"),
        // with the record claiming that key too: the image pins the real one.
        let station = SigningKey::from_bytes(&[0x66; 32]);
        let mut forged = record();
        forged.certificate = CertificateBody {
            unique_id: SERIAL,
            product_id: 7,
            key_commitment: key_commitment(&KEY),
            ..body()
        }
        .sign(&station);
        assert_eq!(
            check_identity(&forged, &SERIAL, &anchors()),
            Err(ErrorCode::BadCertificate)
        );
        // A genuine signature over altered fields.
        let mut altered = record();
        altered.certificate.body.sequence += 1;
        assert_eq!(
            check_identity(&altered, &SERIAL, &anchors()),
            Err(ErrorCode::BadCertificate)
        );
        // A genuine certificate of another chip, another product, another key.
        for (uid, product, key) in [
            ([0x42; 16], 7, KEY),
            (SERIAL, 8, KEY),
            (SERIAL, 7, [0x99; 32]),
        ] {
            let mut foreign = record();
            foreign.certificate = CertificateBody {
                unique_id: uid,
                product_id: product,
                key_commitment: key_commitment(&key),
                ..body()
            }
            .sign(&authority());
            assert_eq!(
                check_identity(&foreign, &SERIAL, &anchors()),
                Err(ErrorCode::CertificateMismatch)
            );
        }
        // The key a lease secret derived, with no certificate for it (the old path): the
        // certificate commits to another key.
        let mut old_path = record();
        old_path.device_key = [0x42; 32];
        assert_eq!(
            check_identity(&old_path, &SERIAL, &anchors()),
            Err(ErrorCode::CertificateMismatch)
        );
    }
}
