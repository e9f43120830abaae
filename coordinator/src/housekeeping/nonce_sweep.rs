//! Replay-cache sweep: a nonce entry older than twice the auth window can go, since a request
//! that old fails the timestamp check before its nonce is looked at.

use crate::error::Result;
use crate::provisioning::nonces::NonceRecord;
use crate::repository::{Db, Scope, Txn};

/// Deletes the entries stamped before `cutoff_ms`, 100 per transaction; how many.
pub async fn sweep_nonces(db: &Db, cutoff_ms: i64) -> Result<usize> {
    let stale: Vec<_> = db
        .list(Scope::<NonceRecord>::all())
        .await?
        .into_iter()
        .filter(|n| i64::try_from(n.record.timestamp_ms).map_or(true, |ts| ts < cutoff_ms))
        .collect();
    for chunk in stale.chunks(100) {
        let txn = chunk.iter().fold(Txn::new(), |txn, n| txn.delete(n));
        db.commit(txn).await?;
    }
    Ok(stale.len())
}
