//! Leases: a station's signed right to make up to `count` boards of an order before
//! `not_after`. Acquiring moves slots from the order's quota into the lease; returning or
//! expiring it gives the unused ones back, exactly once (see [`super::quota`] for the invariant).
//!
//! A lease is an allowance of slots, nothing more: each certificate issued under it consumes
//! one (`super::certificates`), and device keys come from the coordinator per certified chip.
//! It reserves a range of certificate sequence numbers from the quota record when granted.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use flashgate_proto::v1;
use serde::{Deserialize, Serialize};

use super::grants::Grants;
use super::quota::Quota;
use super::signed_call::SignedCall;
use super::station_auth::StationAuth;
use super::stations::StationRecord;
use crate::audit::{Actor, ChainHead, ChainScope, Entry};
use crate::catalogue::Catalogue;
use crate::config::CoordinatorConfig;
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{LeaseId, OrderId, ProductId, StationId};
use crate::repository::{Attempt, Cache, CasRetry, Db, JsonRecord, Scope, Stored, Txn};

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
    quota: Quota,
    grants: Arc<Grants>,
    /// Leases as this replica last wrote or read them, for issuance (guarded on revision).
    cached: Arc<Cache<LeaseId, Stored<LeaseRecord>>>,
}

/// Leases a replica keeps for issuance.
const CACHED_LEASES: usize = 8192;

impl Leases {
    /// Leases over `db`, taking slots from `quota` for orders in `catalogue`; lease bodies are
    /// signed with `signing_key`; grants are guarded on the callers `auth` authorised.
    pub fn new(
        db: Db,
        catalogue: Catalogue,
        quota: Quota,
        signing_key: Arc<SigningKey>,
        config: Arc<CoordinatorConfig>,
        auth: StationAuth,
    ) -> Self {
        let grants = Grants::new(
            db.clone(),
            catalogue,
            quota.clone(),
            signing_key,
            config,
            auth,
        );
        Self {
            db,
            quota,
            grants: Arc::new(grants),
            cached: Arc::new(Cache::new(CACHED_LEASES)),
        }
    }

    /// Reserves up to `req.count` slots of an order for the calling station and returns the
    /// signed lease (`super::grants`: one transaction, no read in the steady state).
    pub async fn acquire(
        &self,
        call: SignedCall,
        req: &v1::AcquireLeaseRequest,
    ) -> Result<v1::SignedLease> {
        self.grants.acquire(call, req).await
    }

    /// A lease of the calling station as this replica last saw it (read if not cached): use
    /// it only under a guard on its revision, and [`Self::remember`] what the guard's refusal
    /// or the commit shows.
    pub async fn own_cached(
        &self,
        station: &StationRecord,
        lease_id: &str,
    ) -> Result<Stored<LeaseRecord>> {
        let id = LeaseId::parse(lease_id)?;
        match self.cached.get(&id) {
            Some(lease) if lease.record.station_id == station.station_id => Ok(lease),
            _ => {
                let lease = self.own(station, lease_id).await?;
                self.remember(lease.clone());
                Ok(lease)
            }
        }
    }

    /// Keeps `lease` (just written, or read back by a refused guard) for [`Self::own_cached`].
    pub fn remember(&self, lease: Stored<LeaseRecord>) {
        self.cached.put(lease.record.lease_id.clone(), lease);
    }

    /// Forgets a cached lease (so the next use reads it).
    pub fn forget(&self, id: &LeaseId) {
        self.cached.remove(id);
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
