//! The trust anchors a signed bootloader or OS image pins: the vendor key its signature (and
//! every image it accepts) is checked under, and the product's authority key that signs device
//! certificates.
//!
//! ```text
//! at body + TRUST_ANCHORS_OFFSET (0x400, after the vector table; linker section .trust_anchors):
//!   magic "FGTA" u32 | format u32 = 1 | vendor_public [32] | authority_public [32] | reserved [8] = 0
//! ```
//! The firmware is linked with a [`PLACEHOLDER`] block (magic and format, zero keys); the
//! signing tool fills it with [`embed`] *before* the body is hashed and signed, so the keys are
//! covered by the vendor signature like every other byte of the body. Firmware must read the
//! block with volatile reads: the compiler would otherwise fold the zero build-time value.

use crate::codec::{self, Codec, Reader, Writer};
use crate::layout::TRUST_ANCHORS_OFFSET;
use crate::ErrorCode;

/// Magic of the block ("FGTA").
pub const ANCHORS_MAGIC: u32 = 0x4154_4746;
/// Block format this build writes and accepts.
pub const ANCHORS_FORMAT: u32 = 1;
/// Encoded length of the block.
pub const ANCHORS_LEN: usize = 4 + 4 + 32 + 32 + 8;

/// The block as linked into firmware: magic and format, zero keys (what [`embed`] fills).
pub const PLACEHOLDER: [u8; ANCHORS_LEN] = {
    let mut block = [0u8; ANCHORS_LEN];
    let magic = ANCHORS_MAGIC.to_le_bytes();
    let format = ANCHORS_FORMAT.to_le_bytes();
    let mut i = 0;
    while i < 4 {
        block[i] = magic[i];
        block[4 + i] = format[i];
        i += 1;
    }
    block
};

/// The keys an image pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustAnchors {
    /// The vendor's ed25519 key (signs images).
    pub vendor_public: [u8; 32],
    /// The product's authority ed25519 key (signs device certificates).
    pub authority_public: [u8; 32],
}

impl TrustAnchors {
    /// True when both keys are set: a block still holding a build-time zero key is not filled.
    pub fn is_filled(&self) -> bool {
        self.vendor_public != [0; 32] && self.authority_public != [0; 32]
    }

    /// The 80-byte block.
    pub fn to_bytes(&self) -> [u8; ANCHORS_LEN] {
        codec::to_array(self)
    }
}

/// The 80-byte block; a wrong magic, format or non-zero reserved field is [`ErrorCode::BadMagic`].
impl Codec<'_> for TrustAnchors {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u32(ANCHORS_MAGIC)?;
        w.u32(ANCHORS_FORMAT)?;
        w.put(&self.vendor_public)?;
        w.put(&self.authority_public)?;
        w.put(&[0; 8])
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        if r.u32()? != ANCHORS_MAGIC || r.u32()? != ANCHORS_FORMAT {
            return Err(ErrorCode::BadMagic);
        }
        let anchors = Self {
            vendor_public: r.array()?,
            authority_public: r.array()?,
        };
        if r.array::<8>()? != [0; 8] {
            return Err(ErrorCode::BadMagic);
        }
        Ok(anchors)
    }
}

const OFFSET: usize = TRUST_ANCHORS_OFFSET as usize;

/// The block's bytes in `body`, if the body is long enough to hold one.
fn block(body: &[u8]) -> Option<&[u8]> {
    body.get(OFFSET..OFFSET + ANCHORS_LEN)
}

/// Reads the block of an image body (filled or not: see [`TrustAnchors::is_filled`]).
/// A body too short for it, or without a well-formed block at [`TRUST_ANCHORS_OFFSET`], is
/// [`ErrorCode::NoTrustAnchors`].
pub fn read(body: &[u8]) -> Result<TrustAnchors, ErrorCode> {
    let bytes = block(body).ok_or(ErrorCode::NoTrustAnchors)?;
    TrustAnchors::read_bytes(bytes).map_err(|_| ErrorCode::NoTrustAnchors)
}

/// Fills the block of an unsigned image body with `anchors` (the signing tool's step before
/// hashing). The body must already hold a block at [`TRUST_ANCHORS_OFFSET`] — the firmware's
/// [`PLACEHOLDER`], or an earlier filling — so that no code or data is ever overwritten:
/// otherwise [`ErrorCode::NoTrustAnchors`] and the body is unchanged.
pub fn embed(body: &mut [u8], anchors: &TrustAnchors) -> Result<(), ErrorCode> {
    read(body)?;
    body[OFFSET..OFFSET + ANCHORS_LEN].copy_from_slice(&anchors.to_bytes());
    Ok(())
}

/// `body` with a trust-anchor block pinning `anchors` written at [`TRUST_ANCHORS_OFFSET`]
/// (grown with zeros to hold it): what a firmware body carries after `flashgate image sign`.
/// For hosts that make test and demo images; real firmware already holds the block.
#[cfg(feature = "std")]
pub fn pinning(body: &[u8], anchors: &TrustAnchors) -> std::vec::Vec<u8> {
    let mut out = body.to_vec();
    if out.len() < OFFSET + ANCHORS_LEN {
        out.resize(OFFSET + ANCHORS_LEN, 0);
    }
    out[OFFSET..OFFSET + ANCHORS_LEN].copy_from_slice(&anchors.to_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchors() -> TrustAnchors {
        TrustAnchors {
            vendor_public: [0x11; 32],
            authority_public: [0x22; 32],
        }
    }

    /// A firmware body as linked: vector table, padding, the placeholder, then code.
    fn linked_body() -> [u8; 2048] {
        let mut body = [0xA5u8; 2048];
        body[OFFSET..OFFSET + ANCHORS_LEN].copy_from_slice(&PLACEHOLDER);
        body
    }

    #[test]
    fn placeholder_reads_as_unfilled_anchors() {
        let empty = read(&linked_body()).unwrap();
        assert_eq!(empty.vendor_public, [0; 32]);
        assert!(!empty.is_filled());
        assert_eq!(
            TrustAnchors {
                vendor_public: [0; 32],
                authority_public: [0; 32],
            }
            .to_bytes(),
            PLACEHOLDER
        );
    }

    #[test]
    fn embed_fills_only_the_block_and_reads_back() {
        let mut body = linked_body();
        embed(&mut body, &anchors()).unwrap();
        assert_eq!(read(&body), Ok(anchors()));
        assert!(read(&body).unwrap().is_filled());
        let before = linked_body();
        assert_eq!(body[..OFFSET], before[..OFFSET]);
        assert_eq!(body[OFFSET + ANCHORS_LEN..], before[OFFSET + ANCHORS_LEN..]);
        // Filling again (another authority key) replaces the keys.
        let other = TrustAnchors {
            authority_public: [0x33; 32],
            ..anchors()
        };
        embed(&mut body, &other).unwrap();
        assert_eq!(read(&body), Ok(other));
    }

    #[test]
    fn fixed_vector() {
        assert_eq!(
            hex::encode(anchors().to_bytes()),
            include_str!("../vectors/trust_anchors.hex").trim()
        );
    }

    #[test]
    fn bodies_without_a_block_are_refused_and_left_alone() {
        // Code where the block should be: nothing is overwritten.
        let mut code = [0xA5u8; 2048];
        assert_eq!(embed(&mut code, &anchors()), Err(ErrorCode::NoTrustAnchors));
        assert_eq!(code, [0xA5u8; 2048]);
        // Too short to reach the offset, or ending inside the block.
        let mut short = linked_body();
        assert_eq!(
            embed(&mut short[..OFFSET], &anchors()),
            Err(ErrorCode::NoTrustAnchors)
        );
        assert_eq!(
            read(&short[..OFFSET + ANCHORS_LEN - 1]),
            Err(ErrorCode::NoTrustAnchors)
        );
        // A block of another format, or with reserved bytes set.
        for at in [4, ANCHORS_LEN - 1] {
            let mut body = linked_body();
            body[OFFSET + at] ^= 1;
            assert_eq!(read(&body), Err(ErrorCode::NoTrustAnchors), "byte {at}");
        }
    }

    #[test]
    fn one_key_set_is_not_filled() {
        let half = TrustAnchors {
            authority_public: [0; 32],
            ..anchors()
        };
        assert!(!half.is_filled());
    }
}
