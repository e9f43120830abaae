//! A release image on its way to a station: sealed to the station's X25519 key and bound to the
//! release, the station and the order (`FetchRelease`), so a recording proxy, a TLS-terminating
//! middlebox or another station learns nothing from it.
//!
//! ```text
//! sealed = eph_pub [32] ‖ ChaCha20-Poly1305(k, nonce 0, aad, image) ‖ tag [16]
//! k      = HKDF-SHA256(salt "flashgate-release-to-station-v1", ikm X25519(eph, station_pub),
//!                      info eph_pub ‖ station_pub)
//! aad    = "FGRS" ‖ release digest [32] ‖ len ‖ station id ‖ len ‖ order id   (lengths u16 LE)
//! ```
//! A fresh ephemeral key per seal makes nonce 0 safe. Low-order (non-contributory) shared
//! secrets are refused at both ends.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::Sha256;
use x25519_dalek::{EphemeralSecret, PublicKey, StaticSecret};
use zeroize::Zeroizing;

const SALT: &[u8] = b"flashgate-release-to-station-v1";
const MAGIC: &[u8; 4] = b"FGRS";
/// Bytes a sealed image has beyond the image itself.
pub const OVERHEAD: usize = 32 + 16;

/// Why a sealed image does not open.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Shorter than an ephemeral key and a tag.
    #[error("the sealed release is truncated")]
    Truncated,
    /// The ephemeral key is a low-order point.
    #[error("the sealed release uses a low-order key")]
    LowOrder,
    /// Wrong station, release or order, or altered in transit.
    #[error("the sealed release does not open for this station, release and order")]
    Unauthentic,
}

/// The AAD binding a sealed image to its release, station and order.
pub fn aad(release_digest: &[u8; 32], station_id: &str, order_id: &str) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(release_digest);
    for part in [station_id, order_id] {
        let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&part.as_bytes()[..usize::from(len)]);
    }
    out
}

fn cipher(shared: &[u8; 32], eph_pub: &[u8; 32], station_pub: &[u8; 32]) -> ChaCha20Poly1305 {
    let mut info = [0u8; 64];
    info[..32].copy_from_slice(eph_pub);
    info[32..].copy_from_slice(station_pub);
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(SALT), shared)
        .expand(&info, &mut key[..])
        .expect("32 bytes is a valid HKDF-SHA256 length");
    ChaCha20Poly1305::new((&*key).into())
}

/// Seals `image` to the station whose X25519 public key is `station_pub`; `None` if that key is
/// a low-order point (no station can hold its secret).
pub fn seal(
    station_pub: &[u8; 32],
    aad: &[u8],
    image: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Option<Vec<u8>> {
    let eph = EphemeralSecret::random_from_rng(rng);
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*station_pub));
    if !shared.was_contributory() {
        return None;
    }
    let sealed = cipher(shared.as_bytes(), &eph_pub, station_pub)
        .encrypt(Nonce::from_slice(&[0u8; 12]), Payload { msg: image, aad })
        .ok()?;
    let mut out = Vec::with_capacity(32 + sealed.len());
    out.extend_from_slice(&eph_pub);
    out.extend_from_slice(&sealed);
    Some(out)
}

/// Opens a sealed image with the station's X25519 secret; the plaintext is wiped when dropped.
pub fn open(
    station: &StaticSecret,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < OVERHEAD {
        return Err(SealError::Truncated);
    }
    let eph_pub: [u8; 32] = sealed[..32].try_into().map_err(|_| SealError::Truncated)?;
    let station_pub = PublicKey::from(station).to_bytes();
    let shared = station.diffie_hellman(&PublicKey::from(eph_pub));
    if !shared.was_contributory() {
        return Err(SealError::LowOrder);
    }
    cipher(shared.as_bytes(), &eph_pub, &station_pub)
        .decrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: &sealed[32..],
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Unauthentic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn opens_only_for_its_station_release_and_order() {
        let station = StaticSecret::random_from_rng(OsRng);
        let public = PublicKey::from(&station).to_bytes();
        let binding = aad(&[1; 32], "station-a", "order-1");
        let sealed = seal(&public, &binding, b"bootloader body", &mut OsRng).unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"bootloader"));
        assert_eq!(
            &open(&station, &binding, &sealed).unwrap()[..],
            b"bootloader body"
        );
        for other in [
            aad(&[2; 32], "station-a", "order-1"),
            aad(&[1; 32], "station-b", "order-1"),
            aad(&[1; 32], "station-a", "order-2"),
        ] {
            assert_eq!(open(&station, &other, &sealed), Err(SealError::Unauthentic));
        }
        let stranger = StaticSecret::random_from_rng(OsRng);
        assert_eq!(
            open(&stranger, &binding, &sealed),
            Err(SealError::Unauthentic)
        );
        assert_eq!(
            open(&station, &binding, &sealed[..40]),
            Err(SealError::Truncated)
        );
        assert!(
            seal(&[0u8; 32], &binding, b"x", &mut OsRng).is_none(),
            "low order"
        );
    }
}
