//! How far each order has come: consumed (devices registered), reserved under active leases,
//! remaining in the quota, failed targets. Read from the quota, the leases and the failure
//! records; written by none of this module.

use flashgate_proto::v1;

use super::leases::{LeaseRecord, LeaseState};
use super::quota::Quota;
use super::registry::FailureRecord;
use crate::catalogue::{OrderRecord, Orders};
use crate::error::Result;
use crate::repository::{Db, Scope, Stored};

/// Answers how far orders have come, from their quota, leases and recorded failures.
#[derive(Clone)]
pub struct Progress {
    db: Db,
    orders: Orders,
    quota: Quota,
}

impl Progress {
    /// Progress over `db`, reading `orders` and their `quota`.
    pub fn new(db: Db, orders: Orders, quota: Quota) -> Self {
        Self { db, orders, quota }
    }

    /// How far an order has come: consumed, reserved under active leases, remaining, failed.
    pub async fn status(&self, order_id: &str) -> Result<v1::OrderStatus> {
        let order = self.orders.get(order_id).await?;
        let leases = self.db.list(Scope::<LeaseRecord>::all()).await?;
        self.status_of(&order, &leases).await
    }

    /// The status of every order.
    pub async fn list(&self) -> Result<Vec<v1::OrderStatus>> {
        let leases = self.db.list(Scope::<LeaseRecord>::all()).await?;
        let mut out = Vec::new();
        for order in self.orders.list().await? {
            out.push(self.status_of(&order, &leases).await?);
        }
        Ok(out)
    }

    async fn status_of(
        &self,
        order: &OrderRecord,
        leases: &[Stored<LeaseRecord>],
    ) -> Result<v1::OrderStatus> {
        let quota = self.quota.get(&order.order_id).await?.record;
        let failed = self
            .db
            .count(Scope::<FailureRecord>::under(&order.order_id))
            .await? as u64;
        let mut status = v1::OrderStatus {
            order: Some(order.to_proto()),
            remaining: quota.remaining,
            failed,
            ..Default::default()
        };
        for lease in leases
            .iter()
            .map(|l| &l.record)
            .filter(|l| l.order_id == order.order_id)
        {
            status.consumed += u64::from(lease.used);
            if lease.state == LeaseState::Active {
                status.reserved += u64::from(lease.count - lease.used);
                status.active_leases += 1;
            }
        }
        Ok(status)
    }
}
