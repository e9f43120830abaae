//! A signed station call on the hot path (`AcquireLease`, `IssueDeviceCertificate`), checked
//! without a store round trip of its own: the station record comes from this replica's cache
//! ([`super::station_auth::StationAuth::verify_signed`]), and what a separate read and a
//! separate nonce write used to establish is folded into the call's one transaction:
//!
//! - [`SignedCall::guard`] requires the station record to be the revision the call was
//!   authorised from (a revocation or any other change committed before — on any replica — fails
//!   the transaction), and the nonce to be absent, writing it in the same transaction. Two
//!   requests with one nonce, on one replica or several, cannot both commit: the replay cache
//!   is still the store's `nonces/{station}/{nonce}`, shared by every replica.
//! - [`SignedCall::settle`] reads the refusal: a nonce now present is a replay (refused), a
//!   station no longer approved is refused, anything else is retried from the fresh records.
//! - A call refused before its transaction commits still consumes its nonce
//!   ([`super::station_auth::StationAuth::refused`]), so a refused request cannot be replayed
//!   later either.

use flashgate_proto::station_auth::NONCE_LEN;

use super::nonces::{Nonce, NonceRecord};
use super::stations::StationRecord;
use crate::error::{CoordinatorError as E, Result};
use crate::ids::StationId;
use crate::repository::{Record, Refusal, Stored, Txn};

/// The nonce a signed request carries, to be consumed exactly once.
#[derive(Clone, Debug)]
pub struct NonceClaim {
    pub(super) station: StationId,
    pub(super) nonce: Nonce,
    pub(super) timestamp_ms: u64,
}

impl NonceClaim {
    /// The nonce `nonce` of a request `station` signed at `timestamp_ms`.
    pub fn new(station: StationId, nonce: [u8; NONCE_LEN], timestamp_ms: u64) -> Self {
        Self {
            station,
            nonce: Nonce(nonce),
            timestamp_ms,
        }
    }

    fn store_key(&self) -> (StationId, Nonce) {
        (self.station.clone(), self.nonce)
    }

    /// The full store key of this nonce's replay-cache entry.
    pub fn key(&self) -> String {
        NonceRecord::key_of(&self.store_key())
    }

    /// `txn` consuming this nonce: it must be unused, and is recorded as used.
    pub fn consume(&self, txn: Txn) -> Txn {
        let key = self.store_key();
        txn.absent::<NonceRecord>(&key).put(
            &key,
            &NonceRecord {
                timestamp_ms: self.timestamp_ms,
            },
        )
    }
}

/// An authentic request of an approved station, not yet committed.
#[derive(Clone, Debug)]
pub struct SignedCall {
    /// The station's record as authorised (possibly from this replica's cache).
    pub station: Stored<StationRecord>,
    /// The request's nonce.
    pub nonce: NonceClaim,
}

impl SignedCall {
    /// The calling station.
    pub fn record(&self) -> &StationRecord {
        &self.station.record
    }

    /// `txn` guarded on the station record being unchanged since this call was authorised,
    /// consuming the request's nonce.
    pub fn guard(&self, txn: Txn) -> Txn {
        self.nonce.consume(txn.unchanged(&self.station))
    }

    /// The keys [`Self::settle`] needs read back if the transaction is refused.
    pub fn read_on_refusal(&self) -> [String; 2] {
        [self.station.key.clone(), self.nonce.key()]
    }

    /// After a refused transaction that carried [`Self::guard`]: `Err` if this call must be
    /// refused (its nonce was used meanwhile, or the station is no longer approved), else the
    /// call is brought up to date for another attempt. Either way the call holds the fresh
    /// station record, for the cache.
    pub fn settle(&mut self, refusal: &Refusal) -> Result<()> {
        if refusal.present(&self.nonce.key()) {
            return Err(replayed());
        }
        let fresh = refusal
            .take::<StationRecord>(&self.station.key)?
            .ok_or_else(|| {
                E::Unauthenticated(format!(
                    "station {} is no longer enrolled",
                    self.station.record.station_id
                ))
            })?;
        self.station = fresh;
        super::station_auth::require_approved(&self.station.record)
    }
}

/// The refusal of a request whose nonce was used before.
pub fn replayed() -> E {
    E::Unauthenticated("replayed request: this nonce was already used".into())
}
