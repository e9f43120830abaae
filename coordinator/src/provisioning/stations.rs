//! Stations: enrolled by themselves (pending), approved or revoked by an operator. A station
//! is named by its fingerprint and keeps the two public keys it enrolled with: ed25519 for
//! request signatures, X25519 for the lease secrets sealed to it.

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use serde::{Deserialize, Serialize};

use crate::access::enrolment::EnrolmentTokenRecord;
use crate::audit::{Actor, AuditLog, Entry};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::StationId;
use crate::repository::{hex, Attempt, CasRetry, Db, JsonRecord, Scope, Stored, Txn};

/// What a station may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StationState {
    /// Enrolled, waiting for an operator to approve its fingerprint: may not lease.
    Pending,
    /// Approved by an operator: may lease and report.
    Approved,
    /// Revoked by an operator: every request is refused.
    Revoked,
}

impl StationState {
    /// The state as the API shows it.
    pub fn to_proto(self) -> v1::StationState {
        match self {
            Self::Pending => v1::StationState::Pending,
            Self::Approved => v1::StationState::Approved,
            Self::Revoked => v1::StationState::Revoked,
        }
    }
}

/// `stations/{station_id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StationRecord {
    /// The station's fingerprint (from its ed25519 key).
    pub station_id: StationId,
    /// Verifies the station's signed requests.
    #[serde(with = "hex")]
    pub ed25519_public_key: [u8; 32],
    /// The key lease secrets are sealed to.
    #[serde(with = "hex")]
    pub x25519_public_key: [u8; 32],
    /// The name the station enrolled with (for operators).
    pub name: String,
    /// The factory it says it is in; orders naming a factory admit its stations.
    pub factory: String,
    /// Pending, approved or revoked.
    pub state: StationState,
    /// When it enrolled (Unix milliseconds).
    pub enrolled_at_ms: i64,
    /// When it was last approved (Unix milliseconds; 0: never).
    pub approved_at_ms: i64,
}

impl JsonRecord for StationRecord {
    const PREFIX: &'static str = "stations/";
    type Key = StationId;
}

impl StationRecord {
    /// The station as the API shows it.
    pub fn to_proto(&self) -> v1::Station {
        v1::Station {
            station_id: self.station_id.to_string(),
            ed25519_public_key: self.ed25519_public_key.to_vec(),
            x25519_public_key: self.x25519_public_key.to_vec(),
            name: self.name.clone(),
            factory: self.factory.clone(),
            state: self.state.to_proto() as i32,
            enrolled_at_ms: self.enrolled_at_ms,
            approved_at_ms: self.approved_at_ms,
        }
    }
}

/// Enrolled stations and their state changes.
#[derive(Clone)]
pub struct Stations {
    db: Db,
    audit: AuditLog,
}

impl Stations {
    /// Stations over `db`, approvals and revocations audited in `audit`.
    pub fn new(db: Db, audit: AuditLog) -> Self {
        Self { db, audit }
    }

    /// A station's record with its revision, if it has enrolled.
    pub async fn get(&self, id: &StationId) -> Result<Option<Stored<StationRecord>>> {
        self.db.get(id).await
    }

    /// Stores a newly enrolled station; `false` if one with that id exists already.
    pub(super) async fn insert(&self, record: &StationRecord) -> Result<bool> {
        let id = &record.station_id;
        self.db
            .commit(Txn::new().absent::<StationRecord>(id).put(id, record))
            .await
    }

    /// Stores a station enrolled with a one-time token, approved, consuming the token in the
    /// same audited transaction; `false` if the station or the token changed meanwhile.
    pub(super) async fn insert_with_token(
        &self,
        record: &StationRecord,
        token: &Stored<EnrolmentTokenRecord>,
    ) -> Result<bool> {
        let id = &record.station_id;
        let txn = Txn::new()
            .absent::<StationRecord>(id)
            .put(id, record)
            .unchanged(token)
            .delete(token);
        let entry =
            Entry::new(&Actor::station(id), "station enrolled with a token", id).detail(format!(
                "name {:?}, factory {:?}, token of {} ({:?})",
                record.name, record.factory, token.record.created_by, token.record.note
            ));
        let txn = self.audit.append_global(txn, entry).await?;
        self.db.commit(txn).await
    }

    /// Every station, or those in one state (`state` ≠ 0, a `v1::StationState`).
    pub async fn list(&self, state: i32) -> Result<Vec<v1::Station>> {
        Ok(self
            .db
            .list(Scope::<StationRecord>::all())
            .await?
            .iter()
            .map(|s| s.record.to_proto())
            .filter(|s| state == 0 || s.state == state)
            .collect())
    }

    /// Approves an enrolled station (also one revoked before).
    pub async fn approve(&self, by: &Actor, station_id: &str) -> Result<v1::Station> {
        self.set_state(by, station_id, StationState::Approved).await
    }

    /// Revokes a station: its requests are refused from now on.
    pub async fn revoke(&self, by: &Actor, station_id: &str) -> Result<v1::Station> {
        self.set_state(by, station_id, StationState::Revoked).await
    }

    async fn set_state(
        &self,
        by: &Actor,
        station_id: &str,
        state: StationState,
    ) -> Result<v1::Station> {
        let id = StationId::parse(station_id)?;
        CasRetry::new("the station record")
            .run(|| self.try_set_state(by, &id, state))
            .await
    }

    async fn try_set_state(
        &self,
        by: &Actor,
        id: &StationId,
        state: StationState,
    ) -> Result<Attempt<v1::Station>> {
        let stored = self.get(id).await?.ok_or_else(|| {
            E::NotFound(format!(
                "no station with fingerprint {id} has enrolled; check the fingerprint the station printed"
            ))
        })?;
        let mut station = stored.record.clone();
        station.state = state;
        if state == StationState::Approved {
            station.approved_at_ms = now_ms();
        }
        let action = match state {
            StationState::Approved => "station approved",
            StationState::Revoked => "station revoked",
            StationState::Pending => "station set pending",
        };
        let txn = Txn::new().unchanged(&stored).replace(&stored, &station);
        let txn = self
            .audit
            .append_global(
                txn,
                Entry::new(by, action, id).detail(format!("name {:?}", station.name)),
            )
            .await?;
        let committed = self.db.commit(txn).await?;
        if committed {
            tracing::info!(station = %id, ?state, "station state changed");
        }
        Ok(Attempt::committed(committed, station.to_proto()))
    }
}
