//! What the secure bootloader checks at every reset.

use sha2::{Digest, Sha256};

use crate::codec::Codec;
use crate::device_record::{DeviceRecord, RECORD_LEN};
use crate::flash::NorFlash;
use crate::image::{BodyHasher, ImageKind, SignedImageHeader, SIGNED_HEADER_LEN};
use crate::layout::{
    BOOTLOADER_BASE, DEVICE_RECORD_ADDR, IMAGE_HEADER_SPACE, OS_SLOT_ADDR, OS_SLOT_SIZE,
};
use crate::ErrorCode;

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
