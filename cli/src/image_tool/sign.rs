//! `flashgate image sign`: a body becomes a signed image — checked against the slot map, its
//! trust anchors filled (bootloader, OS), hashed, its header signed (key file or external
//! signer, verified either way) — or nothing is produced.

use ed25519_dalek::VerifyingKey;
use flashgate_protocol::image::{ImageHeader, ImageKind, SignedImageHeader};
use flashgate_protocol::trust_anchors::{self, TrustAnchors};

use super::an_image;
use super::body::{check_slot, Anchors, Input, SlotProblem};
use super::signer::{Signer, SignerError};

/// What to sign the body as.
#[derive(Clone, Copy, Debug)]
pub struct SignRequest {
    /// Image kind (decides the slot).
    pub kind: ImageKind,
    /// Product id.
    pub product_id: u32,
    /// Version (anti-rollback).
    pub version: u32,
    /// The load address the user expects (`--load-address`); checked, never invented.
    pub load_addr: Option<u32>,
    /// The keys to pin (bootloader and OS only).
    pub anchors: Option<TrustAnchors>,
}

/// Why no image was made.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The body does not fit its kind's slot (or starts wrongly for it).
    #[error("refusing to sign it as {kind}: {0}", kind = .1.name())]
    Slot(SlotProblem, ImageKind),
    /// `--load-address` and the ELF file disagree.
    #[error("--load-address {given:#010x} differs from where the ELF file loads ({elf:#010x})")]
    LoadAddressMismatch {
        /// What the user gave.
        given: u32,
        /// What the ELF says.
        elf: u32,
    },
    /// Bootloader and OS images pin keys: the flags are required.
    #[error(
        "{} pins the vendor and authority keys: give --vendor-pub and --authority-pub",
        an_image(*.0)
    )]
    AnchorsRequired(ImageKind),
    /// App and test-app images carry no anchors.
    #[error(
        "{} carries no trust anchors: drop --vendor-pub/--authority-pub",
        an_image(*.0)
    )]
    AnchorsNotPinned(ImageKind),
    /// The body has no block to fill.
    #[error(
        "refusing to sign it as {}: {}",
        .0.name(),
        Anchors::Missing.problem().unwrap_or_default()
    )]
    AnchorsMissing(ImageKind),
    /// The pinned vendor key is not the key that signs.
    #[error(
        "--vendor-pub {pinned} is not the signing key's public key {signer}: the device checks \
         this image under the vendor key it pins"
    )]
    VendorMismatch {
        /// `--vendor-pub`.
        pinned: String,
        /// The signer's public key.
        signer: String,
    },
    /// No signature.
    #[error(transparent)]
    Signer(#[from] SignerError),
}

/// The signed image: the header, then the body with its anchors filled.
#[derive(Debug)]
pub struct Signed {
    /// Header and signature.
    pub header: SignedImageHeader,
    /// The complete image file.
    pub image: Vec<u8>,
}

/// Signs `input` as `request` says with `signer` (see the module documentation).
pub fn sign(input: Input, request: &SignRequest, signer: &Signer) -> Result<Signed, SignError> {
    let kind = request.kind;
    // The command line first: these are usage errors, whatever the body.
    match (kind.pins_trust_anchors(), request.anchors) {
        (true, None) => return Err(SignError::AnchorsRequired(kind)),
        (false, Some(_)) => return Err(SignError::AnchorsNotPinned(kind)),
        _ => {}
    }
    let load_addr = match (request.load_addr, input.load_addr) {
        (Some(given), Some(elf)) if given != elf => {
            return Err(SignError::LoadAddressMismatch { given, elf })
        }
        (_, Some(elf)) => elf,
        (Some(given), None) => given,
        // A raw binary has no address of its own: it goes where its kind's slot says.
        (None, None) => kind.slot().body_addr,
    };
    let mut body = input.bytes;
    check_slot(kind, load_addr, &body).map_err(|p| SignError::Slot(p, kind))?;
    if let Some(anchors) = request.anchors {
        let signing = signer.public().to_bytes();
        if anchors.vendor_public != signing {
            return Err(SignError::VendorMismatch {
                pinned: hex::encode(anchors.vendor_public),
                signer: hex::encode(signing),
            });
        }
        // Zero keys are what is filled here; only a missing block stops the signing.
        trust_anchors::embed(&mut body, &anchors).map_err(|_| SignError::AnchorsMissing(kind))?;
    }
    let header = ImageHeader::for_body(kind, request.product_id, request.version, load_addr, &body)
        .expect("the slot check bounds the body size");
    let signature = signer.sign(&header.signed_message())?;
    let header = SignedImageHeader::new(header, signature);
    let mut image = header.to_bytes().to_vec();
    image.extend_from_slice(&body);
    Ok(Signed { header, image })
}

/// Checks a key given on the command line: a valid ed25519 point, not all zeros.
pub fn public_key(bytes: [u8; 32]) -> Option<VerifyingKey> {
    if bytes == [0; 32] {
        return None;
    }
    VerifyingKey::from_bytes(&bytes).ok()
}
