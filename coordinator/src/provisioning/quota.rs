//! The count per order, kept exact. An order is stored together with its quota (the slots
//! neither leased nor consumed); leases take slots from it and give the unused ones back.
//!
//! Invariant per order, held by every transaction of this flow:
//! `quota.remaining + Σ active leases (count − used) + Σ all leases used == order.count`,
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

use flashgate_proto::v1;
use serde::{Deserialize, Serialize};

use crate::catalogue::{OrderRecord, Orders};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::OrderId;
use crate::repository::{Db, JsonRecord, Stored, Txn};

/// `quota/{order_id}`: slots of the order neither leased nor consumed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QuotaRecord {
    /// Slots left to lease.
    pub remaining: u64,
    /// The first certificate sequence number the next lease reserves (a lease of n slots
    /// takes `next_sequence .. next_sequence + n`), so issuing never touches this record.
    #[serde(default = "first_sequence")]
    pub next_sequence: u32,
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
}

impl Quota {
    /// The quota over `db` for `orders`.
    pub fn new(db: Db, orders: Orders) -> Self {
        Self { db, orders }
    }

    /// Checks a new order against the catalogue and stores it with its full quota.
    pub async fn open_order(&self, req: v1::CreateOrderRequest) -> Result<v1::Order> {
        let order = self.orders.draft(req).await?;
        let id = &order.order_id;
        let created = self
            .db
            .commit(
                Txn::new()
                    .absent::<OrderRecord>(id)
                    .absent::<QuotaRecord>(id)
                    .put(id, &order)
                    .put(
                        id,
                        &QuotaRecord {
                            remaining: order.count,
                            next_sequence: first_sequence(),
                        },
                    ),
            )
            .await?;
        if !created {
            return Err(E::AlreadyExists(format!("order {id} already exists")));
        }
        Ok(order.to_proto())
    }

    /// The quota of a stored order.
    pub async fn get(&self, order_id: &OrderId) -> Result<Stored<QuotaRecord>> {
        self.db
            .get::<QuotaRecord>(order_id)
            .await?
            .ok_or_else(|| E::Internal(format!("quota of order {order_id} is missing")))
    }
}
