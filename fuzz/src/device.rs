//! A provisioned device in host memory, with the keys of `protocol/vectors/` (serial `[1; 16]`,
//! product 7, device key `[3; 32]`, vendor key from seed `[9; 32]`, authority key from seed
//! `[0x31; 32]`): the update package vector is addressed to exactly this device, so seeds built
//! from it get past the envelope. Its certificate names its own chip, so the boot checks pass.

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use flashgate_protocol::certificate::{key_commitment, order_ref, CertificateBody};
use flashgate_protocol::device_record::{DeviceConfig, DeviceRecord};
use flashgate_protocol::flash::{NorFlash, RamFlash};
use flashgate_protocol::image::{sign_image, ImageKind, SIGNED_HEADER_LEN};
use flashgate_protocol::layout::{
    DEVICE_RECORD_ADDR, FLASH_SIZE, IMAGE_HEADER_SPACE, OS_SLOT_ADDR,
};

/// The device's serial.
pub const SERIAL: [u8; 16] = [1; 16];
/// Its product.
pub const PRODUCT: u32 = 7;
/// Its device key.
pub const DEVICE_KEY: [u8; 32] = [3; 32];

/// The vendor's signing key.
pub fn vendor() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

/// The product's authority key (signs the device certificate).
pub fn authority() -> SigningKey {
    SigningKey::from_bytes(&[0x31; 32])
}

/// The configuration the station gives this device.
pub fn config() -> DeviceConfig {
    DeviceConfig {
        serial: SERIAL,
        product_id: PRODUCT,
        vendor_public: vendor().verifying_key().to_bytes(),
        authority_public: authority().verifying_key().to_bytes(),
        rollback_floor: 1,
        flags: 0,
    }
}

/// The device record the bootloader and OS read.
pub fn record() -> DeviceRecord {
    DeviceRecord {
        config: config(),
        device_key: DEVICE_KEY,
        bootloader_version: 3,
        bootloader_size: 0,
        bootloader_digest: [0; 32],
        certificate: CertificateBody {
            product_id: PRODUCT,
            unique_id: SERIAL,
            key_commitment: key_commitment(&DEVICE_KEY),
            order_ref: order_ref("fuzz-order"),
            sequence: 1,
            issued_at_ms: 0,
        }
        .sign(&authority()),
    }
}

/// A fresh copy of the device's flash: record and OS version 1 written, the rest erased.
pub fn flash() -> RamFlash {
    static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = TEMPLATE.get_or_init(|| {
        let mut f = RamFlash::erased(FLASH_SIZE as usize);
        let body: Vec<u8> = (0..4096u32).map(|i| (i * 31 + 1) as u8).collect();
        let os = sign_image(
            ImageKind::Os,
            PRODUCT,
            1,
            OS_SLOT_ADDR + IMAGE_HEADER_SPACE,
            &body,
            &vendor(),
        );
        f.program(DEVICE_RECORD_ADDR, &record().to_bytes())
            .expect("the record fits");
        f.program(OS_SLOT_ADDR, &os[..SIGNED_HEADER_LEN])
            .expect("the header fits");
        f.program(OS_SLOT_ADDR + IMAGE_HEADER_SPACE, &os[SIGNED_HEADER_LEN..])
            .expect("the body fits");
        f.bytes
    });
    let mut f = RamFlash::erased(0);
    f.bytes.clone_from(bytes);
    f
}
