//! Signed leases: `SignedLease { body, signature }` where `body` is the prost encoding of
//! [`LeaseBody`] and `signature` is the coordinator's ed25519 signature over
//! [`LEASE_SIGNATURE_CONTEXT`] `|| body`.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use prost::Message;

use crate::v1::{LeaseBody, SignedLease};

/// Domain separation prefix of every lease signature.
pub const LEASE_SIGNATURE_CONTEXT: &[u8] = b"flashgate-lease-v1";

/// Why a lease was refused by [`verify_signed_lease`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseError {
    /// The signature field is not an ed25519 signature (64 bytes).
    #[error("the lease signature is not 64 bytes")]
    MalformedSignature,
    /// The signature does not verify against the coordinator's key.
    #[error("the lease signature does not verify against the coordinator key: the lease was forged, altered, or signed by another coordinator")]
    BadSignature,
    /// The signed body does not decode as a [`LeaseBody`].
    #[error("the lease body is not a valid LeaseBody encoding")]
    MalformedBody,
    /// The lease's validity ended before `now_ms`.
    #[error("the lease expired at {not_after_ms} (now {now_ms})")]
    Expired {
        /// The end of the lease's validity (Unix milliseconds).
        not_after_ms: i64,
        /// The time it was checked at (Unix milliseconds).
        now_ms: i64,
    },
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(LEASE_SIGNATURE_CONTEXT.len() + body.len());
    message.extend_from_slice(LEASE_SIGNATURE_CONTEXT);
    message.extend_from_slice(body);
    message
}

/// Signs a lease body (coordinator side).
pub fn sign_lease(body: &LeaseBody, key: &SigningKey) -> SignedLease {
    let body = body.encode_to_vec();
    let signature = key.sign(&signed_bytes(&body));
    SignedLease {
        body,
        signature: signature.to_bytes().to_vec(),
    }
}

/// Checks a lease's signature and decodes its body (station side). Does not check the time:
/// see [`check_validity`].
pub fn verify_signed_lease(
    lease: &SignedLease,
    coordinator: &VerifyingKey,
) -> Result<LeaseBody, LeaseError> {
    let signature: [u8; 64] = lease
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| LeaseError::MalformedSignature)?;
    // Strict: no weak (small-order) key, no small-order R, no non-canonical encoding.
    coordinator
        .verify_strict(
            &signed_bytes(&lease.body),
            &Signature::from_bytes(&signature),
        )
        .map_err(|_| LeaseError::BadSignature)?;
    LeaseBody::decode(lease.body.as_slice()).map_err(|_| LeaseError::MalformedBody)
}

/// Refuses a lease whose not-after has passed.
pub fn check_validity(body: &LeaseBody, now_ms: i64) -> Result<(), LeaseError> {
    if now_ms > body.not_after_ms {
        return Err(LeaseError::Expired {
            not_after_ms: body.not_after_ms,
            now_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn body() -> LeaseBody {
        LeaseBody {
            lease_id: "l1".into(),
            station_id: "s1".into(),
            count: 5,
            not_after_ms: 1_000,
            ..Default::default()
        }
    }

    #[test]
    fn signed_lease_verifies_and_forgeries_do_not() {
        let key = SigningKey::generate(&mut OsRng);
        let lease = sign_lease(&body(), &key);
        assert_eq!(
            verify_signed_lease(&lease, &key.verifying_key()),
            Ok(body())
        );

        let other = SigningKey::generate(&mut OsRng);
        assert_eq!(
            verify_signed_lease(&sign_lease(&body(), &other), &key.verifying_key()),
            Err(LeaseError::BadSignature)
        );

        let mut altered = lease.clone();
        let mut changed = body();
        changed.count = 500;
        altered.body = changed.encode_to_vec();
        assert_eq!(
            verify_signed_lease(&altered, &key.verifying_key()),
            Err(LeaseError::BadSignature)
        );

        let mut short = lease;
        short.signature.truncate(10);
        assert_eq!(
            verify_signed_lease(&short, &key.verifying_key()),
            Err(LeaseError::MalformedSignature)
        );
    }

    /// A small-order "coordinator key" (the identity point) and the signature (R = identity,
    /// s = 0) satisfy the plain ed25519 equation for every message: lax `verify` accepts such a
    /// lease, `verify_strict` refuses weak keys and small-order R.
    #[test]
    fn a_lease_only_lax_verification_accepts_is_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).expect("the identity point decodes");
        let mut signature = identity.to_vec();
        signature.extend_from_slice(&[0; 32]);
        let forged = SignedLease {
            body: body().encode_to_vec(),
            signature,
        };
        assert_eq!(
            verify_signed_lease(&forged, &weak),
            Err(LeaseError::BadSignature)
        );
    }

    #[test]
    fn expired_lease_is_refused() {
        assert!(check_validity(&body(), 1_000).is_ok());
        assert_eq!(
            check_validity(&body(), 1_001),
            Err(LeaseError::Expired {
                not_after_ms: 1_000,
                now_ms: 1_001
            })
        );
    }
}
