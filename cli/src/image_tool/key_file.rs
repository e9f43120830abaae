//! Vendor signing key files: the ed25519 seed as 64 hex characters and a newline, in a new file
//! only its owner can read (mode 0600) — the format `flashgate-coordinator gen-key` writes.
//!
//! A key file holds the key in clear: it is the default for development and small teams.
//! Production signing keys belong in an HSM or a cloud KMS, reached with `--signer-cmd`.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::OsRng;
use zeroize::Zeroizing;

/// Why a key file cannot be written or used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// `keygen` never replaces a key.
    #[error("{} already exists: a signing key is never overwritten (choose another --out)", .0.display())]
    Exists(PathBuf),
    /// The file cannot be created, written or read.
    #[error("cannot {action} key file {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not 64 hex characters.
    #[error(
        "{} is not a flashgate signing key (64 hex characters, as `flashgate image keygen` writes)",
        .0.display()
    )]
    Malformed(PathBuf),
    /// Group or others may read it.
    #[error(
        "{} is readable by other users (mode {mode:03o}): a signing key must be private \
         (chmod 600 {})",
        path.display(),
        path.display()
    )]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Draws a new key, writes it to `path` (which must not exist) with mode 0600 and returns its
/// public half.
pub fn generate(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    let key = SigningKey::generate(&mut OsRng);
    let text = Zeroizing::new(hex::encode(key.to_bytes()) + "\n");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let io = |action| {
        move |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeyFileError::Exists(path.to_owned()),
            _ => KeyFileError::Io {
                action,
                path: path.to_owned(),
                source,
            },
        }
    };
    let mut file = options.open(path).map_err(io("create"))?;
    file.write_all(text.as_bytes()).map_err(io("write"))?;
    file.sync_all().map_err(io("write"))?;
    Ok(key.verifying_key())
}

/// Reads the signing key in `path`; refuses a file other users can read.
pub fn load(path: &Path) -> Result<SigningKey, KeyFileError> {
    let io = |source| KeyFileError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::NotPrivate {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut seed[..])
        .map_err(|_| KeyFileError::Malformed(path.to_owned()))?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_loads_back_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vendor.key");
        let public = generate(&path).unwrap();
        assert_eq!(load(&path).unwrap().verifying_key(), public);
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(generate(&path), Err(KeyFileError::Exists(_))));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let refused = load(&path).unwrap_err();
            assert!(matches!(
                refused,
                KeyFileError::NotPrivate { mode: 0o640, .. }
            ));
            // The message names the file and the fix, never the key.
            let text = refused.to_string();
            assert!(text.contains("chmod 600"), "{text}");
            assert!(!text.contains(std::str::from_utf8(&before).unwrap().trim()));
        }
    }
}
