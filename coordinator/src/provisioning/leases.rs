//! Leases: a station's signed right to make up to `count` boards of an order before
//! `not_after`. Acquiring moves slots from the order's quota into the lease; returning or
//! expiring it gives the unused ones back, exactly once (see [`super::quota`] for the invariant).
//!
//! A lease is an allowance of slots, nothing more: each certificate issued under it consumes
//! one (`super::certificates`), and device keys come from the coordinator per certified chip.
//! It reserves a range of certificate sequence numbers from the quota record when granted.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use flashgate_proto::clock::now_ms;
use flashgate_proto::{lease::sign_lease, v1};
use serde::{Deserialize, Serialize};

use super::quota::Quota;
use super::stations::StationRecord;
use crate::audit::{Actor, ChainHead, ChainScope, Entry};
use crate::catalogue::{Catalogue, OrderRecord};
use crate::config::CoordinatorConfig;
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{LeaseId, OrderId, ProductId, StationId};
use crate::repository::{Attempt, CasRetry, Db, JsonRecord, Scope, Stored, Txn};

/// Where a lease is in its life; only an `Active` lease accepts reports of new installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseState {
    /// Issued and not yet ended: its unused slots are reserved for its station.
    Active,
    /// Given back by its station; its unused slots went back to the quota.
    Returned,
    /// Ended by housekeeping after its validity and the report grace; its unused slots went
    /// back to the quota.
    Expired,
}

impl LeaseState {
    fn to_proto(self) -> v1::LeaseState {
        match self {
            Self::Active => v1::LeaseState::Active,
            Self::Returned => v1::LeaseState::Returned,
            Self::Expired => v1::LeaseState::Expired,
        }
    }
}

/// `leases/{lease_id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The lease's id, chosen by the coordinator.
    pub lease_id: LeaseId,
    /// The station it was issued to (the only one that may report under it).
    pub station_id: StationId,
    /// The order its slots were taken from.
    pub order_id: OrderId,
    /// The order's product.
    pub product_id: ProductId,
    /// How many boards it allows (slots taken from the order's quota).
    pub count: u32,
    /// How many of them are consumed by registered devices.
    pub used: u32,
    /// Whether it is active, returned or expired.
    pub state: LeaseState,
    /// When it was issued (Unix milliseconds).
    pub issued_at_ms: i64,
    /// End of its validity (Unix milliseconds); reports of installs done by then are taken
    /// for a grace period after.
    pub not_after_ms: i64,
    /// The first certificate sequence number reserved for the lease (`first_sequence + used`
    /// is the next one it issues).
    #[serde(default)]
    pub first_sequence: u32,
    /// The authority key its certificates are signed with (the product's current key when it
    /// was granted).
    #[serde(with = "crate::repository::hex", default)]
    pub authority_public_key: [u8; 32],
    /// Slots given back to the quota when the lease ended.
    pub released: u32,
    /// The head of the `lease/{id}` audit chain (its slots consumed).
    #[serde(default)]
    pub audit: ChainHead,
}

impl JsonRecord for LeaseRecord {
    const PREFIX: &'static str = "leases/";
    type Key = LeaseId;
}

impl LeaseRecord {
    /// The lease as the API shows it (without its secret).
    pub fn to_proto(&self) -> v1::LeaseInfo {
        v1::LeaseInfo {
            lease_id: self.lease_id.to_string(),
            station_id: self.station_id.to_string(),
            order_id: self.order_id.to_string(),
            count: self.count,
            used: self.used,
            state: self.state.to_proto() as i32,
            issued_at_ms: self.issued_at_ms,
            not_after_ms: self.not_after_ms,
            released: self.released,
        }
    }
}

/// Issues, returns and ends leases.
#[derive(Clone)]
pub struct Leases {
    db: Db,
    catalogue: Catalogue,
    quota: Quota,
    signing_key: Arc<SigningKey>,
    config: Arc<CoordinatorConfig>,
}

impl Leases {
    /// Leases over `db`, taking slots from `quota` for orders in `catalogue`; lease bodies are
    /// signed with `signing_key`.
    pub fn new(
        db: Db,
        catalogue: Catalogue,
        quota: Quota,
        signing_key: Arc<SigningKey>,
        config: Arc<CoordinatorConfig>,
    ) -> Self {
        Self {
            db,
            catalogue,
            quota,
            signing_key,
            config,
        }
    }

    /// Reserves up to `req.count` slots of an order for `station` and returns the signed lease.
    pub async fn acquire(
        &self,
        station: &StationRecord,
        req: &v1::AcquireLeaseRequest,
    ) -> Result<v1::SignedLease> {
        let order = self.catalogue.orders.get(&req.order_id).await?;
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
        let vendor_public_key = self
            .catalogue
            .products
            .get(order.product_id)
            .await?
            .vendor_public_key;
        let authority_public_key = self
            .catalogue
            .products
            .authority()
            .current(order.product_id)
            .await?
            .public_key;
        let grant = Grant {
            station,
            order: &order,
            vendor_public_key,
            authority_public_key,
            count: req.count,
            allow_partial: req.allow_partial,
            validity,
        };
        CasRetry::new("the order's quota")
            .run(|| self.try_acquire(&grant))
            .await
    }

    async fn try_acquire(&self, grant: &Grant<'_>) -> Result<Attempt<v1::SignedLease>> {
        let (order, station) = (grant.order, grant.station);
        let quota = self.quota.get(&order.order_id).await?;
        if quota.record.cancelled() {
            return Err(E::FailedPrecondition(format!(
                "order {} was cancelled; no new lease is granted under it",
                order.order_id
            )));
        }
        let remaining = quota.record.remaining;
        let granted = if remaining >= u64::from(grant.count) {
            grant.count
        } else if grant.allow_partial && remaining > 0 {
            remaining as u32
        } else {
            return Err(E::Exhausted(format!(
                "order {} has {remaining} unreserved slots left, fewer than the {} asked for",
                order.order_id, grant.count
            )));
        };
        let lease_id = LeaseId::random();
        let first_sequence = quota.record.next_sequence;
        let next_sequence = first_sequence.checked_add(granted).ok_or_else(|| {
            E::Exhausted(format!(
                "order {} has used up its certificate sequence numbers",
                order.order_id
            ))
        })?;
        let issued_at_ms = now_ms();
        let record = LeaseRecord {
            lease_id: lease_id.clone(),
            station_id: station.station_id.clone(),
            order_id: order.order_id.clone(),
            product_id: order.product_id,
            count: granted,
            used: 0,
            state: LeaseState::Active,
            issued_at_ms,
            not_after_ms: issued_at_ms + grant.validity.as_millis() as i64,
            first_sequence,
            authority_public_key: grant.authority_public_key,
            released: 0,
            audit: ChainHead::default(),
        };
        let left = remaining - u64::from(granted);
        let mut next = quota.record.clone();
        next.remaining = left;
        next.next_sequence = next_sequence;
        let entry = Entry::new(
            &Actor::station(&station.station_id),
            "lease granted",
            &lease_id,
        )
        .detail(format!(
            "{granted} slots, not after {}, {left} left",
            record.not_after_ms
        ));
        let txn = self
            .quota
            .audit()
            .append(
                Txn::new()
                    .unchanged(&quota)
                    .absent::<LeaseRecord>(&lease_id),
                &ChainScope::order(&order.order_id),
                &mut next.audit,
                entry,
            )
            .await?;
        let committed = self
            .db
            .commit(txn.replace(&quota, &next).put(&lease_id, &record))
            .await?;
        if !committed {
            return Ok(Attempt::Conflict);
        }
        tracing::info!(
            lease = %lease_id, order = %order.order_id, station = %station.station_id,
            count = granted, not_after_ms = record.not_after_ms, "lease granted"
        );
        crate::metrics::granted(order.order_id.as_str(), granted);
        crate::metrics::quota_remaining(order.order_id.as_str(), left);
        let body = v1::LeaseBody {
            lease_id: lease_id.to_string(),
            station_id: station.station_id.to_string(),
            order_id: order.order_id.to_string(),
            product_id: order.product_id.0,
            bootloader_digest: order.bootloader_digest.0.to_vec(),
            bootloader_version: order.bootloader_version,
            test_app_digest: order
                .test_app_digest
                .map(|d| d.0.to_vec())
                .unwrap_or_default(),
            count: granted,
            issued_at_ms,
            not_after_ms: record.not_after_ms,
            vendor_public_key: grant.vendor_public_key.to_vec(),
            os_release_digest: order
                .os_release_digest
                .map(|d| d.0.to_vec())
                .unwrap_or_default(),
            os_version: order.os_version,
            authority_public_key: grant.authority_public_key.to_vec(),
        };
        Ok(Attempt::Done(sign_lease(&body, &self.signing_key)))
    }

    /// A lease of `station`, named by the station.
    pub async fn own(
        &self,
        station: &StationRecord,
        lease_id: &str,
    ) -> Result<Stored<LeaseRecord>> {
        let id = LeaseId::parse(lease_id)?;
        let lease = self.db.get::<LeaseRecord>(&id).await?.ok_or_else(|| {
            E::NotFound(format!(
                "lease {id} does not exist (never issued by this coordinator)"
            ))
        })?;
        if lease.record.station_id != station.station_id {
            return Err(E::PermissionDenied(format!(
                "lease {id} was issued to another station; a station may only use its own leases"
            )));
        }
        Ok(lease)
    }

    /// Ends a lease at the station's request and gives its unused slots back.
    pub async fn return_lease(
        &self,
        station: &StationRecord,
        lease_id: &str,
    ) -> Result<v1::ReturnLeaseResponse> {
        CasRetry::new("the lease")
            .run(|| async {
                let lease = self.own(station, lease_id).await?;
                self.try_end(
                    lease,
                    LeaseState::Returned,
                    &Actor::station(&station.station_id),
                )
                .await
            })
            .await
    }

    /// Ends the lease `id` as expired (if still active), retrying on conflicts; whether this
    /// call ended it.
    pub async fn expire(&self, id: &LeaseId) -> Result<bool> {
        CasRetry::new("the lease")
            .run(|| async {
                let Some(lease) = self.db.get::<LeaseRecord>(id).await? else {
                    return Ok(Attempt::Done(false));
                };
                let was_active = lease.record.state == LeaseState::Active;
                Ok(
                    match self
                        .try_end(lease, LeaseState::Expired, &Actor::coordinator())
                        .await?
                    {
                        Attempt::Done(_) => Attempt::Done(was_active),
                        Attempt::Conflict => Attempt::Conflict,
                    },
                )
            })
            .await
    }

    /// One attempt to end `lease` and give `count − used` back to the order's quota.
    async fn try_end(
        &self,
        lease: Stored<LeaseRecord>,
        state: LeaseState,
        by: &Actor,
    ) -> Result<Attempt<v1::ReturnLeaseResponse>> {
        if lease.record.state != LeaseState::Active {
            // Already ended: the slots were given back then, never twice.
            return Ok(Attempt::Done(v1::ReturnLeaseResponse {
                released: 0,
                lease: Some(lease.record.to_proto()),
            }));
        }
        let quota = self.quota.get(&lease.record.order_id).await?;
        let mut ended = lease.record.clone();
        let released = ended.count - ended.used;
        ended.state = state;
        ended.released = released;
        let mut next = quota.record.give_back(u64::from(released));
        let remaining = next.remaining;
        let action = match state {
            LeaseState::Expired => "lease expired",
            _ => "lease returned",
        };
        let entry = Entry::new(by, action, &ended.lease_id).detail(format!(
            "{released} unused slots {}, {} used",
            if quota.record.cancelled() {
                "withdrawn (order cancelled)"
            } else {
                "back to the order"
            },
            ended.used
        ));
        let txn = self
            .quota
            .audit()
            .append(
                Txn::new().unchanged(&lease).unchanged(&quota),
                &ChainScope::order(&ended.order_id),
                &mut next.audit,
                entry,
            )
            .await?;
        let committed = self
            .db
            .commit(txn.replace(&lease, &ended).replace(&quota, &next))
            .await?;
        if !committed {
            return Ok(Attempt::Conflict);
        }
        tracing::info!(lease = %ended.lease_id, order = %ended.order_id, released, ?state, "lease ended");
        crate::metrics::quota_remaining(ended.order_id.as_str(), remaining);
        Ok(Attempt::Done(v1::ReturnLeaseResponse {
            released,
            lease: Some(ended.to_proto()),
        }))
    }

    /// Every lease (`Stored`, for the expiry sweep).
    pub async fn all(&self) -> Result<Vec<Stored<LeaseRecord>>> {
        self.db.list(Scope::<LeaseRecord>::all()).await
    }

    /// Leases, optionally of one order and/or one station.
    pub async fn list(&self, order_id: &str, station_id: &str) -> Result<Vec<v1::LeaseInfo>> {
        Ok(self
            .all()
            .await?
            .iter()
            .map(|l| &l.record)
            .filter(|l| order_id.is_empty() || l.order_id.as_str() == order_id)
            .filter(|l| station_id.is_empty() || l.station_id.as_str() == station_id)
            .map(LeaseRecord::to_proto)
            .collect())
    }
}

/// What an acquire asks for, fixed across its attempts.
struct Grant<'a> {
    station: &'a StationRecord,
    order: &'a OrderRecord,
    vendor_public_key: [u8; 32],
    authority_public_key: [u8; 32],
    count: u32,
    allow_partial: bool,
    validity: Duration,
}
