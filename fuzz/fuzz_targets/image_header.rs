#![no_main]
//! A signed image as the bootloader, the loader and the coordinator's release upload read it:
//! header, vendor signature, slot checks, body digest, and the trust anchors an OS body pins.
use flashgate_fuzz::device;
use flashgate_protocol::image::{BodyHasher, ImageKind, SignedImageHeader, SIGNED_HEADER_LEN};
use flashgate_protocol::layout::{IMAGE_HEADER_SPACE, OS_SLOT_ADDR, OS_SLOT_SIZE};
use flashgate_protocol::trust_anchors;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    flashgate_fuzz::check_codec!(
        SignedImageHeader,
        data.get(..SIGNED_HEADER_LEN).unwrap_or(data)
    );
    let Ok(signed) = SignedImageHeader::parse(data) else {
        return;
    };
    let vendor = device::vendor().verifying_key().to_bytes();
    let Ok(header) = signed.verify(&vendor) else {
        return;
    };
    let _ = SignedImageHeader::check_fits(
        header,
        ImageKind::Os,
        device::PRODUCT,
        OS_SLOT_ADDR + IMAGE_HEADER_SPACE,
        OS_SLOT_SIZE - IMAGE_HEADER_SPACE,
        1,
    );
    let body = &data[SIGNED_HEADER_LEN..];
    let mut hasher = BodyHasher::new(header.body_size);
    if hasher.update(body).is_ok() && hasher.finish(&header.body_digest).is_ok() {
        let _ = trust_anchors::read(body);
    }
});
