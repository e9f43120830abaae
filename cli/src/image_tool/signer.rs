//! Who makes the vendor signature: a key file, or an external command so that an HSM or a
//! cloud KMS holds the key and flashgate never sees it.
//!
//! The external signer contract (`--signer-cmd 'CMD ARGS'`, run with `sh -c`): it reads the
//! exact bytes to sign on stdin (`"flashgate-image-v1" ‖ the 64-byte image header`, 82 bytes),
//! prints the 64-byte ed25519 signature as 128 hex characters on stdout (surrounding
//! whitespace is ignored) and exits 0; what it writes on stderr reaches the user. Whatever
//! signed, the signature is verified (strict ed25519) under the expected public key before it
//! is used, so a misconfigured signer (wrong key, wrong algorithm, garbage) never produces an
//! image.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// How long an external signer may take (a KMS round trip, a PIN on an HSM).
pub const SIGNER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why no signature came back. Names the command, never any key material.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// `sh` could not start it, or its pipes broke.
    #[error("cannot run the signer command `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("the signer command `{command}` failed ({status}); nothing was written")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// It took longer than [`SIGNER_TIMEOUT`] and was stopped.
    #[error("the signer command `{command}` did not answer within {} s and was stopped", SIGNER_TIMEOUT.as_secs())]
    TimedOut {
        /// The command line.
        command: String,
    },
    /// It printed something other than 128 hex characters.
    #[error(
        "the signer command `{command}` printed {what}, not a 64-byte signature as 128 hex \
         characters"
    )]
    BadOutput {
        /// The command line.
        command: String,
        /// What it printed, described (not echoed).
        what: String,
    },
    /// The signature does not verify under the expected public key.
    #[error(
        "the signature from {who} does not verify under public key {public}: wrong key or \
         algorithm; nothing was written"
    )]
    WrongSignature {
        /// `the signer command `…`` or `the key file`.
        who: String,
        /// The expected public key (hex).
        public: String,
    },
}

/// The source of vendor signatures.
pub enum Signer {
    /// A key loaded from a key file.
    Key(SigningKey),
    /// An external command, with the public key its signatures must verify under.
    Command {
        /// The command line, run with `sh -c`.
        command: String,
        /// The public half of the key it signs with.
        public: VerifyingKey,
    },
}

impl Signer {
    /// The public key signatures verify under.
    pub fn public(&self) -> VerifyingKey {
        match self {
            Self::Key(key) => key.verifying_key(),
            Self::Command { public, .. } => *public,
        }
    }

    /// Signs `message` and checks the signature before returning it.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignerError> {
        let (signature, who) = match self {
            Self::Key(key) => (key.sign(message).to_bytes(), "the key file".to_owned()),
            Self::Command { command, .. } => (
                run(command, message)?,
                format!("the signer command `{command}`"),
            ),
        };
        self.public()
            .verify_strict(message, &Signature::from_bytes(&signature))
            .map_err(|_| SignerError::WrongSignature {
                who,
                public: hex::encode(self.public().to_bytes()),
            })?;
        Ok(signature)
    }
}

/// Runs the external signer on `message` (see the module documentation).
fn run(command: &str, message: &[u8]) -> Result<[u8; 64], SignerError> {
    let spawn = |source| SignerError::Spawn {
        command: command.to_owned(),
        source,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(spawn)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    // A signer that ignores its input closes the pipe early: only its answer counts.
    let _ = stdin.write_all(message);
    drop(stdin);
    // Read on a thread so a silent, hanging signer can still be timed out.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout
            .by_ref()
            .take(4096)
            .read_to_end(&mut out)
            .map(|_| out)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn)? {
            break status;
        }
        if started.elapsed() > SIGNER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SignerError::TimedOut {
                command: command.to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = reader
        .join()
        .expect("the reader thread does not panic")
        .map_err(spawn)?;
    if !status.success() {
        return Err(SignerError::Failed {
            command: command.to_owned(),
            status,
        });
    }
    parse_signature(&out).map_err(|what| SignerError::BadOutput {
        command: command.to_owned(),
        what,
    })
}

fn parse_signature(out: &[u8]) -> Result<[u8; 64], String> {
    let text = std::str::from_utf8(out)
        .map_err(|_| format!("{} bytes that are not text", out.len()))?
        .trim();
    if text.is_empty() {
        return Err("nothing".into());
    }
    let mut signature = [0u8; 64];
    hex::decode_to_slice(text, &mut signature)
        .map_err(|_| format!("{} characters", text.chars().count()))?;
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn key_signatures_verify_and_command_output_is_parsed_strictly() {
        let key = SigningKey::generate(&mut OsRng);
        let signature = Signer::Key(key.clone()).sign(b"message").unwrap();
        assert_eq!(signature, key.sign(b"message").to_bytes());
        let hex = hex::encode(signature);
        assert_eq!(
            parse_signature(format!("  {hex}\n").as_bytes()),
            Ok(signature)
        );
        assert!(parse_signature(b"").is_err());
        assert!(parse_signature(&hex.as_bytes()[2..]).is_err());
        assert!(parse_signature(&signature).is_err());
    }

    #[test]
    fn a_command_signing_with_another_key_is_refused() {
        let other = SigningKey::generate(&mut OsRng);
        let forged = hex::encode(other.sign(b"message").to_bytes());
        let signer = Signer::Command {
            command: format!("cat >/dev/null; echo {forged}"),
            public: SigningKey::generate(&mut OsRng).verifying_key(),
        };
        assert!(matches!(
            signer.sign(b"message"),
            Err(SignerError::WrongSignature { .. })
        ));
        let honest = Signer::Command {
            command: format!("cat >/dev/null; echo {forged}"),
            public: other.verifying_key(),
        };
        assert_eq!(hex::encode(honest.sign(b"message").unwrap()), forged);
    }
}
