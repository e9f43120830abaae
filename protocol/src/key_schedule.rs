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

/// Refuses an X25519 public key that gives a non-contributory shared secret with any secret
/// (a point of small order, whose "shared secret" is the all-zero value anyone can compute):
/// [`ErrorCode::WeakPublicKey`]. For keys that are stored for later sealing (a station's key at
/// enrolment), where no shared secret is computed yet to look at.
pub fn refuse_low_order(public: &[u8; 32]) -> Result<(), ErrorCode> {
    // A clamped scalar is a multiple of the cofactor 8, so every small-order point maps to the
    // identity under it, and no point of large order does.
    let probe = StaticSecret::from([0x5A; 32]);
    if probe
        .diffie_hellman(&PublicKey::from(*public))
        .was_contributory()
    {
        Ok(())
    } else {
        Err(ErrorCode::WeakPublicKey)
    }
}

/// The encodings of Curve25519's small-order points (including non-canonical ones), as
/// libsodium's blocklist has them: what [`refuse_low_order`] and every X25519 exchange here
/// refuse. For tests of the callers.
pub const LOW_ORDER_POINTS: &[[u8; 32]] = &[
    [0; 32],
    {
        let mut one = [0u8; 32];
        one[0] = 1;
        one
    },
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    high_point(0xec),
    high_point(0xed),
    high_point(0xee),
];

/// `low ‖ 0xff … ‖ 0x7f`: p − 1, p and p + 1 (the last two non-canonical encodings of 0 and 1).
const fn high_point(low: u8) -> [u8; 32] {
    let mut p = [0xffu8; 32];
    p[0] = low;
    p[31] = 0x7f;
    p
}

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
    fn every_low_order_point_is_refused_and_a_real_key_is_not() {
        for point in LOW_ORDER_POINTS {
            assert_eq!(refuse_low_order(point), Err(ErrorCode::WeakPublicKey));
        }
        let real = PublicKey::from(&StaticSecret::from([7u8; 32])).to_bytes();
        assert_eq!(refuse_low_order(&real), Ok(()));
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
