//! A device key travels from the coordinator to the target's flash loader sealed to the
//! loader's ephemeral X25519 key (from its hello, forwarded by the station), so no station
//! ever holds a device key in clear:
//!
//! ```text
//! sealed_device_key (80 B) = eph_pub [32] ‖ ChaCha20-Poly1305(k, nonce 0,
//!                            aad = "FGDK" ‖ serial ‖ SHA-256(certificate), device_key [32]) ‖ tag [16]
//! k = HKDF-SHA256(salt "flashgate-device-key-transport-v1", ikm X25519(eph, loader_pub),
//!                 info eph_pub ‖ loader_pub)
//! ```
//! The coordinator's ephemeral key is fresh per seal, so nonce 0 is used once per key. A
//! low-order key on either side (a non-contributory shared secret, which would make `k`
//! public) is refused with [`ErrorCode::WeakPublicKey`] at both ends. A box that does not
//! open — sealed to another loader run, for another serial or another certificate, or
//! altered — is [`ErrorCode::WrongDevice`].

use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit, Nonce, Tag};
use rand_core::CryptoRngCore;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::certificate::DeviceCertificate;
use crate::{ErrorCode, Serial};

/// Ephemeral public key, encrypted key, tag.
pub const SEALED_DEVICE_KEY_LEN: usize = 32 + 32 + 16;
const KDF_SALT: &[u8] = b"flashgate-device-key-transport-v1";
const AAD_MAGIC: &[u8; 4] = b"FGDK";

fn aad(serial: &Serial, certificate: &DeviceCertificate) -> [u8; 4 + 16 + 32] {
    let mut out = [0u8; 4 + 16 + 32];
    out[..4].copy_from_slice(AAD_MAGIC);
    out[4..20].copy_from_slice(serial);
    out[20..].copy_from_slice(&certificate.digest());
    out
}

fn box_key(
    own: &StaticSecret,
    peer: &[u8; 32],
    eph_public: &[u8; 32],
    loader_public: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, ErrorCode> {
    let shared = own.diffie_hellman(&PublicKey::from(*peer));
    if !shared.was_contributory() {
        return Err(ErrorCode::WeakPublicKey);
    }
    Ok(crate::kdf::derive(
        shared.as_bytes(),
        KDF_SALT,
        &[eph_public, loader_public],
    ))
}

/// Coordinator side: seals `device_key` to the loader key of one provisioning run, bound to
/// the chip's serial and its certificate.
pub fn seal(
    loader_public: &[u8; 32],
    serial: &Serial,
    certificate: &DeviceCertificate,
    device_key: &[u8; 32],
    rng: &mut impl CryptoRngCore,
) -> Result<[u8; SEALED_DEVICE_KEY_LEN], ErrorCode> {
    let eph = StaticSecret::random_from_rng(&mut *rng);
    let eph_public = PublicKey::from(&eph).to_bytes();
    let key = box_key(&eph, loader_public, &eph_public, loader_public)?;
    let mut out = [0u8; SEALED_DEVICE_KEY_LEN];
    out[..32].copy_from_slice(&eph_public);
    out[32..64].copy_from_slice(device_key);
    let tag = ChaCha20Poly1305::new((&*key).into())
        .encrypt_in_place_detached(
            &Nonce::default(),
            &aad(serial, certificate),
            &mut out[32..64],
        )
        .map_err(|_| ErrorCode::BadLength)?;
    out[64..].copy_from_slice(&tag);
    Ok(out)
}

/// Loader side: opens a sealed device key with the loader's ephemeral secret.
pub fn open(
    loader_secret: &StaticSecret,
    serial: &Serial,
    certificate: &DeviceCertificate,
    sealed: &[u8; SEALED_DEVICE_KEY_LEN],
) -> Result<Zeroizing<[u8; 32]>, ErrorCode> {
    let loader_public = PublicKey::from(loader_secret).to_bytes();
    open_with_public(loader_secret, &loader_public, serial, certificate, sealed)
}

/// [`open`] for a caller that kept the public half of `loader_secret` (the flash loader, from
/// its hello): one X25519 instead of two. A `loader_public` that is not that half derives
/// another box key, so the box does not open ([`ErrorCode::WrongDevice`]).
pub fn open_with_public(
    loader_secret: &StaticSecret,
    loader_public: &[u8; 32],
    serial: &Serial,
    certificate: &DeviceCertificate,
    sealed: &[u8; SEALED_DEVICE_KEY_LEN],
) -> Result<Zeroizing<[u8; 32]>, ErrorCode> {
    let mut eph_public = [0u8; 32];
    eph_public.copy_from_slice(&sealed[..32]);
    let key = box_key(loader_secret, &eph_public, &eph_public, loader_public)?;
    let mut plain = Zeroizing::new([0u8; 32]);
    plain.copy_from_slice(&sealed[32..64]);
    ChaCha20Poly1305::new((&*key).into())
        .decrypt_in_place_detached(
            &Nonce::default(),
            &aad(serial, certificate),
            &mut plain[..],
            Tag::from_slice(&sealed[64..]),
        )
        .map_err(|_| ErrorCode::WrongDevice)?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::tests::{authority, body};
    use crate::key_schedule::LOW_ORDER_POINTS;
    use rand_core::OsRng;

    fn loader() -> StaticSecret {
        StaticSecret::from([0x44; 32])
    }

    #[test]
    fn round_trip_and_every_binding() {
        let cert = body().sign(&authority());
        let public = PublicKey::from(&loader()).to_bytes();
        let sealed = seal(&public, &[0x11; 16], &cert, &[0x22; 32], &mut OsRng).unwrap();
        assert_eq!(
            *open(&loader(), &[0x11; 16], &cert, &sealed).unwrap(),
            [0x22; 32]
        );
        // Another loader run, another serial, another certificate, a flipped bit.
        let other_run = StaticSecret::from([0x45; 32]);
        assert_eq!(
            open(&other_run, &[0x11; 16], &cert, &sealed).err(),
            Some(ErrorCode::WrongDevice)
        );
        assert_eq!(
            open(&loader(), &[0x12; 16], &cert, &sealed).err(),
            Some(ErrorCode::WrongDevice)
        );
        let mut other_cert = cert;
        other_cert.body.sequence += 1;
        assert_eq!(
            open(&loader(), &[0x11; 16], &other_cert, &sealed).err(),
            Some(ErrorCode::WrongDevice)
        );
        for i in 0..SEALED_DEVICE_KEY_LEN {
            let mut bad = sealed;
            bad[i] ^= 1;
            assert!(
                open(&loader(), &[0x11; 16], &cert, &bad).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn opening_with_the_kept_public_key_is_opening_and_a_wrong_one_does_not_open() {
        let cert = body().sign(&authority());
        let public = PublicKey::from(&loader()).to_bytes();
        let sealed = seal(&public, &[0x11; 16], &cert, &[0x22; 32], &mut OsRng).unwrap();
        let opened = open_with_public(&loader(), &public, &[0x11; 16], &cert, &sealed).unwrap();
        assert_eq!(*opened, [0x22; 32]);
        let mut other = public;
        other[0] ^= 1;
        assert_eq!(
            open_with_public(&loader(), &other, &[0x11; 16], &cert, &sealed).err(),
            Some(ErrorCode::WrongDevice)
        );
    }

    #[test]
    fn low_order_keys_are_refused_on_both_ends() {
        let cert = body().sign(&authority());
        for point in LOW_ORDER_POINTS {
            // The coordinator refuses to seal to a low-order "loader key" (the box key would
            // be public) …
            assert_eq!(
                seal(point, &[0x11; 16], &cert, &[0x22; 32], &mut OsRng).err(),
                Some(ErrorCode::WeakPublicKey)
            );
            // … and the loader refuses a box from a low-order ephemeral key.
            let mut sealed = [0u8; SEALED_DEVICE_KEY_LEN];
            sealed[..32].copy_from_slice(point);
            assert_eq!(
                open(&loader(), &[0x11; 16], &cert, &sealed).err(),
                Some(ErrorCode::WeakPublicKey)
            );
        }
    }

    #[test]
    fn fixed_vector() {
        // Deterministic: the coordinator's ephemeral key from a fixed "rng".
        struct Fixed;
        impl rand_core::RngCore for Fixed {
            fn next_u32(&mut self) -> u32 {
                0x5555_5555
            }
            fn next_u64(&mut self) -> u64 {
                0x5555_5555_5555_5555
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                dest.fill(0x55);
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
                dest.fill(0x55);
                Ok(())
            }
        }
        impl rand_core::CryptoRng for Fixed {}
        let cert = body().sign(&authority());
        let public = PublicKey::from(&loader()).to_bytes();
        let sealed = seal(&public, &[0x11; 16], &cert, &[0x22; 32], &mut Fixed).unwrap();
        assert_eq!(
            hex::encode(sealed),
            include_str!("../vectors/sealed_device_key.hex").trim()
        );
    }
}
