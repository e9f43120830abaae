//! The station's identity: an ed25519 key (signs every request to the coordinator) and an X25519
//! key (receives lease secrets). Made on first start, stored in `<state-dir>/identity.key` (mode
//! 0600), sealed with ChaCha20-Poly1305 under a 32-byte station KEK that lives outside the state
//! directory (`$FLASHGATE_STATION_KEK` or a systemd encrypted credential file). Never sent, never
//! printed: `Debug` shows only the fingerprint.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::SigningKey;
use rand::RngCore;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// File name of the sealed identity inside the state directory.
pub const IDENTITY_FILE: &str = "identity.key";
/// Environment variable holding the station KEK (64 hex characters).
pub const KEK_ENV: &str = "FLASHGATE_STATION_KEK";
const MAGIC: &[u8; 8] = b"FGSTID01";
const AAD: &[u8] = b"flashgate-station-identity-v1";

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No KEK was given.
    #[error("no station KEK: set ${KEK_ENV} (64 hex chars) or pass --kek-file (a systemd encrypted credential)")]
    NoKek,
    /// The KEK is malformed.
    #[error("the station KEK must be 32 bytes written as 64 hex characters")]
    BadKek,
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The identity file does not open under this KEK.
    #[error("{path} does not open under this station KEK (wrong KEK, or the file was altered)")]
    Unseal {
        /// Which file.
        path: PathBuf,
    },
}

/// The 32-byte key that seals the identity file.
pub struct StationKek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for StationKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StationKek(..)")
    }
}

impl StationKek {
    /// Parses 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, IdentityError> {
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut key[..]).map_err(|_| IdentityError::BadKek)?;
        Ok(Self(key))
    }

    /// A fresh random KEK (demos and tests).
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut key[..]);
        Self(key)
    }

    /// Reads the KEK from `file` if given, else from `$FLASHGATE_STATION_KEK`.
    pub fn load(file: Option<&Path>) -> Result<Self, IdentityError> {
        if let Some(path) = file {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                IdentityError::Io {
                    path: path.to_owned(),
                    source,
                }
            })?);
            return Self::from_hex(&text);
        }
        let text = Zeroizing::new(std::env::var(KEK_ENV).map_err(|_| IdentityError::NoKek)?);
        Self::from_hex(&text)
    }

    /// Writes the KEK as hex into a new 0600 file (demo and tests only: in production it is a
    /// systemd credential).
    pub fn write_to(&self, path: &Path) -> Result<(), IdentityError> {
        let text = Zeroizing::new(hex::encode(&self.0[..]));
        write_private(path, text.as_bytes())
    }
}

/// The station's two private keys.
pub struct StationIdentity {
    signing: SigningKey,
    x25519: StaticSecret,
}

impl std::fmt::Debug for StationIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationIdentity")
            .field("station_id", &self.station_id())
            .finish_non_exhaustive()
    }
}

impl StationIdentity {
    /// Opens `<state_dir>/identity.key`, or makes a new identity there on first start.
    pub fn load_or_create(state_dir: &Path, kek: &StationKek) -> Result<Self, IdentityError> {
        let path = state_dir.join(IDENTITY_FILE);
        match std::fs::read(&path) {
            Ok(sealed) => Self::unseal(&sealed, kek).ok_or(IdentityError::Unseal { path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(state_dir).map_err(|source| IdentityError::Io {
                    path: state_dir.to_owned(),
                    source,
                })?;
                let identity = Self {
                    signing: SigningKey::generate(&mut rand::rngs::OsRng),
                    x25519: StaticSecret::random_from_rng(rand::rngs::OsRng),
                };
                write_private(&path, &identity.seal(kek))?;
                tracing::info!(station = %identity.station_id(), "station identity created");
                Ok(identity)
            }
            Err(source) => Err(IdentityError::Io { path, source }),
        }
    }

    fn seal(&self, kek: &StationKek) -> Vec<u8> {
        let mut plain = Zeroizing::new([0u8; 64]);
        plain[..32].copy_from_slice(&self.signing.to_bytes());
        plain[32..].copy_from_slice(&self.x25519.to_bytes());
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&kek.0[..]));
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain[..],
                    aad: AAD,
                },
            )
            .expect("ChaCha20-Poly1305 encryption of 64 bytes cannot fail");
        [MAGIC.as_slice(), &nonce, &sealed].concat()
    }

    fn unseal(file: &[u8], kek: &StationKek) -> Option<Self> {
        let rest = file.strip_prefix(MAGIC.as_slice())?;
        if rest.len() != 12 + 64 + 16 {
            return None;
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&kek.0[..]));
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(&rest[..12]),
                    Payload {
                        msg: &rest[12..],
                        aad: AAD,
                    },
                )
                .ok()?,
        );
        let mut signing = Zeroizing::new([0u8; 32]);
        signing.copy_from_slice(&plain[..32]);
        let mut x = [0u8; 32];
        x.copy_from_slice(&plain[32..]);
        let x25519 = StaticSecret::from(x);
        zeroize::Zeroize::zeroize(&mut x);
        Some(Self {
            signing: SigningKey::from_bytes(&signing),
            x25519,
        })
    }

    /// The station id the coordinator knows it by (fingerprint of the ed25519 public key).
    pub fn station_id(&self) -> String {
        flashgate_proto::station_auth::fingerprint(&self.signing.verifying_key().to_bytes())
    }

    /// The ed25519 public key.
    pub fn ed25519_public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The X25519 public key.
    pub fn x25519_public(&self) -> [u8; 32] {
        PublicKey::from(&self.x25519).to_bytes()
    }

    /// The X25519 secret, for opening lease secrets.
    pub fn x25519_secret(&self) -> &StaticSecret {
        &self.x25519
    }

    /// A request signer for the coordinator client.
    pub fn signer(&self) -> flashgate_proto::station_auth::StationSigner {
        flashgate_proto::station_auth::StationSigner::new(self.signing.clone())
    }
}

/// Writes `bytes` to a new file readable only by its owner, durably.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_made_once_sealed_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let kek = StationKek::generate();
        let first = StationIdentity::load_or_create(dir.path(), &kek).unwrap();
        let again = StationIdentity::load_or_create(dir.path(), &kek).unwrap();
        assert_eq!(first.station_id(), again.station_id());
        assert_eq!(first.x25519_public(), again.x25519_public());
        let file = std::fs::read(dir.path().join(IDENTITY_FILE)).unwrap();
        let secret = first.signing.to_bytes();
        assert!(
            !file.windows(32).any(|w| w == secret),
            "key stored in clear"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let wrong = StationIdentity::load_or_create(dir.path(), &StationKek::generate());
        assert!(matches!(wrong, Err(IdentityError::Unseal { .. })));
        assert!(!format!("{first:?}").contains(&hex::encode(secret)));
    }
}
