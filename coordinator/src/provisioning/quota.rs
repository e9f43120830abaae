//! The count per order, kept exact. An order is stored together with its quota (the slots
//! neither leased nor consumed); leases take slots from it and give the unused ones back.
//!
//! Invariant per order, held by every transaction of this flow:
//! `quota.remaining + quota.withdrawn + Σ active leases (count − used) + Σ all leases used == order.count`
//! (`withdrawn` is non-zero only for a cancelled order),
//! and `Σ used == certificates issued under the order` (one device record each).
//! - open ([`Quota::open_order`]): the order and a quota of `count`, in one transaction;
//! - acquire (`leases.rs`): one transaction guarded by the quota's revision moves n slots from
//!   the quota into a new lease;
//! - certificate (`certificates.rs`): one transaction guarded by the lease's revision and the
//!   serial's absence adds the device (CERTIFIED, its certificate and sealed key) and bumps
//!   `used`; the report (`reports.rs`) later only marks it INSTALLED;
//! - return / expiry (`leases.rs`, called by `crate::housekeeping` for expiry): one transaction
//!   guarded by the lease's and the quota's revisions ends the lease and gives `count − used`
//!   back. A second return or a racing expiry finds the lease no longer active, so the slots come
//!   back exactly once, whichever replica does it.
//!
//! A guard that fails means another writer won the race: the attempt is re-run from a fresh
//! read (`crate::repository::retry`). Nothing here depends on which replica leads.

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditLog, ChainHead, ChainScope, Entry};
use crate::catalogue::{OrderRecord, Orders};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::OrderId;
use crate::repository::{Attempt, CasRetry, Db, JsonRecord, Stored, Txn};

/// `quota/{order_id}`: slots of the order neither leased nor consumed, and the head of the
/// order's audit chain (every change of the quota is audited in the transaction that makes it).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct QuotaRecord {
    /// Slots left to lease.
    pub remaining: u64,
    /// Slots withdrawn by cancelling the order (unreserved ones at cancellation, and unused
    /// ones of leases that ended after it): with them the invariant stays exact.
    #[serde(default)]
    pub withdrawn: u64,
    /// When the order was cancelled (Unix milliseconds; 0: it was not).
    #[serde(default)]
    pub cancelled_at_ms: i64,
    /// The head of the `order/{id}` audit chain.
    #[serde(default)]
    pub audit: ChainHead,
    /// The first certificate sequence number the next lease reserves (a lease of n slots
    /// takes `next_sequence .. next_sequence + n`), so issuing never touches this record.
    #[serde(default = "first_sequence")]
    pub next_sequence: u32,
}

impl QuotaRecord {
    /// Whether the order was cancelled (no new lease; unused slots are withdrawn).
    pub fn cancelled(&self) -> bool {
        self.cancelled_at_ms != 0
    }

    /// This record with `released` slots of an ended lease given back: to the quota, or
    /// withdrawn if the order was cancelled.
    pub fn give_back(&self, released: u64) -> Self {
        let mut next = self.clone();
        if self.cancelled() {
            next.withdrawn += released;
        } else {
            next.remaining += released;
        }
        next
    }
}

fn first_sequence() -> u32 {
    1
}

impl JsonRecord for QuotaRecord {
    const PREFIX: &'static str = "quota/";
    type Key = OrderId;
}

/// Opens orders with their full quota and takes or gives back slots, each change one
/// compare-and-swap on the quota record.
#[derive(Clone)]
pub struct Quota {
    db: Db,
    orders: Orders,
    audit: AuditLog,
}

impl Quota {
    /// The quota over `db` for `orders`, audited in `audit`.
    pub fn new(db: Db, orders: Orders, audit: AuditLog) -> Self {
        Self { db, orders, audit }
    }

    /// The audit log the order chains are kept in.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Checks a new order against the catalogue and stores it with its full quota.
    pub async fn open_order(&self, by: &Actor, req: v1::CreateOrderRequest) -> Result<v1::Order> {
        let order = self.orders.draft(req).await?;
        let id = &order.order_id;
        let mut quota = QuotaRecord {
            remaining: order.count,
            next_sequence: first_sequence(),
            ..QuotaRecord::default()
        };
        let entry = Entry::new(by, "order created", id).detail(format!(
            "product {}, {} devices, bootloader {}, stations {:?}, factory {:?}",
            order.product_id,
            order.count,
            order.bootloader_digest,
            order
                .station_ids
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            order.factory
        ));
        let txn = Txn::new()
            .absent::<OrderRecord>(id)
            .absent::<QuotaRecord>(id)
            .put(id, &order);
        let txn = self
            .audit
            .append(txn, &ChainScope::order(id), &mut quota.audit, entry)
            .await?;
        if !self.db.commit(txn.put(id, &quota)).await? {
            return Err(E::AlreadyExists(format!("order {id} already exists")));
        }
        Ok(order.to_proto())
    }

    /// Cancels an order: its unreserved slots are withdrawn at once, and the unused slots of its
    /// active leases are withdrawn when those end (instead of coming back). Idempotent.
    pub async fn cancel_order(&self, by: &Actor, order_id: &str) -> Result<QuotaRecord> {
        let order = self.orders.get(order_id).await?;
        CasRetry::new("the order's quota")
            .run(|| async {
                let stored = self.get(&order.order_id).await?;
                if stored.record.cancelled() {
                    return Ok(Attempt::Done(stored.record));
                }
                let mut next = stored.record.clone();
                next.withdrawn += next.remaining;
                let entry = Entry::new(by, "order cancelled", &order.order_id)
                    .detail(format!("{} unreserved slots withdrawn", next.remaining));
                next.remaining = 0;
                next.cancelled_at_ms = now_ms();
                let txn = self
                    .audit
                    .append(
                        Txn::new().unchanged(&stored),
                        &ChainScope::order(&order.order_id),
                        &mut next.audit,
                        entry,
                    )
                    .await?
                    .replace(&stored, &next);
                Ok(Attempt::committed(self.db.commit(txn).await?, next))
            })
            .await
    }

    /// The quota of a stored order.
    pub async fn get(&self, order_id: &OrderId) -> Result<Stored<QuotaRecord>> {
        self.db
            .get::<QuotaRecord>(order_id)
            .await?
            .ok_or_else(|| E::Internal(format!("quota of order {order_id} is missing")))
    }
}
