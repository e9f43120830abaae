//! A lease as the station holds it: signature checked against the coordinator's key, validity
//! checked against the clock, lease secret opened with the station's X25519 key, device keys
//! derived from it, slots counted.

use flashgate_proto::lease::{check_validity, verify_signed_lease, LeaseError};
use flashgate_proto::v1::{LeaseBody, SignedLease};
use flashgate_protocol::lease_keys::{derive_device_key, open_lease_secret};
use flashgate_protocol::Serial;
use prost::Message;
use zeroize::Zeroizing;

use crate::identity::StationIdentity;

/// Why a lease cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LeaseRefused {
    /// Signature, encoding or time.
    #[error("{0}")]
    Invalid(#[from] LeaseError),
    /// Issued to another station.
    #[error("lease {lease_id} names station {named}, not this station {ours}")]
    OtherStation {
        /// Lease id.
        lease_id: String,
        /// Who it names.
        named: String,
        /// This station.
        ours: String,
    },
    /// The sealed secret does not open with this station's key.
    #[error("the secret of lease {lease_id} does not open with this station's key")]
    Secret {
        /// Lease id.
        lease_id: String,
    },
    /// The journaled lease bytes are not a lease.
    #[error("journaled lease is not a SignedLease encoding")]
    Malformed,
}

/// A verified lease with its opened secret and slot counts.
pub struct ActiveLease {
    /// The signed body.
    pub body: LeaseBody,
    /// The lease as received (journaled).
    pub signed: SignedLease,
    secret: Zeroizing<[u8; 32]>,
    /// Installs already made under it (journal).
    pub used: u32,
    /// Slots handed to probe actors and not yet finished.
    pub reserved: u32,
}

impl std::fmt::Debug for ActiveLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveLease")
            .field("lease_id", &self.body.lease_id)
            .field("count", &self.body.count)
            .field("used", &self.used)
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}

impl ActiveLease {
    /// Checks a lease and opens its secret.
    pub fn open(
        signed: SignedLease,
        coordinator: &ed25519_dalek::VerifyingKey,
        identity: &StationIdentity,
        now_ms: i64,
    ) -> Result<Self, LeaseRefused> {
        let body = verify_signed_lease(&signed, coordinator)?;
        check_validity(&body, now_ms)?;
        if body.station_id != identity.station_id() {
            return Err(LeaseRefused::OtherStation {
                lease_id: body.lease_id,
                named: body.station_id,
                ours: identity.station_id(),
            });
        }
        let refused = || LeaseRefused::Secret {
            lease_id: body.lease_id.clone(),
        };
        let sealed = body
            .sealed_lease_secret
            .as_slice()
            .try_into()
            .map_err(|_| refused())?;
        let station_secret = Zeroizing::new(identity.x25519_secret().to_bytes());
        let secret = open_lease_secret(&station_secret, sealed, body.lease_id.as_bytes())
            .map_err(|_| refused())?;
        Ok(Self {
            body,
            signed,
            secret,
            used: 0,
            reserved: 0,
        })
    }

    /// Decodes a journaled lease (hex of the `SignedLease` encoding).
    pub fn decode_journaled(hex_text: &str) -> Result<SignedLease, LeaseRefused> {
        let bytes = hex::decode(hex_text).map_err(|_| LeaseRefused::Malformed)?;
        SignedLease::decode(bytes.as_slice()).map_err(|_| LeaseRefused::Malformed)
    }

    /// The encoding to journal.
    pub fn journal_form(&self) -> String {
        hex::encode(self.signed.encode_to_vec())
    }

    /// Lease id.
    pub fn id(&self) -> &str {
        &self.body.lease_id
    }

    /// Slots neither used nor handed out.
    pub fn free(&self) -> u32 {
        self.body.count.saturating_sub(self.used + self.reserved)
    }

    /// True when past its not-after.
    pub fn expired(&self, now_ms: i64) -> bool {
        now_ms > self.body.not_after_ms
    }

    /// The device key of `serial` under this lease.
    pub fn device_key(&self, serial: &Serial) -> Zeroizing<[u8; 32]> {
        derive_device_key(&self.secret, self.body.product_id, serial)
    }

    /// A copy of the secret for a probe actor's thread (zeroized on drop).
    pub fn secret_copy(&self) -> Zeroizing<[u8; 32]> {
        self.secret.clone()
    }
}
