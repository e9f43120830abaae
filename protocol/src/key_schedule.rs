//! Session keys for provisioning over the debug link.
//!
//! Both ends hash a transcript of everything public that binds the session (both X25519
//! public keys, the serial, the station's job nonce and the digest of the loader that runs),
//! then derive one key per direction with HKDF-SHA256 from the X25519 shared secret, salted by
//! that transcript. A loader other than the one the station wrote, or a parameter block for
//! another job, gives other keys and the first frame fails.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{ErrorCode, Serial};

/// Length of the station's job nonce in the parameter block.
pub const JOB_NONCE_LEN: usize = 16;

const TRANSCRIPT_LABEL: &[u8] = b"flashgate-provisioning-v1";

/// Public inputs that both sides hash into the transcript.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transcript {
    /// The station's X25519 public key (from the parameter block).
    pub station_public: [u8; 32],
    /// The loader's ephemeral X25519 public key (from its hello).
    pub loader_public: [u8; 32],
    /// The board's unique ID.
    pub serial: Serial,
    /// Fresh per job, chosen by the station.
    pub job_nonce: [u8; JOB_NONCE_LEN],
    /// SHA-256 of the loader image as written into RAM.
    pub loader_digest: [u8; 32],
}

impl Transcript {
    /// SHA-256 over the label and every field, in declaration order.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(TRANSCRIPT_LABEL);
        h.update(self.station_public);
        h.update(self.loader_public);
        h.update(self.serial);
        h.update(self.job_nonce);
        h.update(self.loader_digest);
        h.finalize().into()
    }
}

/// The two directional keys of one provisioning session.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    /// Seals frames from the station to the target.
    pub station_to_target: [u8; 32],
    /// Seals replies from the target to the station.
    pub target_to_station: [u8; 32],
    /// The transcript hash the keys are bound to (public; echoed in key confirmation).
    #[zeroize(skip)]
    pub transcript_hash: [u8; 32],
}

impl SessionKeys {
    /// Derives the keys from our secret and the peer's public key.
    ///
    /// Refuses a peer key that yields a non-contributory shared secret (a low-order point),
    /// which would make the keys predictable.
    pub fn derive(
        own_secret: &StaticSecret,
        peer_public: &[u8; 32],
        transcript: &Transcript,
    ) -> Result<Self, ErrorCode> {
        let shared = own_secret.diffie_hellman(&PublicKey::from(*peer_public));
        if !shared.was_contributory() {
            return Err(ErrorCode::WeakPublicKey);
        }
        let transcript_hash = transcript.hash();
        let hk = Hkdf::<Sha256>::new(Some(&transcript_hash), shared.as_bytes());
        let mut keys = SessionKeys {
            station_to_target: [0; 32],
            target_to_station: [0; 32],
            transcript_hash,
        };
        // Expanding 32 bytes from SHA-256 HKDF cannot fail.
        hk.expand(b"station-to-target", &mut keys.station_to_target)
            .map_err(|_| ErrorCode::BadLength)?;
        hk.expand(b"target-to-station", &mut keys.target_to_station)
            .map_err(|_| ErrorCode::BadLength)?;
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(station: &StaticSecret, loader: &StaticSecret) -> Transcript {
        Transcript {
            station_public: PublicKey::from(station).to_bytes(),
            loader_public: PublicKey::from(loader).to_bytes(),
            serial: [0x11; 16],
            job_nonce: [0x22; 16],
            loader_digest: [0x33; 32],
        }
    }

    #[test]
    fn both_sides_derive_the_same_keys() {
        let station = StaticSecret::from([1u8; 32]);
        let loader = StaticSecret::from([2u8; 32]);
        let t = transcript(&station, &loader);
        let a = SessionKeys::derive(&station, &t.loader_public, &t).unwrap();
        let b = SessionKeys::derive(&loader, &t.station_public, &t).unwrap();
        assert_eq!(a.station_to_target, b.station_to_target);
        assert_eq!(a.target_to_station, b.target_to_station);
        assert_ne!(a.station_to_target, a.target_to_station);
    }

    /// Fixed vector: catches any change to labels, field order or KDF.
    #[test]
    fn key_schedule_vector() {
        let station = StaticSecret::from([1u8; 32]);
        let loader = StaticSecret::from([2u8; 32]);
        let t = transcript(&station, &loader);
        let k = SessionKeys::derive(&station, &t.loader_public, &t).unwrap();
        assert_eq!(
            hex::encode(k.transcript_hash),
            include_str!("../vectors/transcript_hash.hex").trim()
        );
        assert_eq!(
            hex::encode(k.station_to_target),
            include_str!("../vectors/station_to_target.hex").trim()
        );
        assert_eq!(
            hex::encode(k.target_to_station),
            include_str!("../vectors/target_to_station.hex").trim()
        );
    }

    #[test]
    fn transcript_binds_every_field() {
        let station = StaticSecret::from([1u8; 32]);
        let loader = StaticSecret::from([2u8; 32]);
        let base = transcript(&station, &loader);
        let mut variants = [base; 5];
        variants[0].station_public[0] ^= 1;
        variants[1].loader_public[0] ^= 1;
        variants[2].serial[0] ^= 1;
        variants[3].job_nonce[0] ^= 1;
        variants[4].loader_digest[0] ^= 1;
        for v in variants {
            assert_ne!(v.hash(), base.hash());
        }
    }

    #[test]
    fn low_order_peer_key_is_refused() {
        let station = StaticSecret::from([1u8; 32]);
        let t = transcript(&station, &StaticSecret::from([2u8; 32]));
        let zero = [0u8; 32];
        assert_eq!(
            SessionKeys::derive(&station, &zero, &t).err(),
            Some(ErrorCode::WeakPublicKey)
        );
    }
}
