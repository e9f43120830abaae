//! Per-request station authentication, client side.
//!
//! Every station call carries four metadata entries:
//! - `x-flashgate-station`: the station id (its fingerprint, see [`fingerprint`]);
//! - `x-flashgate-timestamp`: unix milliseconds, decimal;
//! - `x-flashgate-nonce`: 16 random bytes, hex;
//! - `x-flashgate-signature`: hex of the ed25519 signature over [`signed_message`], i.e.
//!   `"flashgate-station-request-v1" || 0 || len(method) (u32 BE) || method path ||
//!   timestamp (u64 BE) || nonce || SHA-256(prost encoding of the request message)`.
//!
//! The coordinator accepts a signature only inside a time window and only once per nonce (a
//! replay cache in its store), and only for the key enrolled under that station id. Binding the
//! method path and the request digest stops a captured signature from being reused for another
//! call or another message.
//!
//! A tonic interceptor sees the metadata but not the message, so signing is a function applied to
//! the message: `client.acquire_lease(signer.sign(methods::ACQUIRE_LEASE, request))`.

use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// Metadata key carrying the station id.
pub const STATION_ID_HEADER: &str = "x-flashgate-station";
/// Metadata key carrying the unix-ms timestamp.
pub const TIMESTAMP_HEADER: &str = "x-flashgate-timestamp";
/// Metadata key carrying the hex nonce.
pub const NONCE_HEADER: &str = "x-flashgate-nonce";
/// Metadata key carrying the hex signature.
pub const SIGNATURE_HEADER: &str = "x-flashgate-signature";
/// Domain separation prefix of request signatures.
pub const AUTH_CONTEXT: &[u8] = b"flashgate-station-request-v1";
/// Nonce length in bytes.
pub const NONCE_LEN: usize = 16;

/// Full gRPC method paths of the station service, as signed.
pub mod methods {
    /// The coordinator's identity and public keys, asked before anything else.
    pub const GET_COORDINATOR_INFO: &str = "/flashgate.v1.StationService/GetCoordinatorInfo";
    /// Registers the station's public keys (it stays pending until an operator approves it).
    pub const ENROL: &str = "/flashgate.v1.StationService/Enrol";
    /// The orders this station may work on.
    pub const LIST_ASSIGNED_ORDERS: &str = "/flashgate.v1.StationService/ListAssignedOrders";
    /// An order's release, its images sealed to this station.
    pub const FETCH_RELEASE: &str = "/flashgate.v1.StationService/FetchRelease";
    /// Reserves install slots of an order (a signed lease).
    pub const ACQUIRE_LEASE: &str = "/flashgate.v1.StationService/AcquireLease";
    /// The certificate of one chip (consumes one lease slot, once per chip).
    pub const ISSUE_DEVICE_CERTIFICATE: &str =
        "/flashgate.v1.StationService/IssueDeviceCertificate";
    /// Reports one install (a device's record, or a failure) against a lease's slot.
    pub const REPORT_INSTALL: &str = "/flashgate.v1.StationService/ReportInstall";
    /// Gives a lease's unused slots back to the order's quota.
    pub const RETURN_LEASE: &str = "/flashgate.v1.StationService/ReturnLease";
    /// The per-device package of the order's OS for one board of a lease.
    pub const GET_FACTORY_PACKAGE: &str = "/flashgate.v1.StationService/GetFactoryPackage";
}

/// A station's id: the first 16 bytes of SHA-256(ed25519 public key), lowercase hex.
pub fn fingerprint(ed25519_public: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(ed25519_public)[..16])
}

/// The bytes a station signs for one request.
pub fn signed_message(
    method: &str,
    timestamp_ms: u64,
    nonce: &[u8; NONCE_LEN],
    body_sha256: &[u8; 32],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(AUTH_CONTEXT.len() + 1 + 4 + method.len() + 8 + 16 + 32);
    out.extend_from_slice(AUTH_CONTEXT);
    out.push(0);
    out.extend_from_slice(&(method.len() as u32).to_be_bytes());
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(body_sha256);
    out
}

/// SHA-256 of a message's prost encoding.
pub fn message_digest<T: Message>(message: &T) -> [u8; 32] {
    Sha256::digest(message.encode_to_vec()).into()
}

/// Signs station requests with the station's ed25519 key.
pub struct StationSigner {
    key: SigningKey,
    station_id: String,
}

impl std::fmt::Debug for StationSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationSigner")
            .field("station_id", &self.station_id)
            .finish_non_exhaustive()
    }
}

impl StationSigner {
    /// The station's TLS settings: `tls` presenting this station's identity certificate
    /// ([`crate::transport::station_identity`]); plain text stays plain text.
    pub fn security(
        &self,
        security: &crate::transport::Security,
    ) -> Result<crate::transport::Security, crate::transport::TransportError> {
        use crate::transport::Security;
        Ok(match security {
            Security::Tls(tls) => Security::Tls(tls.clone().with_station_key(&self.key)?),
            Security::InsecurePlaintext => Security::InsecurePlaintext,
        })
    }

    /// A signer for the station that owns `key`.
    pub fn new(key: SigningKey) -> Self {
        let station_id = fingerprint(&key.verifying_key().to_bytes());
        Self { key, station_id }
    }

    /// This station's id (fingerprint).
    pub fn station_id(&self) -> &str {
        &self.station_id
    }

    /// Wraps `message` in a request signed for `method` (one of [`methods`]), now, with a fresh
    /// nonce.
    pub fn sign<T: Message>(&self, method: &str, message: T) -> tonic::Request<T> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        self.sign_with(method, message, crate::clock::now_ms().max(0) as u64, nonce)
    }

    /// Like [`Self::sign`] with a chosen timestamp and nonce (tests of the replay window use it).
    pub fn sign_with<T: Message>(
        &self,
        method: &str,
        message: T,
        timestamp_ms: u64,
        nonce: [u8; NONCE_LEN],
    ) -> tonic::Request<T> {
        let digest = message_digest(&message);
        let signature = self
            .key
            .sign(&signed_message(method, timestamp_ms, &nonce, &digest));
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        // All values are ASCII (hex / decimal), so parsing cannot fail.
        let entries = [
            (STATION_ID_HEADER, self.station_id.clone()),
            (TIMESTAMP_HEADER, timestamp_ms.to_string()),
            (NONCE_HEADER, hex::encode(nonce)),
            (SIGNATURE_HEADER, hex::encode(signature.to_bytes())),
        ];
        for (name, value) in entries {
            if let Ok(value) = value.parse() {
                metadata.insert(name, value);
            }
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_request_carries_all_headers() {
        let signer = StationSigner::new(SigningKey::from_bytes(&[7; 32]));
        let request = signer.sign(methods::ENROL, crate::v1::EnrolRequest::default());
        for name in [
            STATION_ID_HEADER,
            TIMESTAMP_HEADER,
            NONCE_HEADER,
            SIGNATURE_HEADER,
        ] {
            assert!(request.metadata().get(name).is_some(), "{name} missing");
        }
        assert_eq!(signer.station_id().len(), 32);
    }

    #[test]
    fn signed_message_binds_method_and_body() {
        let nonce = [1; NONCE_LEN];
        let a = signed_message(methods::ENROL, 5, &nonce, &[0; 32]);
        assert_ne!(
            a,
            signed_message(methods::ACQUIRE_LEASE, 5, &nonce, &[0; 32])
        );
        assert_ne!(a, signed_message(methods::ENROL, 5, &nonce, &[1; 32]));
        assert_ne!(a, signed_message(methods::ENROL, 6, &nonce, &[0; 32]));
    }
}
