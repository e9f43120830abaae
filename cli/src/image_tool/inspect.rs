//! `flashgate image inspect|verify`: what a signed image says about itself and every check a
//! device would make of it — signature, body digest, slot fit, trust anchors — done on the
//! host, so a bad image is caught before it reaches a coordinator or a factory.

use ed25519_dalek::VerifyingKey;
use flashgate_protocol::image::{ImageKind, SignedImageHeader, SIGNED_HEADER_LEN};
use flashgate_protocol::ErrorCode;
use sha2::{Digest, Sha256};

use super::an_image;
use super::body::{check_slot, Anchors, SlotProblem};

/// The signature checked under one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureCheck {
    /// The key.
    pub public: [u8; 32],
    /// Strict ed25519 verification passed.
    pub valid: bool,
}

/// A signed image taken apart.
#[derive(Debug)]
pub struct Inspection {
    /// Header and signature as stored.
    pub signed: SignedImageHeader,
    /// Bytes after the signed header.
    pub body_len: usize,
    /// SHA-256 of those bytes.
    pub body_digest: [u8; 32],
    /// The signature under the key given, if one was.
    pub signature: Option<SignatureCheck>,
    /// The slot the header's kind names, or why the body does not fit it.
    pub slot: Result<flashgate_protocol::image::Slot, SlotProblem>,
    /// The trust-anchor block.
    pub anchors: Anchors,
}

/// What `verify` must also find.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expect {
    /// This kind.
    pub kind: Option<ImageKind>,
    /// This product.
    pub product_id: Option<u32>,
    /// This pinned authority key.
    pub authority_public: Option<[u8; 32]>,
}

impl Inspection {
    /// Takes `image` apart and, with `public`, checks its signature. Only a file that is not a
    /// signed flashgate image at all is an error.
    pub fn of(image: &[u8], public: Option<&VerifyingKey>) -> Result<Self, ErrorCode> {
        let signed = SignedImageHeader::parse(image)?;
        let body = &image[SIGNED_HEADER_LEN..];
        let header = signed.header;
        Ok(Self {
            signed,
            body_len: body.len(),
            body_digest: Sha256::digest(body).into(),
            signature: public.map(|key| SignatureCheck {
                public: key.to_bytes(),
                valid: signed.verify(&key.to_bytes()).is_ok(),
            }),
            slot: check_slot(header.kind, header.load_addr, body),
            anchors: Anchors::of(header.kind, body),
        })
    }

    /// The body is complete and hashes to the signed digest.
    pub fn digest_ok(&self) -> bool {
        self.body_len == self.signed.header.body_size as usize
            && self.body_digest == self.signed.header.body_digest
    }

    /// Every reason a device (or the coordinator) would refuse this image, and every
    /// expectation it does not meet; empty when it passes.
    pub fn problems(&self, expect: &Expect) -> Vec<String> {
        let h = &self.signed.header;
        let mut problems = Vec::new();
        if let Some(kind) = expect.kind.filter(|k| *k != h.kind) {
            problems.push(format!("it is {}, not {}", an_image(h.kind), kind.name()));
        }
        if let Some(product) = expect.product_id.filter(|p| *p != h.product_id) {
            problems.push(format!("it is for product {}, not {product}", h.product_id));
        }
        if let Some(check) = self.signature.filter(|c| !c.valid) {
            problems.push(format!(
                "its signature does not verify under {}",
                hex::encode(check.public)
            ));
        }
        if self.body_len != h.body_size as usize {
            problems.push(format!(
                "its body is {} bytes but its header says {} (truncated or extended)",
                self.body_len, h.body_size
            ));
        } else if !self.digest_ok() {
            problems
                .push("its body does not hash to the signed digest (altered after signing)".into());
        }
        if let Err(problem) = &self.slot {
            problems.push(problem.to_string());
        }
        problems.extend(self.anchors.problem());
        if let Anchors::Present(anchors) = self.anchors {
            if let Some(check) = self.signature {
                if anchors.is_filled() && anchors.vendor_public != check.public {
                    problems.push(format!(
                        "it pins vendor key {}, not the key it is verified under",
                        hex::encode(anchors.vendor_public)
                    ));
                }
            }
            if let Some(authority) = expect.authority_public {
                if anchors.authority_public != authority {
                    problems.push(format!(
                        "it pins authority key {}, not {}",
                        hex::encode(anchors.authority_public),
                        hex::encode(authority)
                    ));
                }
            }
        }
        problems
    }
}
