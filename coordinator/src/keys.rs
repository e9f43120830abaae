//! The coordinator's secrets: the key-encryption key ring that seals lease secrets and device
//! keys at rest, and the ed25519 key that signs leases.
//!
//! A KEK is 32 bytes given as 64 hex characters in a file (`--kek-file`) or in the environment
//! (`FLASHGATE_KEK`). Sealed blobs name the KEK that sealed them by a 4-byte id (a hash of the
//! key, useless to an attacker), so older KEKs can stay loaded for opening while the current
//! one seals; see `docs/coordinator.md` for the rotation procedure. Neither key type implements
//! `Debug` with its contents, and no error message carries key bytes.

use std::path::Path;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const SEAL_FORMAT: u8 = 1;

/// Why a key could not be loaded or a blob opened. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file's path.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A key is not 32 bytes written as 64 hex characters.
    #[error("{what} must be 32 bytes written as 64 hex characters")]
    Format {
        /// Which key it was (as the command line names it).
        what: &'static str,
    },
    /// A sealed blob names a KEK (by its hex id) that is not loaded.
    #[error("sealed data names KEK {0}, which is not loaded: start the coordinator with that KEK as --previous-kek-file (see the rotation procedure)")]
    UnknownKek(String),
    /// A sealed blob failed authentication.
    #[error("sealed data failed authentication (wrong KEK, or the stored record was altered)")]
    Tampered,
}

/// Parses 64 hex characters (surrounding whitespace allowed) into a 32-byte secret.
pub fn parse_hex_key(text: &str, what: &'static str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut key[..]).map_err(|_| KeyError::Format { what })?;
    Ok(key)
}

/// Reads a hex key file.
pub fn read_hex_key_file(path: &Path, what: &'static str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?,
    );
    parse_hex_key(&text, what)
}

/// One key-encryption key.
pub struct Kek {
    id: [u8; 4],
    key: Zeroizing<[u8; 32]>,
}

impl Kek {
    /// A KEK from its 32 secret bytes; its id is derived from them.
    pub fn new(key: Zeroizing<[u8; 32]>) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"flashgate-kek-id-v1");
        hasher.update(&key[..]);
        let digest = hasher.finalize();
        let mut id = [0u8; 4];
        id.copy_from_slice(&digest[..4]);
        Self { id, key }
    }

    /// Draws a fresh random KEK.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut key[..]);
        Self::new(key)
    }

    /// The public id of this KEK (hex), as named in sealed blobs.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }
}

/// The current KEK (seals and opens) plus previous ones (open only, during a rotation).
pub struct KekRing {
    current: Kek,
    previous: Vec<Kek>,
}

impl KekRing {
    /// A ring sealing with `current` and opening with it or any of `previous`.
    pub fn new(current: Kek, previous: Vec<Kek>) -> Self {
        Self { current, previous }
    }

    /// The hex id of the KEK new blobs are sealed under.
    pub fn current_id(&self) -> String {
        self.current.id_hex()
    }

    /// Seals `plaintext` under the current KEK, bound to `aad`:
    /// `format u8 | kek id [4] | nonce [12] | ChaCha20-Poly1305 ciphertext+tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let cipher = ChaCha20Poly1305::new((&*self.current.key).into());
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("ChaCha20-Poly1305 cannot fail on a short plaintext");
        let mut out = Vec::with_capacity(1 + 4 + 12 + ciphertext.len());
        out.push(SEAL_FORMAT);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens a blob sealed by [`Self::seal`] under any loaded KEK.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < 1 + 4 + 12 + 16 || sealed[0] != SEAL_FORMAT {
            return Err(KeyError::Tampered);
        }
        let id = &sealed[1..5];
        let kek = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|k| k.id == id)
            .ok_or_else(|| KeyError::UnknownKek(hex::encode(id)))?;
        let cipher = ChaCha20Poly1305::new((&*kek.key).into());
        cipher
            .decrypt(
                Nonce::from_slice(&sealed[5..17]),
                Payload {
                    msg: &sealed[17..],
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Tampered)
    }

    /// Whether `sealed` was sealed under the current KEK (rotation re-seals the others).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.get(1..5) == Some(&self.current.id[..])
    }

    /// Opens a 32-byte secret.
    pub fn open_key(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let plain = self.open(aad, sealed)?;
        let mut out = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(KeyError::Tampered);
        }
        out.copy_from_slice(&plain);
        Ok(out)
    }
}

/// AAD binding a sealed device key to its product and serial.
pub fn device_key_aad(product_id: u32, serial: &[u8; 16]) -> Vec<u8> {
    let mut aad = b"flashgate-device-key-v1".to_vec();
    aad.extend_from_slice(&product_id.to_be_bytes());
    aad.extend_from_slice(serial);
    aad
}

/// AAD binding a sealed release image to its digest.
pub fn release_image_aad(digest: &[u8; 32]) -> Vec<u8> {
    let mut aad = b"flashgate-release-image-v1".to_vec();
    aad.extend_from_slice(digest);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_rotation() {
        let old = Kek::generate();
        let old_copy = Kek::new(old.key.clone());
        let ring_old = KekRing::new(old, vec![]);
        let blob = ring_old.seal(b"aad", b"secret");
        assert_eq!(&ring_old.open(b"aad", &blob).unwrap()[..], b"secret");
        assert!(matches!(
            ring_old.open(b"other", &blob),
            Err(KeyError::Tampered)
        ));

        let ring_new_only = KekRing::new(Kek::generate(), vec![]);
        assert!(matches!(
            ring_new_only.open(b"aad", &blob),
            Err(KeyError::UnknownKek(_))
        ));
        let ring_rotating = KekRing::new(Kek::generate(), vec![old_copy]);
        assert_eq!(&ring_rotating.open(b"aad", &blob).unwrap()[..], b"secret");
        assert!(!ring_rotating.is_current(&blob));
        let mut flipped = blob.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            ring_old.open(b"aad", &flipped),
            Err(KeyError::Tampered)
        ));
    }

    #[test]
    fn key_errors_do_not_echo_input() {
        let err = parse_hex_key("zz-secret-zz", "KEK")
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("secret"));
    }
}
