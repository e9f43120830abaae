//! How every client reaches the coordinator: TLS 1.3 (rustls) trusting only the coordinator's
//! CA, with a client certificate for stations ([`ClientTls::with_identity`]) — or plain text,
//! but only when the operator asked for it by name (`--insecure-plaintext`, [`Security::InsecurePlaintext`]).
//! An `http://` endpoint without that flag, or an `https://` one with it, is refused before
//! anything is sent, with the steps to set TLS up.
//!
//! ```
//! use flashgate_proto::transport::{endpoint, ClientTls, Security};
//! # fn demo(ca_pem: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
//! let security = Security::Tls(ClientTls::new(ca_pem));
//! let _lazy = endpoint("https://127.0.0.1:7400", &security)?.connect_lazy();
//! assert!(endpoint("http://127.0.0.1:7400", &security).is_err());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use zeroize::Zeroizing;

/// What the operator does to get TLS, said by every refusal of plain text.
pub const TLS_SETUP: &str = "make a CA and a server certificate with `flashgate-coordinator tls init --dir DIR --san HOST`, \
serve with `--tls-cert DIR/server.pem --tls-key DIR/server.key`, and give clients the CA (`--ca-file DIR/ca.pem`, \
a context's `ca-file`, or the station's enrolment bundle); plain text only with --insecure-plaintext on both ends";

/// A client's TLS settings: the CA it trusts (and nothing else), and optionally the client
/// certificate it presents.
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Zeroizing<Vec<u8>>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the CA certificate(s) in `ca_pem` only.
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            ca_pem: ca_pem.into(),
            identity: None,
        }
    }

    /// Trusts the CA certificate(s) in the PEM file at `path`.
    pub fn from_ca_file(path: &Path) -> Result<Self, TransportError> {
        let pem = std::fs::read(path).map_err(|source| TransportError::CaFile {
            path: path.to_owned(),
            source,
        })?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(TransportError::NoCertificate(path.to_owned()));
        }
        Ok(Self::new(pem))
    }

    /// Also presents this client certificate (PEM) with its private key (PEM, PKCS#8).
    pub fn with_identity(mut self, cert_pem: Vec<u8>, key_pem: Zeroizing<Vec<u8>>) -> Self {
        self.identity = Some((cert_pem, key_pem));
        self
    }

    /// Also presents the station's identity certificate for `key` ([`station_identity`]):
    /// what the coordinator's station API requires over TLS.
    pub fn with_station_key(self, key: &ed25519_dalek::SigningKey) -> Result<Self, TransportError> {
        let (cert, key) = station_identity(key)?;
        Ok(self.with_identity(cert, key))
    }

    /// The trusted CA, PEM.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, &key[..]));
        }
        config
    }
}

/// How a client talks to the coordinator.
#[derive(Clone, Debug)]
pub enum Security {
    /// TLS with these settings (the default everywhere).
    Tls(ClientTls),
    /// Plain text: only with `--insecure-plaintext`, for a coordinator started with it too.
    InsecurePlaintext,
}

/// Why no channel can be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The endpoint is not a URL with a scheme and a host.
    #[error("endpoint {0:?} is not a URL like https://host:7400")]
    BadEndpoint(String),
    /// `http://` without `--insecure-plaintext`.
    #[error("endpoint {0} is plain text (http://) and plain text is refused: use https://; to set TLS up, {TLS_SETUP}")]
    PlaintextRefused(String),
    /// `--insecure-plaintext` with an `https://` endpoint.
    #[error("--insecure-plaintext was given but endpoint {0} is https://: drop the flag, or use http:// for a coordinator served with --insecure-plaintext")]
    PlaintextWithHttps(String),
    /// TLS asked for, but no CA to trust.
    #[error("no CA to trust for {0}: give the coordinator's CA (--ca-file, a context's ca-file, or an enrolment bundle); {TLS_SETUP}")]
    NoCa(String),
    /// The CA file cannot be read.
    #[error("cannot read the CA file {path}: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file holds no PEM certificate.
    #[error("{0} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    /// The station's identity certificate could not be made.
    #[error("cannot make the station's TLS identity certificate: {0}")]
    Identity(String),
    /// tonic refused the TLS settings.
    #[error("TLS settings refused: {0}")]
    Tls(#[source] tonic::transport::Error),
}

/// A self-signed certificate for a station's ed25519 identity key, and that key as PKCS#8 PEM.
/// It carries no authority of its own: presenting it proves (through the TLS handshake
/// signature) possession of the key, and the coordinator maps the key to the enrolled station.
pub fn station_identity(
    key: &ed25519_dalek::SigningKey,
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), TransportError> {
    // RFC 8410 PKCS#8 v1 for Ed25519: fixed prefix, then the 32-byte seed.
    let mut pkcs8 = Zeroizing::new(vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ]);
    pkcs8.extend_from_slice(key.as_bytes());
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
        .map_err(|e| TransportError::Identity(e.to_string()))?;
    let name = crate::station_auth::fingerprint(&key.verifying_key().to_bytes());
    let cert = rcgen::CertificateParams::new(vec![format!("station-{name}")])
        .and_then(|params| params.self_signed(&pair))
        .map_err(|e| TransportError::Identity(e.to_string()))?;
    Ok((
        cert.pem().into_bytes(),
        Zeroizing::new(pair.serialize_pem().into_bytes()),
    ))
}

/// The endpoint `url` reached with `security`; refuses a scheme that does not match it.
pub fn endpoint(url: &str, security: &Security) -> Result<Endpoint, TransportError> {
    let target = Endpoint::from_shared(url.to_owned())
        .map_err(|_| TransportError::BadEndpoint(url.to_owned()))?;
    let uri = target.uri();
    // `host:7400` parses as a URI too, but names no transport.
    if uri.host().is_none() {
        return Err(TransportError::BadEndpoint(url.to_owned()));
    }
    match (uri.scheme_str(), security) {
        (Some("https"), Security::Tls(tls)) => {
            if tls.ca_pem.is_empty() {
                return Err(TransportError::NoCa(url.to_owned()));
            }
            target.tls_config(tls.config()).map_err(TransportError::Tls)
        }
        (Some("http"), Security::InsecurePlaintext) => Ok(target),
        (Some("http"), Security::Tls(_)) => Err(TransportError::PlaintextRefused(url.to_owned())),
        (Some("https"), Security::InsecurePlaintext) => {
            Err(TransportError::PlaintextWithHttps(url.to_owned()))
        }
        _ => Err(TransportError::BadEndpoint(url.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_must_match_the_security_asked_for() {
        let tls = Security::Tls(ClientTls::new(b"-----BEGIN CERTIFICATE-----".to_vec()));
        assert!(matches!(
            endpoint("http://127.0.0.1:7400", &tls),
            Err(TransportError::PlaintextRefused(_))
        ));
        let refusal = endpoint("http://127.0.0.1:7400", &tls)
            .unwrap_err()
            .to_string();
        assert!(refusal.contains("tls init"), "{refusal}");
        assert!(matches!(
            endpoint("https://127.0.0.1:7400", &Security::InsecurePlaintext),
            Err(TransportError::PlaintextWithHttps(_))
        ));
        assert!(endpoint("http://127.0.0.1:7400", &Security::InsecurePlaintext).is_ok());
        assert!(matches!(
            endpoint("127.0.0.1:7400", &tls),
            Err(TransportError::BadEndpoint(_))
        ));
        assert!(matches!(
            endpoint("https://h:1", &Security::Tls(ClientTls::new(Vec::new()))),
            Err(TransportError::NoCa(_))
        ));
    }
}
