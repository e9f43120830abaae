//! TLS on the coordinator's one port (rustls, TLS 1.3 only, ring; no OpenSSL anywhere).
//!
//! - The server presents the certificate an operator gave it (`--tls-cert`, `--tls-key`): one
//!   made by [`init`] (`flashgate-coordinator tls init`), cert-manager's, or any CA's.
//! - Stations authenticate with mutual TLS bound to their enrolled identity: a station presents
//!   a self-signed certificate for its own ed25519 key ([`station_key`] reads it back). The
//!   verifier ([`StationCertificates`]) checks the handshake signature under that key itself,
//!   so the connection proves possession of the key; the station API then requires that this
//!   key is the one enrolled under the calling station id (`provisioning::station_auth`).
//!   Operators present no certificate (they use tokens), so a client certificate is optional
//!   at the TLS layer and required by the station API.
//! - [`incoming`] accepts TCP connections and runs each handshake in its own task: a slow or
//!   broken client never holds up the others, and a refused handshake is logged, not fatal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const ED25519_SPKI: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no certificate or no private key in PEM.
    #[error("{0}")]
    Pem(String),
    /// rustls refused the certificate or key.
    #[error("the TLS certificate or key is not usable: {0}")]
    Rustls(#[from] rustls::Error),
    /// A certificate could not be made.
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The server side: certificate, key and the station-certificate verifier.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    web: Arc<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(..)")
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

impl ServerTls {
    /// From PEM files: the certificate chain (server first) and its private key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let key_pem = zeroize::Zeroizing::new(read(key)?);
        Self::from_pem(&read(cert)?, &key_pem).map_err(|e| match e {
            TlsError::Pem(what) => TlsError::Pem(format!(
                "{what} (--tls-cert {}, --tls-key {})",
                cert.display(),
                key.display()
            )),
            other => other,
        })
    }

    /// From PEM text.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let certs = rustls_pemfile::certs(&mut &cert_pem[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("the certificate file is not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(TlsError::Pem(
                "the certificate file holds no certificate".into(),
            ));
        }
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|e| TlsError::Pem(format!("the key file is not PEM: {e}")))?
            .ok_or_else(|| TlsError::Pem("the key file holds no private key".into()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(StationCertificates))
            .with_single_cert(certs.clone(), key.clone_key())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        // Browsers present no client certificate and must not be asked for one (Chromium
        // would offer the user's); they speak HTTP/1.1 to the console.
        let mut web = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        web.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            web: Arc::new(web),
        })
    }

    /// The rustls configuration of the gRPC port.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The console's: the same certificate, no client certificates, HTTP/1.1.
    pub fn web_config(&self) -> Arc<ServerConfig> {
        self.web.clone()
    }
}

/// The ed25519 public key a station's certificate carries, if it is an Ed25519 certificate.
/// Reading it is enough: [`StationCertificates`] verified the handshake signature under this
/// very key, so the peer holds its private half.
pub fn station_key(cert: &[u8]) -> Option<[u8; 32]> {
    let at = cert
        .windows(ED25519_SPKI.len())
        .position(|w| w == ED25519_SPKI)?;
    cert.get(at + ED25519_SPKI.len()..at + ED25519_SPKI.len() + 32)?
        .try_into()
        .ok()
}

/// Accepts any Ed25519 client certificate whose handshake signature verifies under its own key
/// (stations' self-signed certificates); clients without a certificate (operators) pass too.
/// What a key may do is decided by the API, which maps it to an enrolled station.
#[derive(Debug)]
pub struct StationCertificates;

fn bad_certificate() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
}

impl ClientCertVerifier for StationCertificates {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        station_key(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .ok_or_else(bad_certificate)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not served".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        let key = station_key(cert)
            .and_then(|k| VerifyingKey::from_bytes(&k).ok())
            .ok_or_else(bad_certificate)?;
        let signature = Signature::from_slice(dss.signature()).map_err(|_| bad_certificate())?;
        key.verify_strict(message, &signature).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
        })?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// TLS connections accepted on `listener`, each handshake in its own task (bounded by
/// [`HANDSHAKE_TIMEOUT`]); refused handshakes are logged and dropped. Ends when the receiver
/// is dropped (the server stopped).
pub fn incoming(
    listener: TcpListener,
    tls: &ServerTls,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    accept(listener, tls.config(), None)
}

/// The console's connections: as [`incoming`], with [`ServerTls::web_config`]; a client
/// that speaks plain HTTP gets `plain_http_reply` (a whole HTTP response) instead of a
/// failed handshake, so the browser shows why.
pub fn incoming_web(
    listener: TcpListener,
    tls: &ServerTls,
    plain_http_reply: &'static [u8],
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    accept(listener, tls.web_config(), Some(plain_http_reply))
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

fn accept(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    plain_http_reply: Option<&'static [u8]>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without TCP_NODELAY small unary replies wait for delayed ACKs (~40 ms each).
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let tcp = match plain_http_reply {
                    None => tcp,
                    Some(reply) => match unless_plain_text(tcp, reply).await {
                        Some(tcp) => tcp,
                        None => return refused(peer, "plain HTTP on the TLS port"),
                    },
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => refused(peer, &error.to_string()),
                    Err(_) => refused(peer, "handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// `tcp` back if the client began with a TLS handshake; otherwise (plain HTTP) the request
/// is read, `reply` written and the connection closed.
async fn unless_plain_text(mut tcp: TcpStream, reply: &[u8]) -> Option<TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] != TLS_HANDSHAKE_RECORD => {}
        _ => return Some(tcp),
    }
    // Read what the client sent (closing with unread bytes would reset the connection
    // before it reads the reply); a request head is small.
    let mut request = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut request)).await;
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        tcp.write_all(reply).await?;
        tcp.shutdown().await
    })
    .await;
    None
}

fn refused(peer: SocketAddr, why: &str) {
    tracing::info!(%peer, why, "TLS handshake refused (a plain-text client, an untrusted CA, or no TLS at all)");
}

/// A CA and a server certificate for one machine, as `tls init` writes them.
pub struct SelfSigned {
    /// The CA certificate (give it to every client).
    pub ca_pem: String,
    /// The CA's private key (keep it offline; only needed to make more server certificates).
    pub ca_key_pem: zeroize::Zeroizing<String>,
    /// The server certificate, signed by the CA.
    pub server_pem: String,
    /// The server's private key.
    pub server_key_pem: zeroize::Zeroizing<String>,
}

/// A fresh CA (ECDSA P-256) and a server certificate for `sans` (DNS names or IP addresses),
/// valid for `days`.
pub fn generate(sans: &[String], days: u32) -> Result<SelfSigned, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let now = time_now();
    let until = now + time::Duration::days(i64::from(days));
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "flashgate coordinator CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now;
    ca.not_after = until;
    let ca_cert = ca.self_signed(&ca_key)?;
    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(sans.to_vec())?;
    server
        .distinguished_name
        .push(DnType::CommonName, "flashgate coordinator");
    server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = now;
    server.not_after = until;
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;
    Ok(SelfSigned {
        ca_pem: ca_cert.pem(),
        ca_key_pem: zeroize::Zeroizing::new(ca_key.serialize_pem()),
        server_pem: server_cert.pem(),
        server_key_pem: zeroize::Zeroizing::new(server_key.serialize_pem()),
    })
}

fn time_now() -> time::OffsetDateTime {
    // An hour back, for clients whose clock lags.
    time::OffsetDateTime::now_utc() - time::Duration::hours(1)
}

/// The files [`init`] writes into its directory.
pub const FILES: [&str; 4] = ["ca.pem", "ca.key", "server.pem", "server.key"];

/// Writes a fresh [`generate`]d set into `dir` (`ca.pem`, `ca.key` and `server.key` mode 0600,
/// `server.pem`); refuses to overwrite any of them.
pub fn init(dir: &Path, sans: &[String], days: u32) -> Result<SelfSigned, TlsError> {
    let set = generate(sans, days)?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for name in FILES {
        if dir.join(name).exists() {
            return Err(TlsError::Io {
                path: dir.join(name),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists already; remove it or pick another --dir",
                ),
            });
        }
    }
    let contents: [(&str, &str, bool); 4] = [
        ("ca.pem", &set.ca_pem, false),
        ("ca.key", &set.ca_key_pem, true),
        ("server.pem", &set.server_pem, false),
        ("server.key", &set.server_key_pem, true),
    ];
    for (name, text, private) in contents {
        write_file(&dir.join(name), text.as_bytes(), private)?;
    }
    Ok(set)
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_set_serves_and_an_ed25519_key_is_read_back() {
        let set = generate(&["127.0.0.1".into(), "localhost".into()], 30).unwrap();
        ServerTls::from_pem(set.server_pem.as_bytes(), set.server_key_pem.as_bytes()).unwrap();
        assert!(ServerTls::from_pem(set.server_pem.as_bytes(), b"").is_err());

        let seed = [9u8; 32];
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let mut pkcs8 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        pkcs8.extend_from_slice(&seed);
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8),
            &rcgen::PKCS_ED25519,
        )
        .unwrap();
        let cert = rcgen::CertificateParams::new(vec!["station".into()])
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        assert_eq!(
            station_key(cert.der()),
            Some(key.verifying_key().to_bytes())
        );
        assert_eq!(station_key(set.server_pem.as_bytes()), None);
    }

    #[test]
    fn init_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &["localhost".into()], 1).unwrap();
        assert!(init(dir.path(), &["localhost".into()], 1).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("server.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
