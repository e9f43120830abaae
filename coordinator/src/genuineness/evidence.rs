//! Clone evidence from a device's own traffic (data records, update receipts), written the
//! way field verification writes its verdicts: onto the device record, in one transaction with
//! its audit entry (global chain).
//!
//! A flood cannot make it write the store: each [`CloneSignal`] is written once per device (the
//! record keeps the signals it holds, checked inside the transaction, so replicas agree), and
//! this replica remembers what it wrote or found already written, so a clone that keeps sending
//! costs no further store read. The signals come only from traffic that authenticated under the
//! device key, so nobody without the key can raise one.

use std::sync::Mutex;

use flashgate_proto::clock::now_ms;

use crate::audit::{Actor, AuditLog, Entry};
use crate::data_stream::limits::BoundedMap;
use crate::error::Result;
use crate::ids::{ProductId, Serial};
use crate::provisioning::registry::CloneSignal;
use crate::provisioning::DeviceRecord;
use crate::repository::{Attempt, CasRetry, Db, Txn};

/// Signals remembered as written, per replica.
const REMEMBERED: usize = 65_536;

/// Writes clone evidence found in a device's traffic.
pub struct CloneEvidence {
    db: Db,
    audit: AuditLog,
    written: Mutex<BoundedMap<(ProductId, Serial, CloneSignal), ()>>,
}

impl CloneEvidence {
    /// Evidence over `db`, audited in `audit`.
    pub fn new(db: Db, audit: AuditLog) -> Self {
        Self {
            db,
            audit,
            written: Mutex::new(BoundedMap::new(REMEMBERED, None)),
        }
    }

    /// Writes `signal` (with `detail`, for people) onto the device's record, unless it holds it
    /// already; true if this call wrote it. A device not registered gets nothing (its traffic
    /// would not have authenticated).
    pub async fn record(
        &self,
        product_id: ProductId,
        serial: Serial,
        signal: CloneSignal,
        detail: &str,
    ) -> Result<bool> {
        let key = (product_id, serial, signal);
        if self
            .written
            .lock()
            .expect("evidence lock")
            .get(&key)
            .is_some()
        {
            return Ok(false);
        }
        let wrote = CasRetry::new("the device's clone evidence")
            .run(|| self.try_record(product_id, serial, signal, detail))
            .await?;
        self.written.lock().expect("evidence lock").insert(key, ());
        if wrote {
            tracing::warn!(%serial, %signal, detail, "clone evidence from device traffic");
        }
        Ok(wrote)
    }

    async fn try_record(
        &self,
        product_id: ProductId,
        serial: Serial,
        signal: CloneSignal,
        detail: &str,
    ) -> Result<Attempt<bool>> {
        let Some(stored) = self.db.get::<DeviceRecord>(&(product_id, serial)).await? else {
            return Ok(Attempt::Done(false));
        };
        if stored.record.clone_signals.contains(&signal) {
            return Ok(Attempt::Done(false));
        }
        let mut device = stored.record.clone();
        device.clone_signals.push(signal);
        device.add_clone_evidence(format!("{}: {signal}: {detail}", super::utc(now_ms())));
        let txn = Txn::new().unchanged(&stored).replace(&stored, &device);
        let entry = Entry::new(
            &Actor::coordinator(),
            "clone evidence",
            format!("{product_id}/{serial}"),
        )
        .detail(format!("{signal}: {detail}"));
        let txn = self.audit.append_global(txn, entry).await?;
        Ok(Attempt::committed(self.db.commit(txn).await?, true))
    }
}
