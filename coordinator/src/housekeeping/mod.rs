//! Housekeeping: the periodic work one replica does for all, while it leads ([`leader`]):
//! ending leases abandoned past their report grace ([`expiry`]) and pruning the replay cache
//! ([`nonce_sweep`]), and taking the steps of staged rollouts whose gates passed (or whose
//! failures tripped) without a report to step them (`update::rollouts::advance_all`).
//!
//! Correctness never depends on it: each lease end is a guarded transaction (a racing return,
//! or a second replica sweeping after a leadership change, finds the lease ended and gives
//! nothing back twice), and a nonce is swept only once its request would fail the clock check
//! anyway. Leadership only keeps replicas from all sweeping at once.

pub mod expiry;
pub mod leader;
pub mod nonce_sweep;

use std::time::Duration;

use flashgate_proto::clock::now_ms;
use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::config::CoordinatorConfig;
use crate::error::Result;
use crate::provisioning::Leases;
use crate::repository::Db;
use crate::store::Election;

/// The election housekeeping leaders are chosen in (a key under the store's namespace).
pub const ELECTION: &str = "leader";

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Leases whose validity (plus the report grace) had ended, now expired and their unused
    /// slots returned.
    pub expired_leases: u32,
    /// Replay-cache entries (station request nonces) old enough to drop.
    pub nonces: usize,
    /// Rollout steps taken (waves opened, pauses, completions).
    pub rollout_steps: usize,
}

/// The periodic sweeps (lease expiry, replay-cache cleanup), run only by the replica that
/// wins the [`ELECTION`].
pub struct Housekeeping {
    db: Db,
    leases: Leases,
    audit: AuditLog,
    interval: Duration,
    report_grace: Duration,
    /// Replay-cache entries older than this are swept (twice the auth window).
    nonce_age: Duration,
    node_id: String,
}

impl Housekeeping {
    /// Housekeeping over `db` and `leases` (its rollout steps recorded in `audit`), timed by
    /// `config`.
    pub fn new(db: Db, leases: Leases, audit: AuditLog, config: &CoordinatorConfig) -> Self {
        Self {
            db,
            leases,
            audit,
            interval: config.sweep_interval,
            report_grace: config.report_grace,
            nonce_age: config.auth_window * 2,
            node_id: config.node_id.clone(),
        }
    }

    /// How long a leader that stopped renewing keeps leadership: a few sweep intervals.
    pub fn leadership_ttl(&self) -> Duration {
        (self.interval * 3).max(Duration::from_secs(2))
    }

    /// This replica's seat in the store's housekeeping election.
    pub fn election(&self) -> Box<dyn Election> {
        self.db
            .store()
            .election(ELECTION, &self.node_id, self.leadership_ttl())
    }

    /// One sweep, whoever leads (safe on any number of replicas at once).
    pub async fn sweep(&self) -> Result<Swept> {
        let expired_leases =
            expiry::expire_leases(&self.leases, now_ms(), self.report_grace).await?;
        let cutoff = now_ms() - self.nonce_age.as_millis() as i64;
        let nonces = nonce_sweep::sweep_nonces(&self.db, cutoff).await?;
        let rollout_steps = crate::update::rollouts::advance_all(&self.db, &self.audit).await?;
        Ok(Swept {
            expired_leases,
            nonces,
            rollout_steps,
        })
    }

    async fn sweep_and_log(&self) {
        match self.sweep().await {
            Ok(Swept {
                expired_leases: 0, ..
            }) => {}
            Ok(swept) => tracing::info!(
                expired = swept.expired_leases,
                "expired leases returned to their orders"
            ),
            Err(error) => tracing::warn!(%error, "housekeeping sweep failed"),
        }
    }

    /// Sweeps every interval while this replica leads, until `stop` changes (or its sender is
    /// dropped); then gives leadership up so another replica takes over at once.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let election = self.election();
        leader::while_leading(
            election.as_ref(),
            &self.node_id,
            self.interval,
            stop,
            || self.sweep_and_log(),
        )
        .await;
    }
}
