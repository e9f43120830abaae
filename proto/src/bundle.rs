//! The enrolment bundle: everything a station needs to trust its coordinator, made by an
//! operator (`flashgate station bundle`) and carried to the station out of band
//! (`flashgate-station enrol --bundle FILE`). Nothing is learnt on first use: the CA, the
//! lease-signing key and the vendor keys come from the bundle only. The one-time token in it
//! approves the enrolment; it expires, and works once.
//!
//! JSON, e.g.
//! ```json
//! {"format":1,"endpoint":"https://coordinator:7400","ca_pem":"-----BEGIN CERTIFICATE-----…",
//!  "lease_signing_public_key":"…64 hex…","vendor_public_keys":["…64 hex…"],
//!  "enrolment_token":"fgo_…","expires_at_ms":1767225600000}
//! ```

use serde::{Deserialize, Serialize};

/// The bundle's format number.
pub const FORMAT: u32 = 1;

/// A station's enrolment bundle.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrolmentBundle {
    /// [`FORMAT`].
    pub format: u32,
    /// The coordinator, `https://host:port` (`http://` only for a plain-text test bench).
    pub endpoint: String,
    /// The CA the coordinator's certificate is signed by (PEM); empty for plain text.
    pub ca_pem: String,
    /// The coordinator's lease-signing ed25519 public key, hex.
    pub lease_signing_public_key: String,
    /// The product vendor keys this station accepts releases from (hex); empty: any the
    /// coordinator's signed lease names.
    #[serde(default)]
    pub vendor_public_keys: Vec<String>,
    /// The one-time enrolment token (secret until used).
    pub enrolment_token: String,
    /// When the token expires (Unix milliseconds).
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for EnrolmentBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolmentBundle")
            .field("endpoint", &self.endpoint)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// Why a bundle cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Not JSON of the right shape.
    #[error("not an enrolment bundle: {0}")]
    Malformed(String),
    /// A later format.
    #[error("enrolment bundle format {0} is not supported (this station reads format {FORMAT})")]
    Format(u32),
    /// A key is not 64 hex characters.
    #[error("the bundle's {0} is not 64 hex characters")]
    BadKey(&'static str),
}

impl EnrolmentBundle {
    /// Parses and checks a bundle file's contents.
    pub fn parse(text: &str) -> Result<Self, BundleError> {
        let bundle: Self =
            serde_json::from_str(text).map_err(|e| BundleError::Malformed(e.to_string()))?;
        if bundle.format != FORMAT {
            return Err(BundleError::Format(bundle.format));
        }
        bundle.lease_key()?;
        bundle.vendor_keys()?;
        Ok(bundle)
    }

    /// As written to a file.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The lease-signing key.
    pub fn lease_key(&self) -> Result<[u8; 32], BundleError> {
        key32(&self.lease_signing_public_key, "lease_signing_public_key")
    }

    /// The pinned vendor keys.
    pub fn vendor_keys(&self) -> Result<Vec<[u8; 32]>, BundleError> {
        self.vendor_public_keys
            .iter()
            .map(|k| key32(k, "vendor_public_keys"))
            .collect()
    }
}

fn key32(text: &str, what: &'static str) -> Result<[u8; 32], BundleError> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key).map_err(|_| BundleError::BadKey(what))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_round_trips_and_bad_ones_are_refused() {
        let bundle = EnrolmentBundle {
            format: FORMAT,
            endpoint: "https://127.0.0.1:7400".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----".into(),
            lease_signing_public_key: hex::encode([1u8; 32]),
            vendor_public_keys: vec![hex::encode([2u8; 32])],
            enrolment_token: "fgo_x".into(),
            expires_at_ms: 5,
        };
        let parsed = EnrolmentBundle::parse(&bundle.to_json()).unwrap();
        assert_eq!(parsed, bundle);
        assert!(
            !format!("{parsed:?}").contains("fgo_x"),
            "Debug hides the token"
        );
        let mut later = bundle.clone();
        later.format = 2;
        assert!(matches!(
            EnrolmentBundle::parse(&later.to_json()),
            Err(BundleError::Format(2))
        ));
        let mut bad = bundle;
        bad.lease_signing_public_key = "zz".into();
        assert!(matches!(
            EnrolmentBundle::parse(&bad.to_json()),
            Err(BundleError::BadKey(_))
        ));
        assert!(EnrolmentBundle::parse("{").is_err());
    }
}
