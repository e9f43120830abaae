//! `AcquireLease` at the store's pace: one transaction per grant, or per group of grants.
//!
//! A grant reads nothing from the store in the steady state. What it needs comes from this
//! replica's memory, each piece either immutable or re-checked by a guard in the one
//! transaction that grants (`crate::repository::cache`):
//!
//! | needed | from | why it cannot be stale |
//! | --- | --- | --- |
//! | the order | `Orders::cached` | orders never change once stored |
//! | the product's vendor key | `Products::cached` | products never change |
//! | the current authority key | `AuthorityKeys::current_cached` | guarded: the next generation is absent |
//! | the quota (remaining, next sequence, order audit head) | this module's cache | guarded: its revision |
//! | the station (approved) | `StationAuth::verify_signed` | guarded: its revision |
//! | the nonce unused | — | guarded absent, written in the same transaction |
//!
//! A refused transaction reads every guarded key back in the same round trip
//! (`Db::transact`): a replayed nonce or a station no longer approved refuses its request; a
//! newer quota or authority key is taken and the grant tried again. A refusal of a request
//! (order used up, cancelled) is decided only on a quota read fresh in this call.
//!
//! Concurrent grants of one order on this replica would all race for the order's one quota
//! record (one of n wins each round). Instead they queue in the order's lane and whoever holds
//! the lane's turn grants everything queued in one transaction: n leases, n audit entries
//! chained in order, n nonces, one quota update — the count as exact as one at a time, since
//! the whole group commits or none of it. Replicas still race each other on the quota record
//! exactly as before, guarded by its revision.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use flashgate_proto::clock::now_ms;
use flashgate_proto::{lease::sign_lease, v1};
use tokio::sync::oneshot;

use super::leases::{LeaseRecord, LeaseState};
use super::quota::{Quota, QuotaRecord};
use super::signed_call::{replayed, SignedCall};
use super::station_auth::StationAuth;
use crate::audit::{Actor, ChainHead, ChainScope, Entry};
use crate::catalogue::{Catalogue, OrderRecord};
use crate::config::CoordinatorConfig;
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{LeaseId, OrderId};
use crate::repository::{Cache, CasRetry, Db, Stored, Transacted, Txn};

/// Grants sharing one transaction at most: etcd takes 128 operations a transaction, and a
/// grant adds 3 writes, 4 guards and 2 reads on refusal.
const MAX_BATCH: usize = 24;

/// Quota records (one per order) a replica keeps.
const CACHED_QUOTAS: usize = 4096;

/// One queued request.
struct Pending {
    call: SignedCall,
    count: u32,
    allow_partial: bool,
    validity: Duration,
    /// `None` once answered.
    reply: Option<oneshot::Sender<Result<v1::SignedLease>>>,
}

impl Pending {
    fn answer(&mut self, result: Result<v1::SignedLease>) {
        if let Some(reply) = self.reply.take() {
            // A caller that went away no longer needs its answer; its lease (if granted)
            // ends by return or expiry like any other.
            let _ = reply.send(result);
        }
    }
}

/// The queue of one order's grants on this replica.
#[derive(Default)]
struct Lane {
    queue: Mutex<Vec<Pending>>,
    turn: tokio::sync::Mutex<()>,
}

/// Grants leases: moves slots from an order's quota into new signed leases.
pub(super) struct Grants {
    db: Db,
    catalogue: Catalogue,
    quota: Quota,
    signing_key: Arc<SigningKey>,
    config: Arc<CoordinatorConfig>,
    auth: StationAuth,
    quotas: Cache<OrderId, Stored<QuotaRecord>>,
    lanes: Mutex<HashMap<OrderId, Arc<Lane>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing is left half-done under these locks (a push, a drain, a lookup).
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Grants {
    pub(super) fn new(
        db: Db,
        catalogue: Catalogue,
        quota: Quota,
        signing_key: Arc<SigningKey>,
        config: Arc<CoordinatorConfig>,
        auth: StationAuth,
    ) -> Self {
        Self {
            db,
            catalogue,
            quota,
            signing_key,
            config,
            auth,
            quotas: Cache::new(CACHED_QUOTAS),
            lanes: Mutex::default(),
        }
    }

    fn lane(&self, order: &OrderId) -> Arc<Lane> {
        lock(&self.lanes).entry(order.clone()).or_default().clone()
    }

    /// Reserves up to `req.count` slots of an order for the calling station and returns the
    /// signed lease.
    pub(super) async fn acquire(
        self: &Arc<Self>,
        call: SignedCall,
        req: &v1::AcquireLeaseRequest,
    ) -> Result<v1::SignedLease> {
        let order = self.catalogue.orders.cached(&req.order_id).await?;
        let station = call.record();
        if !order.admits(&station.station_id, &station.factory) {
            return Err(E::PermissionDenied(format!(
                "station {} is not assigned to order {}",
                station.station_id, order.order_id
            )));
        }
        if req.count == 0 || req.count > self.config.max_lease_count {
            return Err(E::InvalidArgument(format!(
                "a lease covers 1 to {} devices; asked for {}",
                self.config.max_lease_count, req.count
            )));
        }
        let validity = if req.validity_seconds == 0 {
            self.config.default_lease_validity
        } else {
            Duration::from_secs(u64::from(req.validity_seconds)).min(self.config.max_lease_validity)
        };
        let (reply, mut answer) = oneshot::channel();
        let lane = self.lane(&order.order_id);
        lock(&lane.queue).push(Pending {
            call,
            count: req.count,
            allow_partial: req.allow_partial,
            validity,
            reply: Some(reply),
        });
        let _turn = lane.turn.lock().await;
        loop {
            match answer.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(E::Internal("a lease grant was dropped unanswered".into()))
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<Pending> = {
                let mut queue = lock(&lane.queue);
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            let (this, order) = (self.clone(), order.clone());
            // Spawned: a caller that goes away must not cut the others' transaction short.
            let granted = tokio::spawn(async move { this.grant_all(&order, batch).await });
            if granted.await.is_err() {
                return Err(E::Internal("a lease grant task failed".into()));
            }
        }
    }

    /// Grants (or refuses) every request of `batch`, answering each.
    async fn grant_all(&self, order: &OrderRecord, mut batch: Vec<Pending>) {
        let mut fresh = false;
        for attempt in 0..CasRetry::DEFAULT_ATTEMPTS {
            match self.attempt(order, &mut batch, &mut fresh).await {
                Ok(()) => {}
                Err(error) => {
                    for p in &mut batch {
                        p.answer(Err(error.duplicate()));
                    }
                }
            }
            batch.retain(|p| p.reply.is_some());
            if batch.is_empty() {
                return;
            }
            if attempt > 0 {
                // Another replica keeps winning the quota: spread out.
                tokio::time::sleep(CasRetry::pause(attempt)).await;
            }
        }
        for p in &mut batch {
            p.answer(Err(E::Contended {
                what: "the order's quota",
                attempts: CasRetry::DEFAULT_ATTEMPTS,
            }));
        }
    }

    /// The quota: cached, or read (then `fresh`).
    async fn quota_of(&self, order: &OrderId, fresh: &mut bool) -> Result<Stored<QuotaRecord>> {
        if let Some(quota) = self.quotas.get(order) {
            return Ok(quota);
        }
        let quota = self.quota.get(order).await?;
        *fresh = true;
        self.quotas.put(order.clone(), quota.clone());
        Ok(quota)
    }

    /// One transaction for every request still unanswered in `batch`; answers those it
    /// grants or refuses, leaves the others (to be tried again from fresh records).
    async fn attempt(
        &self,
        order: &OrderRecord,
        batch: &mut [Pending],
        fresh: &mut bool,
    ) -> Result<()> {
        let mut quota = self.quota_of(&order.order_id, fresh).await?;
        let mut decided = decide(order, &quota.record, batch);
        if !*fresh && decided.iter().any(Result::is_err) {
            // A refusal is never decided from the cache.
            self.quotas.remove(&order.order_id);
            quota = self.quota_of(&order.order_id, fresh).await?;
            decided = decide(order, &quota.record, batch);
        }
        let products = &self.catalogue.products;
        let authority = products
            .authority()
            .current_cached(order.product_id)
            .await?;
        let vendor_public_key = products.cached(order.product_id).await?.vendor_public_key;
        let authority_public_key = authority.record.public_key;

        let mut next = quota.record.clone();
        let mut txn = authority.guard(Txn::new().unchanged(&quota));
        let mut reads = vec![quota.key.clone(), authority.successor.clone()];
        let mut stations = HashSet::new();
        let mut granted = Vec::new();
        for (i, decision) in decided.into_iter().enumerate() {
            let p = &mut batch[i];
            let count = match decision {
                Ok(count) => count,
                Err(refusal) => {
                    p.answer(Err(refusal));
                    continue;
                }
            };
            let station = p.call.record();
            let lease_id = LeaseId::random();
            let issued_at_ms = now_ms();
            let record = LeaseRecord {
                lease_id: lease_id.clone(),
                station_id: station.station_id.clone(),
                order_id: order.order_id.clone(),
                product_id: order.product_id,
                count,
                used: 0,
                state: LeaseState::Active,
                issued_at_ms,
                not_after_ms: issued_at_ms + p.validity.as_millis() as i64,
                first_sequence: next.next_sequence,
                authority_public_key,
                released: 0,
                audit: ChainHead::default(),
            };
            next.next_sequence += count;
            next.remaining -= u64::from(count);
            let entry = Entry::new(
                &Actor::station(&station.station_id),
                "lease granted",
                &lease_id,
            )
            .detail(format!(
                "{count} slots, not after {}, {} left",
                record.not_after_ms, next.remaining
            ));
            let [station_key, nonce_key] = p.call.read_on_refusal();
            if stations.insert(station_key.clone()) {
                txn = txn.unchanged(&p.call.station);
                reads.push(station_key);
            }
            reads.push(nonce_key);
            txn = p
                .call
                .nonce
                .consume(txn)
                .absent::<LeaseRecord>(&lease_id)
                .put(&lease_id, &record);
            txn = self
                .quota
                .audit()
                .append(
                    txn,
                    &ChainScope::order(&order.order_id),
                    &mut next.audit,
                    entry,
                )
                .await?;
            granted.push((i, record, next.remaining));
        }
        if granted.is_empty() {
            return Ok(());
        }
        let txn = txn.replace(&quota, &next);
        match self.db.transact(txn, &reads).await? {
            Transacted::Committed { revision } => {
                self.quotas.put(
                    order.order_id.clone(),
                    Stored::written(quota.key.clone(), next, revision),
                );
                for (i, record, left) in granted {
                    tracing::info!(
                        lease = %record.lease_id, order = %order.order_id,
                        station = %record.station_id, count = record.count,
                        not_after_ms = record.not_after_ms, "lease granted"
                    );
                    crate::metrics::granted(order.order_id.as_str(), record.count);
                    crate::metrics::quota_remaining(order.order_id.as_str(), left);
                    let body = lease_body(order, &record, vendor_public_key);
                    batch[i].answer(Ok(sign_lease(&body, &self.signing_key)));
                }
            }
            Transacted::Refused(refusal) => {
                *fresh = true;
                let quota = refusal.take::<QuotaRecord>(&quota.key)?.ok_or_else(|| {
                    E::Internal(format!("quota of order {} is missing", order.order_id))
                })?;
                self.quotas.put(order.order_id.clone(), quota);
                if refusal.present(&authority.successor) {
                    products.authority().forget_current(order.product_id);
                }
                for (i, _, _) in granted {
                    let p = &mut batch[i];
                    let settled = p.call.settle(&refusal);
                    self.auth.remember(&p.call);
                    if let Err(error) = settled {
                        p.answer(Err(error));
                    }
                }
            }
        }
        Ok(())
    }
}

/// How many slots each request of `batch` gets from `quota`, in queue order (or why none).
fn decide(order: &OrderRecord, quota: &QuotaRecord, batch: &[Pending]) -> Vec<Result<u32>> {
    let mut remaining = quota.remaining;
    let mut next_sequence = quota.next_sequence;
    let mut nonces = HashSet::new();
    batch
        .iter()
        .map(|p| {
            if p.reply.is_none() {
                return Err(E::Internal("already answered".into()));
            }
            if !nonces.insert(p.call.nonce.key()) {
                return Err(replayed());
            }
            if quota.cancelled() {
                return Err(E::FailedPrecondition(format!(
                    "order {} was cancelled; no new lease is granted under it",
                    order.order_id
                )));
            }
            let granted = if remaining >= u64::from(p.count) {
                p.count
            } else if p.allow_partial && remaining > 0 {
                remaining as u32
            } else {
                return Err(E::Exhausted(format!(
                    "order {} has {remaining} unreserved slots left, fewer than the {} asked for",
                    order.order_id, p.count
                )));
            };
            next_sequence = next_sequence.checked_add(granted).ok_or_else(|| {
                E::Exhausted(format!(
                    "order {} has used up its certificate sequence numbers",
                    order.order_id
                ))
            })?;
            remaining -= u64::from(granted);
            Ok(granted)
        })
        .collect()
}

/// What the station is given, signed.
fn lease_body(
    order: &OrderRecord,
    record: &LeaseRecord,
    vendor_public_key: [u8; 32],
) -> v1::LeaseBody {
    v1::LeaseBody {
        lease_id: record.lease_id.to_string(),
        station_id: record.station_id.to_string(),
        order_id: order.order_id.to_string(),
        product_id: order.product_id.0,
        bootloader_digest: order.bootloader_digest.0.to_vec(),
        bootloader_version: order.bootloader_version,
        test_app_digest: order
            .test_app_digest
            .map(|d| d.0.to_vec())
            .unwrap_or_default(),
        count: record.count,
        issued_at_ms: record.issued_at_ms,
        not_after_ms: record.not_after_ms,
        vendor_public_key: vendor_public_key.to_vec(),
        os_release_digest: order
            .os_release_digest
            .map(|d| d.0.to_vec())
            .unwrap_or_default(),
        os_version: order.os_version,
        authority_public_key: record.authority_public_key.to_vec(),
    }
}
