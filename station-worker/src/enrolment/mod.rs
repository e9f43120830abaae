//! Enrolment from an operator's bundle, and the trust it leaves in the state directory.
//!
//! `flashgate-station enrol --bundle FILE` reads an [`EnrolmentBundle`] (made by `flashgate
//! station bundle`, carried here out of band), connects to the bundle's endpoint trusting only
//! the bundle's CA and presenting this station's identity certificate, and enrols with the
//! bundle's one-time token (which approves the station). On success it writes
//! [`StationTrust`] — endpoint, CA, lease-signing key, vendor keys; no token — to
//! `<state-dir>/trust.json`. Every later `run` trusts exactly that: nothing is learnt from the
//! network on first use.

use std::path::{Path, PathBuf};

use flashgate_proto::bundle::EnrolmentBundle;
use flashgate_proto::transport::{ClientTls, Security};
use flashgate_proto::v1;
use serde::{Deserialize, Serialize};

use crate::coordinator_client::CoordinatorClient;
use crate::identity::StationIdentity;

/// File name of the trust record in the state directory.
pub const TRUST_FILE: &str = "trust.json";

/// What a station trusts, from its enrolment bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StationTrust {
    /// The coordinator.
    pub endpoint: String,
    /// Its CA (PEM); empty: plain text (`--insecure-plaintext` bundles only).
    pub ca_pem: String,
    /// The lease-signing key, hex.
    pub lease_signing_public_key: String,
    /// Vendor keys releases must be signed by (hex); empty: the lease's.
    pub vendor_public_keys: Vec<String>,
}

/// Why enrolment or the trust record failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolmentError {
    /// No trust record: the station was never enrolled with a bundle.
    #[error("{0} is missing: enrol this station with the operator's bundle first (`flashgate-station enrol --bundle FILE`; the operator makes it with `flashgate station bundle`)")]
    NotEnrolled(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The trust record is not readable.
    #[error("{path} is damaged ({reason}): enrol again with a new bundle")]
    Damaged {
        /// Which.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The bundle is malformed.
    #[error("{0}")]
    Bundle(#[from] flashgate_proto::bundle::BundleError),
    /// The bundle's endpoint and its CA do not match (`https://` needs a CA).
    #[error("{0}")]
    Transport(#[from] flashgate_proto::transport::TransportError),
    /// The coordinator refused the enrolment.
    #[error("enrolment at {endpoint} refused: {message} ({code:?})")]
    Refused {
        /// Where.
        endpoint: String,
        /// The status code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
}

impl StationTrust {
    /// The trust a bundle gives (its token is not kept).
    pub fn from_bundle(bundle: &EnrolmentBundle) -> Self {
        Self {
            endpoint: bundle.endpoint.clone(),
            ca_pem: bundle.ca_pem.clone(),
            lease_signing_public_key: bundle.lease_signing_public_key.clone(),
            vendor_public_keys: bundle.vendor_public_keys.clone(),
        }
    }

    /// How to reach the coordinator (without the station's client certificate; the
    /// [`CoordinatorClient`] adds it).
    pub fn security(&self) -> Security {
        if self.ca_pem.is_empty() {
            Security::InsecurePlaintext
        } else {
            Security::Tls(ClientTls::new(self.ca_pem.clone().into_bytes()))
        }
    }

    /// The pinned lease-signing key.
    pub fn lease_key(&self) -> Result<ed25519_dalek::VerifyingKey, String> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(self.lease_signing_public_key.trim(), &mut key)
            .map_err(|_| "the lease-signing key is not 64 hex characters".to_owned())?;
        ed25519_dalek::VerifyingKey::from_bytes(&key)
            .map_err(|_| "the lease-signing key is not a valid ed25519 key".to_owned())
    }

    /// The pinned vendor keys.
    pub fn vendor_keys(&self) -> Result<Vec<[u8; 32]>, String> {
        self.vendor_public_keys
            .iter()
            .map(|k| {
                let mut key = [0u8; 32];
                hex::decode_to_slice(k.trim(), &mut key)
                    .map(|()| key)
                    .map_err(|_| "a vendor key is not 64 hex characters".to_owned())
            })
            .collect()
    }

    /// Reads `<state-dir>/trust.json`.
    pub fn load(state_dir: &Path) -> Result<Self, EnrolmentError> {
        let path = state_dir.join(TRUST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EnrolmentError::NotEnrolled(path))
            }
            Err(source) => return Err(EnrolmentError::Io { path, source }),
        };
        let trust: Self = serde_json::from_str(&text).map_err(|e| EnrolmentError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        trust
            .lease_key()
            .and(trust.vendor_keys().map(|_| ()))
            .map_err(|reason| EnrolmentError::Damaged {
                path: path.clone(),
                reason,
            })?;
        Ok(trust)
    }

    /// Writes `<state-dir>/trust.json` (replacing an older one atomically).
    pub fn store(&self, state_dir: &Path) -> Result<(), EnrolmentError> {
        let path = state_dir.join(TRUST_FILE);
        let io = |source| EnrolmentError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let tmp = state_dir.join(format!("{TRUST_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

/// Enrols `identity` with `bundle` and, once the coordinator accepted it, writes the trust
/// record into `state_dir`. `endpoint` overrides the bundle's (a relay in between).
pub async fn enrol_with_bundle(
    identity: &StationIdentity,
    state_dir: &Path,
    bundle: &EnrolmentBundle,
    endpoint: Option<&str>,
    name: &str,
    factory: &str,
) -> Result<v1::EnrolResponse, EnrolmentError> {
    let trust = StationTrust::from_bundle(bundle);
    let endpoint = endpoint.unwrap_or(&trust.endpoint).to_owned();
    let client = CoordinatorClient::new(&endpoint, &trust.security(), identity.signer())?;
    let response = client
        .enrol(v1::EnrolRequest {
            ed25519_public_key: identity.ed25519_public().to_vec(),
            x25519_public_key: identity.x25519_public().to_vec(),
            name: name.to_owned(),
            factory: factory.to_owned(),
            enrolment_token: bundle.enrolment_token.clone(),
        })
        .await
        .map_err(|status| EnrolmentError::Refused {
            endpoint: endpoint.clone(),
            code: status.code(),
            message: status.message().to_owned(),
        })?;
    trust.store(state_dir)?;
    Ok(response)
}
