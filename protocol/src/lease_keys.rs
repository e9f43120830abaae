//! Lease secrets and device keys.
//!
//! The coordinator draws a random secret per lease and sends it to the station sealed to the
//! station's X25519 key (an ECIES-style box: ephemeral X25519, HKDF-SHA256, ChaCha20-Poly1305,
//! bound to the lease id). The station derives each device's key from that secret and the
//! serial it reads from the board, so it never needs the coordinator online per device, and
//! the coordinator can recompute any registered device's key.

use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::{ErrorCode, Serial};

/// Ephemeral public key, encrypted secret, tag.
pub const SEALED_LEASE_SECRET_LEN: usize = 32 + 32 + 16;

fn box_key(shared: &[u8; 32], eph: &[u8; 32], recipient: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"flashgate-lease-secret-v1"), shared);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes from SHA-256 HKDF: cannot fail.
    let _ = hk.expand_multi_info(&[eph, recipient], &mut key[..]);
    key
}

/// Seals a lease secret to a station's X25519 public key.
pub fn seal_lease_secret(
    station_x25519_public: &[u8; 32],
    lease_secret: &[u8; 32],
    lease_id: &[u8],
    rng: &mut impl CryptoRngCore,
) -> [u8; SEALED_LEASE_SECRET_LEN] {
    let eph = StaticSecret::random_from_rng(&mut *rng);
    let eph_public = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*station_x25519_public));
    let key = box_key(shared.as_bytes(), &eph_public, station_x25519_public);
    let mut out = [0u8; SEALED_LEASE_SECRET_LEN];
    out[..32].copy_from_slice(&eph_public);
    out[32..64].copy_from_slice(lease_secret);
    // The key is fresh for every box, so a fixed nonce is safe.
    let tag = ChaCha20Poly1305::new((&*key).into())
        .encrypt_in_place_detached(&Nonce::default(), lease_id, &mut out[32..64])
        .expect("32-byte plaintext is within ChaCha20-Poly1305 limits");
    out[64..].copy_from_slice(&tag);
    out
}

/// Opens a sealed lease secret with the station's X25519 secret key.
pub fn open_lease_secret(
    station_x25519_secret: &[u8; 32],
    sealed: &[u8; SEALED_LEASE_SECRET_LEN],
    lease_id: &[u8],
) -> Result<Zeroizing<[u8; 32]>, ErrorCode> {
    let secret = StaticSecret::from(*station_x25519_secret);
    let mut eph_public = [0u8; 32];
    eph_public.copy_from_slice(&sealed[..32]);
    let shared = secret.diffie_hellman(&PublicKey::from(eph_public));
    if !shared.was_contributory() {
        return Err(ErrorCode::WeakPublicKey);
    }
    let recipient = PublicKey::from(&secret).to_bytes();
    let key = box_key(shared.as_bytes(), &eph_public, &recipient);
    let mut plain = Zeroizing::new([0u8; 32]);
    plain.copy_from_slice(&sealed[32..64]);
    ChaCha20Poly1305::new((&*key).into())
        .decrypt_in_place_detached(
            &Nonce::default(),
            lease_id,
            &mut plain[..],
            Tag::from_slice(&sealed[64..]),
        )
        .map_err(|_| ErrorCode::BadTag)?;
    Ok(plain)
}

/// The secret key of the device with `serial`, made under a lease.
pub fn derive_device_key(
    lease_secret: &[u8; 32],
    product_id: u32,
    serial: &Serial,
) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"flashgate-device-key-v1"), lease_secret);
    let mut key = Zeroizing::new([0u8; 32]);
    let _ = hk.expand_multi_info(&[&product_id.to_le_bytes(), serial], &mut key[..]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let station = StaticSecret::random_from_rng(OsRng);
        let public = PublicKey::from(&station).to_bytes();
        let sealed = seal_lease_secret(&public, &[5; 32], b"lease-1", &mut OsRng);
        let opened = open_lease_secret(&station.to_bytes(), &sealed, b"lease-1").unwrap();
        assert_eq!(*opened, [5; 32]);
        assert_eq!(
            open_lease_secret(&station.to_bytes(), &sealed, b"lease-2").err(),
            Some(ErrorCode::BadTag)
        );
        let other = StaticSecret::random_from_rng(OsRng);
        assert!(open_lease_secret(&other.to_bytes(), &sealed, b"lease-1").is_err());
        let mut tampered = sealed;
        tampered[40] ^= 1;
        assert!(open_lease_secret(&station.to_bytes(), &tampered, b"lease-1").is_err());
    }

    #[test]
    fn device_keys_are_per_serial_and_product() {
        let a = derive_device_key(&[1; 32], 7, &[1; 16]);
        assert_ne!(*a, *derive_device_key(&[1; 32], 7, &[2; 16]));
        assert_ne!(*a, *derive_device_key(&[1; 32], 8, &[1; 16]));
        assert_ne!(*a, *derive_device_key(&[2; 32], 7, &[1; 16]));
        assert_eq!(
            hex::encode(*a),
            include_str!("../vectors/device_key.hex").trim()
        );
    }
}
