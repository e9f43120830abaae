//! The audit log's MAC key: 32 random bytes made once per store, kept at `audit/key` only
//! sealed under the KEK (so a KEK rotation re-seals it like every other secret and old
//! entries stay verifiable), opened once per replica.

use std::sync::Arc;

use rand_core::{OsRng, RngCore};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use crate::error::{CoordinatorError as E, Result};
use crate::keys::KekRing;
use crate::repository::{hex, Db, JsonRecord, Stored, Txn};

/// `audit/key`: the MAC key sealed under the KEK.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SealedAuditKey {
    /// `KekRing::seal` output, AAD [`AAD`].
    #[serde(with = "hex")]
    pub sealed: Vec<u8>,
}

impl JsonRecord for SealedAuditKey {
    const PREFIX: &'static str = "audit/key";
    type Key = str;
}

/// AAD of the sealed audit key.
pub const AAD: &[u8] = b"flashgate-audit-key-v1";

/// The key, loaded (or made) on first use.
pub struct AuditKey {
    db: Db,
    kek: Arc<KekRing>,
    key: OnceCell<Zeroizing<[u8; 32]>>,
}

impl AuditKey {
    /// The key of the log in `db`, sealed under `kek`.
    pub fn new(db: Db, kek: Arc<KekRing>) -> Self {
        Self {
            db,
            kek,
            key: OnceCell::new(),
        }
    }

    /// The MAC key: opened from the store, or made and stored by the first replica to need it.
    pub async fn get(&self) -> Result<Zeroizing<[u8; 32]>> {
        self.key
            .get_or_try_init(|| async {
                loop {
                    if let Some(stored) = self.stored().await? {
                        return Ok(self.kek.open_key(AAD, &stored.record.sealed)?);
                    }
                    let mut key = Zeroizing::new([0u8; 32]);
                    OsRng.fill_bytes(&mut key[..]);
                    let record = SealedAuditKey {
                        sealed: self.kek.seal(AAD, &key[..]),
                    };
                    // Two replicas racing: one wins, the other reads the winner's key.
                    if self
                        .db
                        .commit(Txn::new().absent::<SealedAuditKey>("").put("", &record))
                        .await?
                    {
                        return Ok(key);
                    }
                }
            })
            .await
            .cloned()
            .map_err(|e: E| e)
    }

    /// The sealed key as stored, if made yet.
    pub async fn stored(&self) -> Result<Option<Stored<SealedAuditKey>>> {
        self.db.get::<SealedAuditKey>("").await
    }
}
