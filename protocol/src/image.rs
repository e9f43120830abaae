//! Vendor-signed firmware images.
//!
//! ```text
//! header (64 bytes):
//!   magic "FGIM" u32 | header_version u16 | kind u16 | product_id u32 | version u32
//!   load_addr u32 | body_size u32 | body_digest [32] (SHA-256 of the body) | reserved [8] = 0
//! signature (64 bytes): ed25519 by the vendor over "flashgate-image-v1" || header
//! body (body_size bytes)
//! ```
//! The signature covers the digest, so verifying the 128-byte signed header once and hashing
//! the body as it streams past is enough; the body never has to be held whole in RAM.

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::codec::{self, Codec, Reader, Writer};
use crate::layout::{
    APP_SLOT_ADDR, APP_SLOT_SIZE, BOOTLOADER_BASE, BOOTLOADER_MAX, IMAGE_HEADER_SPACE,
    OS_SLOT_ADDR, OS_SLOT_SIZE, TEST_APP_ADDR, TEST_APP_MAX,
};
use crate::ErrorCode;

/// Magic at the start of every image header ("FGIM").
pub const IMAGE_MAGIC: u32 = 0x4D49_4746;
/// Header format version this build writes and accepts.
pub const HEADER_VERSION: u16 = 1;
/// Bytes of the header that the signature covers.
pub const HEADER_LEN: usize = 64;
/// Header plus signature.
pub const SIGNED_HEADER_LEN: usize = HEADER_LEN + 64;

const SIGNATURE_CONTEXT: &[u8] = b"flashgate-image-v1";

/// What an image is for; a loader or bootloader refuses an image of another kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ImageKind {
    /// The secure bootloader (installed by the flash loader at the reset address).
    Bootloader = 1,
    /// The operating system the bootloader starts.
    Os = 2,
    /// An application the OS runs.
    App = 3,
    /// The factory test application the loader runs from RAM.
    TestApp = 4,
}

impl ImageKind {
    /// Every kind, in header order.
    pub const ALL: [ImageKind; 4] = [Self::Bootloader, Self::Os, Self::App, Self::TestApp];

    fn from_u16(v: u16) -> Result<Self, ErrorCode> {
        Ok(match v {
            1 => Self::Bootloader,
            2 => Self::Os,
            3 => Self::App,
            4 => Self::TestApp,
            _ => return Err(ErrorCode::WrongImageKind),
        })
    }

    /// The kind's name as the tools spell it (`bootloader`, `os`, `app`, `test-app`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Bootloader => "bootloader",
            Self::Os => "os",
            Self::App => "app",
            Self::TestApp => "test-app",
        }
    }

    /// Where an image of this kind goes on the device (from [`crate::layout`]).
    pub fn slot(self) -> Slot {
        match self {
            Self::Bootloader => Slot {
                base: BOOTLOADER_BASE,
                body_addr: BOOTLOADER_BASE,
                max_body: BOOTLOADER_MAX,
                storage: SlotStorage::Flash,
            },
            Self::Os => Slot {
                base: OS_SLOT_ADDR,
                body_addr: OS_SLOT_ADDR + IMAGE_HEADER_SPACE,
                max_body: OS_SLOT_SIZE - IMAGE_HEADER_SPACE,
                storage: SlotStorage::FlashWithHeader,
            },
            Self::App => Slot {
                base: APP_SLOT_ADDR,
                body_addr: APP_SLOT_ADDR + IMAGE_HEADER_SPACE,
                max_body: APP_SLOT_SIZE - IMAGE_HEADER_SPACE,
                storage: SlotStorage::FlashWithHeader,
            },
            Self::TestApp => Slot {
                base: TEST_APP_ADDR,
                body_addr: TEST_APP_ADDR,
                max_body: TEST_APP_MAX,
                storage: SlotStorage::Ram,
            },
        }
    }

    /// Kinds whose body carries a filled trust-anchor block ([`crate::trust_anchors`]): the
    /// bootloader and the OS pin the vendor and authority keys.
    pub fn pins_trust_anchors(self) -> bool {
        matches!(self, Self::Bootloader | Self::Os)
    }
}

/// How a slot keeps its image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotStorage {
    /// In flash, body only (the loader checks the signed header as it installs; the device
    /// record keeps the body's digest).
    Flash,
    /// In flash, the signed header in the slot's first [`IMAGE_HEADER_SPACE`] bytes, then the
    /// body (checked again at every start).
    FlashWithHeader,
    /// Copied to RAM and run from there (the factory test app).
    Ram,
}

/// The slot of an image kind: where its body is linked and how large it may be. A device
/// refuses an image whose `load_addr` is not `body_addr` or whose body exceeds `max_body`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Start of the slot.
    pub base: u32,
    /// Address the body is linked for: the header's `load_addr`, and the vector table's
    /// address for the bootloader and the OS.
    pub body_addr: u32,
    /// Largest body the slot holds.
    pub max_body: u32,
    /// Flash or RAM, with or without the signed header.
    pub storage: SlotStorage,
}

impl Slot {
    /// Checks that a body of `body_size` bytes loaded at `load_addr` fits this slot
    /// ([`ErrorCode::BadLoadAddress`], [`ErrorCode::ImageTooLarge`]; an empty body does not fit).
    pub fn check(&self, load_addr: u32, body_size: usize) -> Result<(), ErrorCode> {
        if load_addr != self.body_addr {
            return Err(ErrorCode::BadLoadAddress);
        }
        if body_size == 0 || body_size > self.max_body as usize {
            return Err(ErrorCode::ImageTooLarge);
        }
        Ok(())
    }
}

/// The fields of an image header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// What the image is.
    pub kind: ImageKind,
    /// Product the image is built for.
    pub product_id: u32,
    /// Monotonic version, compared with the anti-rollback floor.
    pub version: u32,
    /// Address the body must be placed at.
    pub load_addr: u32,
    /// Body length in bytes.
    pub body_size: u32,
    /// SHA-256 of the body.
    pub body_digest: [u8; 32],
}

/// Length of what the vendor signs: the signature context, then the 64-byte header.
pub const SIGNED_MESSAGE_LEN: usize = SIGNATURE_CONTEXT.len() + HEADER_LEN;

impl ImageHeader {
    /// The header of `body` (its size and SHA-256 filled in). A body over 4 GiB is
    /// [`ErrorCode::ImageTooLarge`].
    pub fn for_body(
        kind: ImageKind,
        product_id: u32,
        version: u32,
        load_addr: u32,
        body: &[u8],
    ) -> Result<Self, ErrorCode> {
        Ok(Self {
            kind,
            product_id,
            version,
            load_addr,
            body_size: u32::try_from(body.len()).map_err(|_| ErrorCode::ImageTooLarge)?,
            body_digest: Sha256::digest(body).into(),
        })
    }

    /// The 64 signed bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        codec::to_array(self)
    }

    /// The exact bytes the vendor's ed25519 key signs: `"flashgate-image-v1" ‖ header`
    /// (what an external signer, an HSM or a cloud KMS, receives).
    pub fn signed_message(&self) -> [u8; SIGNED_MESSAGE_LEN] {
        signed_message(&self.to_bytes())
    }
}

fn signed_message(header_bytes: &[u8; HEADER_LEN]) -> [u8; SIGNED_MESSAGE_LEN] {
    let mut msg = [0u8; SIGNED_MESSAGE_LEN];
    msg[..SIGNATURE_CONTEXT.len()].copy_from_slice(SIGNATURE_CONTEXT);
    msg[SIGNATURE_CONTEXT.len()..].copy_from_slice(header_bytes);
    msg
}

/// The 64 signed bytes (decoding checks the format only, not the signature).
impl Codec<'_> for ImageHeader {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u32(IMAGE_MAGIC)?;
        w.u16(HEADER_VERSION)?;
        w.u16(self.kind as u16)?;
        w.u32(self.product_id)?;
        w.u32(self.version)?;
        w.u32(self.load_addr)?;
        w.u32(self.body_size)?;
        w.put(&self.body_digest)?;
        w.put(&[0; 8])
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let header = r.take(HEADER_LEN)?;
        let mut r = Reader::new(header);
        if r.u32()? != IMAGE_MAGIC || r.u16()? != HEADER_VERSION {
            return Err(ErrorCode::BadMagic);
        }
        let kind = ImageKind::from_u16(r.u16()?)?;
        let h = ImageHeader {
            kind,
            product_id: r.u32()?,
            version: r.u32()?,
            load_addr: r.u32()?,
            body_size: r.u32()?,
            body_digest: r.array()?,
        };
        if r.array::<8>()? != [0; 8] {
            return Err(ErrorCode::BadMagic);
        }
        Ok(h)
    }
}

/// A header with its vendor signature, as stored in front of an image and sent on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedImageHeader {
    /// The decoded header.
    pub header: ImageHeader,
    /// The 64 header bytes exactly as signed.
    pub header_bytes: [u8; HEADER_LEN],
    /// The vendor's ed25519 signature.
    pub signature: [u8; 64],
}

impl SignedImageHeader {
    /// Parses the signed header at the start of `bytes` (an image, or a slot's first page).
    /// Does not check the signature.
    pub fn parse(bytes: &[u8]) -> Result<Self, ErrorCode> {
        Self::read(&mut Reader::new(bytes))
    }

    /// `header` with a `signature` made over [`ImageHeader::signed_message`] elsewhere (an
    /// external signer); check it with [`Self::verify`] before using it.
    pub fn new(header: ImageHeader, signature: [u8; 64]) -> Self {
        Self {
            header,
            header_bytes: header.to_bytes(),
            signature,
        }
    }

    /// Verifies the vendor signature (strict ed25519: no malleable or small-order forms).
    pub fn verify(&self, vendor_public: &[u8; 32]) -> Result<&ImageHeader, ErrorCode> {
        let key = VerifyingKey::from_bytes(vendor_public).map_err(|_| ErrorCode::BadSignature)?;
        let msg = signed_message(&self.header_bytes);
        key.verify_strict(&msg, &Signature::from_bytes(&self.signature))
            .map_err(|_| ErrorCode::BadSignature)?;
        Ok(&self.header)
    }

    /// The 128 bytes: header then signature.
    pub fn to_bytes(&self) -> [u8; SIGNED_HEADER_LEN] {
        codec::to_array(self)
    }

    /// Checks what a slot requires of an image whose signature has been verified.
    pub fn check_fits(
        header: &ImageHeader,
        kind: ImageKind,
        product_id: u32,
        load_addr: u32,
        max_size: u32,
        rollback_floor: u32,
    ) -> Result<(), ErrorCode> {
        if header.kind != kind {
            return Err(ErrorCode::WrongImageKind);
        }
        if header.product_id != product_id {
            return Err(ErrorCode::WrongProduct);
        }
        if header.load_addr != load_addr {
            return Err(ErrorCode::BadLoadAddress);
        }
        if header.body_size > max_size || header.body_size == 0 {
            return Err(ErrorCode::ImageTooLarge);
        }
        if header.version < rollback_floor {
            return Err(ErrorCode::Rollback);
        }
        Ok(())
    }
}

/// Header (as signed) then signature, 128 bytes.
impl Codec<'_> for SignedImageHeader {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.put(&self.header_bytes)?;
        w.put(&self.signature)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let header_bytes: [u8; HEADER_LEN] = r.array()?;
        let signature = r.array()?;
        Ok(Self {
            header: ImageHeader::read_bytes(&header_bytes)?,
            header_bytes,
            signature,
        })
    }
}

/// Hashes an image body as it arrives and checks it against the signed digest at the end.
#[derive(Clone)]
pub struct BodyHasher {
    hasher: Sha256,
    received: u32,
    expected: u32,
}

impl BodyHasher {
    /// Expects exactly `expected` bytes.
    pub fn new(expected: u32) -> Self {
        Self {
            hasher: Sha256::new(),
            received: 0,
            expected,
        }
    }

    /// Offset the next bytes must start at.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Adds the next piece; refuses bytes beyond the announced size.
    pub fn update(&mut self, piece: &[u8]) -> Result<(), ErrorCode> {
        let n = u32::try_from(piece.len()).map_err(|_| ErrorCode::ImageTooLarge)?;
        let total = self
            .received
            .checked_add(n)
            .ok_or(ErrorCode::ImageTooLarge)?;
        if total > self.expected {
            return Err(ErrorCode::ImageTooLarge);
        }
        self.hasher.update(piece);
        self.received = total;
        Ok(())
    }

    /// Finishes: the body must be complete and hash to `digest`. Returns the digest.
    pub fn finish(self, digest: &[u8; 32]) -> Result<[u8; 32], ErrorCode> {
        if self.received != self.expected {
            return Err(ErrorCode::ImageIncomplete);
        }
        let got: [u8; 32] = self.hasher.finalize().into();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&got[..], &digest[..])) {
            return Err(ErrorCode::DigestMismatch);
        }
        Ok(got)
    }
}

/// Builds a signed image (signed header then body): what a vendor's release pipeline does.
#[cfg(feature = "std")]
pub fn sign_image(
    kind: ImageKind,
    product_id: u32,
    version: u32,
    load_addr: u32,
    body: &[u8],
    vendor_key: &ed25519_dalek::SigningKey,
) -> std::vec::Vec<u8> {
    use ed25519_dalek::Signer;
    let header = ImageHeader::for_body(kind, product_id, version, load_addr, body)
        .expect("image body over 4 GiB");
    let signature = vendor_key.sign(&header.signed_message()).to_bytes();
    let mut out = SignedImageHeader::new(header, signature)
        .to_bytes()
        .to_vec();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn vendor() -> SigningKey {
        SigningKey::from_bytes(&[9u8; 32])
    }

    #[test]
    fn signed_image_verifies_and_hashes() {
        let body = [0xA5u8; 1000];
        let img = sign_image(ImageKind::Os, 7, 3, 0x40200, &body, &vendor());
        let signed = SignedImageHeader::parse(&img).unwrap();
        let h = *signed.verify(&vendor().verifying_key().to_bytes()).unwrap();
        assert_eq!(h.version, 3);
        let mut hasher = BodyHasher::new(h.body_size);
        hasher.update(&img[SIGNED_HEADER_LEN..]).unwrap();
        hasher.finish(&h.body_digest).unwrap();
    }

    #[test]
    fn fixed_vector() {
        let img = sign_image(ImageKind::Bootloader, 1, 1, 0, b"body", &vendor());
        assert_eq!(
            hex::encode(&img),
            include_str!("../vectors/signed_image.hex").trim()
        );
    }

    #[test]
    fn tampering_is_refused() {
        let img = sign_image(ImageKind::Os, 7, 3, 0x40200, b"body", &vendor());
        let vk = vendor().verifying_key().to_bytes();
        for i in 0..SIGNED_HEADER_LEN {
            let mut bad = img.clone();
            bad[i] ^= 0x40;
            let res = SignedImageHeader::parse(&bad).and_then(|s| s.verify(&vk).map(|_| ()));
            assert!(res.is_err(), "byte {i} flip accepted");
        }
        let other = SigningKey::from_bytes(&[10u8; 32])
            .verifying_key()
            .to_bytes();
        let signed = SignedImageHeader::parse(&img).unwrap();
        assert_eq!(signed.verify(&other).err(), Some(ErrorCode::BadSignature));
    }

    #[test]
    fn body_checks() {
        let digest: [u8; 32] = Sha256::digest(b"abcd").into();
        let mut h = BodyHasher::new(4);
        h.update(b"abc").unwrap();
        assert_eq!(h.finish(&digest), Err(ErrorCode::ImageIncomplete));
        let mut h = BodyHasher::new(4);
        assert_eq!(h.update(b"abcde"), Err(ErrorCode::ImageTooLarge));
        let mut h = BodyHasher::new(4);
        h.update(b"abce").unwrap();
        assert_eq!(h.finish(&digest), Err(ErrorCode::DigestMismatch));
    }

    #[test]
    fn slot_map_follows_the_layout() {
        use crate::layout::{FLASH_BASE, FLASH_SIZE, TRUST_ANCHORS_OFFSET};
        for kind in ImageKind::ALL {
            let slot = kind.slot();
            assert_eq!(ImageKind::from_u16(kind as u16), Ok(kind));
            assert!(slot.body_addr >= slot.base, "{kind:?}");
            if kind.pins_trust_anchors() {
                // Started through their vector table: VTOR alignment, and the anchors fit.
                assert_eq!(slot.body_addr % 256, 0, "{kind:?}");
                assert!(slot.max_body > TRUST_ANCHORS_OFFSET, "{kind:?}");
            }
            if slot.storage != SlotStorage::Ram {
                let end = slot.body_addr + slot.max_body;
                assert!((FLASH_BASE..FLASH_BASE + FLASH_SIZE).contains(&slot.base));
                assert!(end <= FLASH_BASE + FLASH_SIZE, "{kind:?}");
                for other in ImageKind::ALL.iter().filter(|o| **o != kind) {
                    let o = other.slot();
                    if o.storage != SlotStorage::Ram {
                        let o_end = o.body_addr + o.max_body;
                        assert!(
                            end <= o.base || o_end <= slot.base,
                            "{kind:?} and {other:?}"
                        );
                    }
                }
            }
        }
        let os = ImageKind::Os.slot();
        assert_eq!(os.check(os.body_addr, 1), Ok(()));
        assert_eq!(os.check(os.body_addr, os.max_body as usize), Ok(()));
        assert_eq!(
            os.check(os.body_addr, os.max_body as usize + 1),
            Err(ErrorCode::ImageTooLarge)
        );
        assert_eq!(os.check(os.body_addr, 0), Err(ErrorCode::ImageTooLarge));
        assert_eq!(os.check(os.base, 1), Err(ErrorCode::BadLoadAddress));
    }

    #[test]
    fn slot_rules() {
        let h = ImageHeader {
            kind: ImageKind::Os,
            product_id: 7,
            version: 3,
            load_addr: 0x100,
            body_size: 10,
            body_digest: [0; 32],
        };
        let ok = SignedImageHeader::check_fits(&h, ImageKind::Os, 7, 0x100, 100, 3);
        assert_eq!(ok, Ok(()));
        let f = SignedImageHeader::check_fits;
        assert_eq!(
            f(&h, ImageKind::App, 7, 0x100, 100, 3),
            Err(ErrorCode::WrongImageKind)
        );
        assert_eq!(
            f(&h, ImageKind::Os, 8, 0x100, 100, 3),
            Err(ErrorCode::WrongProduct)
        );
        assert_eq!(
            f(&h, ImageKind::Os, 7, 0x200, 100, 3),
            Err(ErrorCode::BadLoadAddress)
        );
        assert_eq!(
            f(&h, ImageKind::Os, 7, 0x100, 5, 3),
            Err(ErrorCode::ImageTooLarge)
        );
        assert_eq!(
            f(&h, ImageKind::Os, 7, 0x100, 100, 4),
            Err(ErrorCode::Rollback)
        );
    }
}
