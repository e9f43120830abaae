//! Device certificates: the product authority's signature over one chip's unique ID and the
//! commitment to its device key. The coordinator issues one per chip (each consuming one slot
//! of a station's lease); the loader writes it into the device record; the bootloader and the
//! OS check it at every start under the authority key their signed image pins, so a device key
//! (or a whole flash image) copied onto another chip boots nothing.
//!
//! ```text
//! magic "FGDC" u32 | format u16 = 1 | reserved u16 = 0 | product_id u32 | unique_id [16]
//! | key_commitment [32] | order_ref [16] | sequence u32 | issued_at_ms u64
//! | authority_key_id [8] | signature [64]                                         160 bytes
//! signature      = ed25519_authority("flashgate-device-cert-v1" ‖ the 96 bytes before it)
//!                  (checked with verify_strict)
//! key_commitment = SHA-256("flashgate-device-key-commitment-v1" ‖ device_key)
//! order_ref      = SHA-256(order_id UTF-8)[..16]
//! authority_key_id = SHA-256(authority_public)[..8]
//! ```

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::codec::{self, Codec, Reader, Writer};
use crate::{ErrorCode, Serial};

/// Magic of a certificate ("FGDC").
pub const CERT_MAGIC: u32 = 0x4344_4746;
/// Certificate format this build writes and accepts.
pub const CERT_FORMAT: u16 = 1;
/// Encoded length of a certificate.
pub const CERTIFICATE_LEN: usize = SIGNED_LEN + 64;
/// Bytes the signature covers (after the label).
const SIGNED_LEN: usize = 4 + 2 + 2 + 4 + 16 + 32 + 16 + 4 + 8 + 8;
const SIGNATURE_LABEL: &[u8] = b"flashgate-device-cert-v1";
const COMMITMENT_LABEL: &[u8] = b"flashgate-device-key-commitment-v1";

/// SHA-256 commitment to a device key (what a certificate carries instead of the key).
pub fn key_commitment(device_key: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(COMMITMENT_LABEL);
    h.update(device_key);
    h.finalize().into()
}

/// The 16-byte reference to an order a certificate carries.
pub fn order_ref(order_id: &str) -> [u8; 16] {
    let digest = Sha256::digest(order_id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The 8-byte id of an authority key (which key signed a certificate, for rotation).
pub fn authority_key_id(authority_public: &[u8; 32]) -> [u8; 8] {
    let digest = Sha256::digest(authority_public);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// What a certificate states, before it is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertificateBody {
    /// The product the chip is made as.
    pub product_id: u32,
    /// The chip's unique ID (its serial).
    pub unique_id: Serial,
    /// [`key_commitment`] of the chip's device key.
    pub key_commitment: [u8; 32],
    /// [`order_ref`] of the order it was made under.
    pub order_ref: [u8; 16],
    /// Issuance number within the order, 1-based.
    pub sequence: u32,
    /// When it was issued (Unix milliseconds).
    pub issued_at_ms: u64,
}

impl CertificateBody {
    /// Signs the body with the product's authority key.
    pub fn sign(self, authority: &SigningKey) -> DeviceCertificate {
        let mut cert = DeviceCertificate {
            body: self,
            authority_key_id: authority_key_id(&authority.verifying_key().to_bytes()),
            signature: [0; 64],
        };
        cert.signature = authority.sign(&cert.signed_message()).to_bytes();
        cert
    }
}

/// A signed device certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceCertificate {
    /// What it states.
    pub body: CertificateBody,
    /// [`authority_key_id`] of the key that signed it.
    pub authority_key_id: [u8; 8],
    /// The authority's ed25519 signature.
    pub signature: [u8; 64],
}

impl DeviceCertificate {
    /// The 160 bytes as stored and sent.
    pub fn to_bytes(&self) -> [u8; CERTIFICATE_LEN] {
        codec::to_array(self)
    }

    /// SHA-256 of the encoded certificate (binds a sealed device key to it).
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }

    /// The label and the 96 signed bytes.
    fn signed_message(&self) -> [u8; SIGNATURE_LABEL.len() + SIGNED_LEN] {
        let mut out = [0u8; SIGNATURE_LABEL.len() + SIGNED_LEN];
        out[..SIGNATURE_LABEL.len()].copy_from_slice(SIGNATURE_LABEL);
        out[SIGNATURE_LABEL.len()..].copy_from_slice(&self.to_bytes()[..SIGNED_LEN]);
        out
    }

    /// Checks the signature under `authority_public` (strict ed25519: no weak key, no
    /// non-canonical encoding); any failure is [`ErrorCode::BadCertificate`].
    pub fn verify(&self, authority_public: &[u8; 32]) -> Result<(), ErrorCode> {
        if !bool::from(
            self.authority_key_id
                .ct_eq(&authority_key_id(authority_public)),
        ) {
            return Err(ErrorCode::BadCertificate);
        }
        let key =
            VerifyingKey::from_bytes(authority_public).map_err(|_| ErrorCode::BadCertificate)?;
        key.verify_strict(
            &self.signed_message(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| ErrorCode::BadCertificate)
    }

    /// Checks that the certificate names this chip, this product and this device key
    /// ([`ErrorCode::CertificateMismatch`] otherwise). Does not check the signature.
    pub fn check_binding(
        &self,
        unique_id: &Serial,
        product_id: u32,
        device_key: &[u8; 32],
    ) -> Result<(), ErrorCode> {
        let key_matches = self.body.key_commitment.ct_eq(&key_commitment(device_key));
        if self.body.unique_id != *unique_id
            || self.body.product_id != product_id
            || !bool::from(key_matches)
        {
            return Err(ErrorCode::CertificateMismatch);
        }
        Ok(())
    }
}

/// The 160-byte certificate; a wrong magic, format or reserved field is [`ErrorCode::BadMagic`].
impl Codec<'_> for DeviceCertificate {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        let b = &self.body;
        w.u32(CERT_MAGIC)?;
        w.u16(CERT_FORMAT)?;
        w.u16(0)?;
        w.u32(b.product_id)?;
        w.put(&b.unique_id)?;
        w.put(&b.key_commitment)?;
        w.put(&b.order_ref)?;
        w.u32(b.sequence)?;
        w.u64(b.issued_at_ms)?;
        w.put(&self.authority_key_id)?;
        w.put(&self.signature)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        if r.u32()? != CERT_MAGIC || r.u16()? != CERT_FORMAT || r.u16()? != 0 {
            return Err(ErrorCode::BadMagic);
        }
        Ok(Self {
            body: CertificateBody {
                product_id: r.u32()?,
                unique_id: r.array()?,
                key_commitment: r.array()?,
                order_ref: r.array()?,
                sequence: r.u32()?,
                issued_at_ms: r.u64()?,
            },
            authority_key_id: r.array()?,
            signature: r.array()?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn authority() -> SigningKey {
        SigningKey::from_bytes(&[0x31; 32])
    }

    pub(crate) fn body() -> CertificateBody {
        CertificateBody {
            product_id: 7,
            unique_id: [0x11; 16],
            key_commitment: key_commitment(&[0x22; 32]),
            order_ref: order_ref("order-1"),
            sequence: 3,
            issued_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn signed_certificate_verifies_and_round_trips() {
        let cert = body().sign(&authority());
        let public = authority().verifying_key().to_bytes();
        assert_eq!(cert.verify(&public), Ok(()));
        let bytes = cert.to_bytes();
        assert_eq!(bytes.len(), CERTIFICATE_LEN);
        assert_eq!(DeviceCertificate::read_bytes(&bytes), Ok(cert));
        assert_eq!(
            hex::encode(bytes),
            include_str!("../vectors/device_certificate.hex").trim()
        );
    }

    #[test]
    fn any_flipped_bit_or_other_authority_is_a_bad_certificate() {
        let cert = body().sign(&authority());
        let public = authority().verifying_key().to_bytes();
        let bytes = cert.to_bytes();
        for i in 0..CERTIFICATE_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x04;
            let verdict = DeviceCertificate::read_bytes(&bad).and_then(|c| c.verify(&public));
            assert!(verdict.is_err(), "byte {i} flip accepted");
        }
        let other = SigningKey::from_bytes(&[0x32; 32]);
        let by_other = body().sign(&other);
        assert_eq!(by_other.verify(&public), Err(ErrorCode::BadCertificate));
        // The other key's id, but our key's claim: still refused.
        let mut relabelled = by_other;
        relabelled.authority_key_id = cert.authority_key_id;
        assert_eq!(relabelled.verify(&public), Err(ErrorCode::BadCertificate));
    }

    #[test]
    fn a_weak_authority_key_verifies_nothing() {
        // The identity point with signature (R = identity, s = 0) passes a cofactorless
        // non-strict check for any message; verify_strict refuses the weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut forged = body().sign(&authority());
        forged.authority_key_id = authority_key_id(&identity);
        let mut sig = [0u8; 64];
        sig[0] = 1;
        forged.signature = sig;
        assert_eq!(forged.verify(&identity), Err(ErrorCode::BadCertificate));
    }

    #[test]
    fn binding_names_chip_product_and_key() {
        let cert = body().sign(&authority());
        assert_eq!(cert.check_binding(&[0x11; 16], 7, &[0x22; 32]), Ok(()));
        for (uid, product, key) in [
            ([0x12; 16], 7, [0x22; 32]),
            ([0x11; 16], 8, [0x22; 32]),
            ([0x11; 16], 7, [0x23; 32]),
        ] {
            assert_eq!(
                cert.check_binding(&uid, product, &key),
                Err(ErrorCode::CertificateMismatch)
            );
        }
    }
}
