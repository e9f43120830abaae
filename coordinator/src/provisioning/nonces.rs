//! The replay cache of signed station requests: one record per (station, nonce) ever accepted,
//! shared by every replica through the store. The housekeeping sweep
//! (`crate::housekeeping::nonce_sweep`) deletes entries old enough that their request would
//! fail the timestamp check anyway.

use flashgate_proto::station_auth::NONCE_LEN;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::StationId;
use crate::repository::{Db, JsonRecord, KeyPart, Txn};

/// A request nonce, hex in keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl KeyPart for Nonce {
    fn write_key(&self, out: &mut String) {
        out.push_str(&hex::encode(self.0));
    }
}

/// `nonces/{station_id}/{nonce}`: the request's timestamp (stored as a bare number).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NonceRecord {
    /// The signed request's timestamp (Unix milliseconds): the entry may go once it is older
    /// than the auth window.
    pub timestamp_ms: u64,
}

impl JsonRecord for NonceRecord {
    const PREFIX: &'static str = "nonces/";
    type Key = (StationId, Nonce);
}

/// Records `nonce` as used by `station`; `false` if it was used before (a replay).
pub(super) async fn consume(
    db: &Db,
    station: &StationId,
    nonce: [u8; NONCE_LEN],
    timestamp_ms: u64,
) -> Result<bool> {
    let key = (station.clone(), Nonce(nonce));
    db.commit(
        Txn::new()
            .absent::<NonceRecord>(&key)
            .put(&key, &NonceRecord { timestamp_ms }),
    )
    .await
}
