//! Staged rollouts: a campaign whose devices get their package wave by wave ([`record`]).
//! Wave k+1 opens once wave k passed its gate; failures above the threshold pause it
//! ([`progress`] counts and decides); [`plan`] turns a request into waves.
//!
//! Steps are taken by [`advance`]: after each receipt (the report path) and by the housekeeping
//! leader's sweep. Each step is one transaction guarded on the rollout record's revision, so
//! replicas racing on the same rollout take it once: the loser re-reads, finds the wave open
//! (or the rollout paused) and decides again from there. The devices' records are not guarded:
//! a receipt committed meanwhile is counted on the next evaluation (the one its own report
//! path runs).
//!
//! [`gate`] is what delivery asks before issuing a package: a device outside an open wave, or
//! of a paused rollout, gets none.

pub mod plan;
pub mod progress;
pub mod record;

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;

use self::progress::{Step, WaveProgress};
use self::record::{PauseReason, RolloutRecord, RolloutState, Threshold, WaveLabel, WaveSize};
use super::campaigns::{Campaigns, Targets};
use super::records::DeviceUpdateRecord;
use crate::audit::{self, Actor, AuditLog};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{CampaignId, OrderId, ProductId, Serial};
use crate::provisioning::Registry;
use crate::repository::{Attempt, CasRetry, Db, Scope, Stored, Txn};

/// Steps at most this many times per call: more than enough for every wave and the
/// completion; the bound only keeps a call from spinning under endless contention.
const MAX_ROUNDS: usize = 64;

/// Rollouts [`Rollouts::list`] returns when the request names no limit.
pub const LIST_DEFAULT: u32 = 100;
/// The most [`Rollouts::list`] returns in one reply.
pub const LIST_MAX: u32 = 1000;

/// Starts, pauses, resumes and reports staged rollouts.
#[derive(Clone)]
pub struct Rollouts {
    db: Db,
    campaigns: Campaigns,
    registry: Registry,
    audit: AuditLog,
}

impl Rollouts {
    /// Rollouts over `db`, publishing through `campaigns`; groups are orders of `registry`;
    /// every change of state is appended to `audit` in its transaction.
    pub fn new(db: Db, campaigns: Campaigns, registry: Registry, audit: AuditLog) -> Self {
        Self {
            db,
            campaigns,
            registry,
            audit,
        }
    }

    /// The audit log its changes are recorded in.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Checks the plan, then publishes the release as a campaign whose first wave is open, in
    /// one transaction with the rollout's record: a refused plan creates nothing.
    pub async fn start(
        &self,
        by: &Actor,
        req: v1::StartRolloutRequest,
    ) -> Result<v1::RolloutStatus> {
        let threshold = plan::threshold(req.failure_threshold.as_ref())?;
        let sizes = plan::sizes(&req.waves)?;
        let (release, image) = self.campaigns.os_release(&req.release_digest).await?;
        let targets = Targets {
            serials: &req.serials,
            order_id: &req.order_id,
            all_devices: req.all_devices,
        };
        let serials = self.campaigns.targets(&release, &targets).await?;
        let groups = self.groups(&release.product_id, &req.groups).await?;
        let waves = plan::waves(&serials, groups, &sizes)?;
        let rollout_id = CampaignId::random();
        let now = now_ms();
        let record = RolloutRecord {
            rollout_id: rollout_id.clone(),
            product_id: release.product_id,
            version: release.version,
            waves,
            threshold,
            min_confirmed: req.min_confirmed,
            open_waves: 1,
            state: RolloutState::Running,
            accepted_failures: 0,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let txn = Txn::new()
            .absent::<RolloutRecord>(&rollout_id)
            .put(&rollout_id, &record);
        self.campaigns
            .launch(by, &rollout_id, &release, &image, &serials, txn)
            .await?;
        // The launch's "update published" entry records who started it; the waves are in the
        // rollout record written in the same transaction.
        tracing::info!(rollout = %rollout_id, waves = record.waves.len(), devices = serials.len(), "rollout started");
        self.status(rollout_id.as_str()).await
    }

    /// The members of each named group (an order) among the product's registered devices.
    async fn groups(
        &self,
        product_id: &crate::ids::ProductId,
        names: &[String],
    ) -> Result<Vec<(OrderId, Vec<Serial>)>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let devices = self.registry.devices(Some(*product_id)).await?;
        names
            .iter()
            .map(|name| {
                let order = OrderId::parse(name)?;
                let members = devices
                    .iter()
                    .filter(|d| d.record.order_id == order)
                    .map(|d| d.record.serial)
                    .collect();
                Ok((order, members))
            })
            .collect()
    }

    /// The store its steps are taken in (for [`advance`]).
    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn get(&self, rollout_id: &str) -> Result<Stored<RolloutRecord>> {
        let id = CampaignId::parse(rollout_id)?;
        self.db
            .get::<RolloutRecord>(&id)
            .await?
            .ok_or_else(|| E::NotFound(format!("no rollout {id}")))
    }

    /// Stops issuing packages until resumed (pausing a paused rollout changes nothing).
    pub async fn pause(&self, by: &Actor, rollout_id: &str) -> Result<v1::RolloutStatus> {
        self.change(by, rollout_id, "rollout paused", |r| match r.state {
            RolloutState::Completed => Err(completed(r)),
            RolloutState::Paused { .. } => Ok(None),
            RolloutState::Running => Ok(Some(RolloutState::Paused {
                reason: PauseReason::Operator,
            })),
        })
        .await?;
        self.status(rollout_id).await
    }

    /// Continues a paused rollout, accepting the failures counted so far (the threshold
    /// counts only later ones), and takes the steps its gates allow now.
    pub async fn resume(&self, by: &Actor, rollout_id: &str) -> Result<v1::RolloutStatus> {
        let id = CampaignId::parse(rollout_id)?;
        CasRetry::new("the rollout")
            .run(|| self.try_resume(by, rollout_id))
            .await?;
        advance(&self.db, &self.audit, &id).await?;
        self.status(rollout_id).await
    }

    async fn try_resume(&self, by: &Actor, rollout_id: &str) -> Result<Attempt<()>> {
        let stored = self.get(rollout_id).await?;
        let r = &stored.record;
        match r.state {
            RolloutState::Completed => return Err(completed(r)),
            RolloutState::Running => return Ok(Attempt::Done(())),
            RolloutState::Paused { .. } => {}
        }
        let (failed, _) =
            progress::failures(r, &progress::count(r, &devices_of(&self.db, r).await?));
        let resumed = RolloutRecord {
            state: RolloutState::Running,
            accepted_failures: r.accepted_failures + failed,
            updated_at_ms: now_ms(),
            ..r.clone()
        };
        let entry = audit::Entry::new(by, "rollout resumed", &r.rollout_id)
            .detail(format!("{failed} failures accepted"));
        let txn = self
            .audit
            .append_global(
                Txn::new().unchanged(&stored).replace(&stored, &resumed),
                entry,
            )
            .await?;
        let committed = self.db.commit(txn).await?;
        if committed {
            tracing::info!(rollout = %r.rollout_id, accepted_failures = resumed.accepted_failures, "rollout resumed");
        }
        Ok(Attempt::committed(committed, ()))
    }

    /// Applies `decide` (a new state, or none) to the rollout in one guarded transaction, with
    /// `action` in the audit trail.
    async fn change(
        &self,
        by: &Actor,
        rollout_id: &str,
        action: &'static str,
        decide: impl Fn(&RolloutRecord) -> Result<Option<RolloutState>>,
    ) -> Result<()> {
        CasRetry::new("the rollout")
            .run(|| async {
                let stored = self.get(rollout_id).await?;
                let Some(state) = decide(&stored.record)? else {
                    return Ok(Attempt::Done(()));
                };
                let next = RolloutRecord {
                    state,
                    updated_at_ms: now_ms(),
                    ..stored.record.clone()
                };
                let entry = audit::Entry::new(by, action, &next.rollout_id);
                let txn = self
                    .audit
                    .append_global(Txn::new().unchanged(&stored).replace(&stored, &next), entry)
                    .await?;
                let committed = self.db.commit(txn).await?;
                if committed {
                    tracing::info!(rollout = %next.rollout_id, state = state_name(&next.state), "{action}");
                }
                Ok(Attempt::committed(committed, ()))
            })
            .await
    }

    /// Rollouts of `product_id` (0: every product), newest first, at most `limit` (0:
    /// [`LIST_DEFAULT`], capped at [`LIST_MAX`]), with their counts; and whether more matched.
    pub async fn list(
        &self,
        product_id: u32,
        limit: u32,
    ) -> Result<(Vec<v1::RolloutStatus>, bool)> {
        let limit = match limit {
            0 => LIST_DEFAULT,
            n => n.min(LIST_MAX),
        } as usize;
        let mut records: Vec<RolloutRecord> = self
            .db
            .list(Scope::<RolloutRecord>::all())
            .await?
            .into_iter()
            .map(|s| s.record)
            .filter(|r| product_id == 0 || r.product_id.0 == product_id)
            .collect();
        records.sort_by(|a, b| {
            (b.created_at_ms, b.rollout_id.as_str()).cmp(&(a.created_at_ms, a.rollout_id.as_str()))
        });
        let truncated = records.len() > limit;
        records.truncate(limit);
        // One read of a product's update records serves all its rollouts.
        let mut devices: HashMap<ProductId, HashMap<Serial, DeviceUpdateRecord>> = HashMap::new();
        let mut list = Vec::with_capacity(records.len());
        for r in &records {
            let of_product = match devices.entry(r.product_id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(devices_of(&self.db, r).await?),
            };
            list.push(to_proto(r, &progress::count(r, of_product)));
        }
        Ok((list, truncated))
    }

    /// The rollout's waves with their counts, and its state.
    pub async fn status(&self, rollout_id: &str) -> Result<v1::RolloutStatus> {
        let r = self.get(rollout_id).await?.record;
        let progress = progress::count(&r, &devices_of(&self.db, &r).await?);
        Ok(to_proto(&r, &progress))
    }
}

fn completed(r: &RolloutRecord) -> E {
    E::FailedPrecondition(format!("rollout {} is completed", r.rollout_id))
}

/// The update records of the rollout's product, by serial.
async fn devices_of(db: &Db, r: &RolloutRecord) -> Result<HashMap<Serial, DeviceUpdateRecord>> {
    Ok(db
        .list(Scope::<DeviceUpdateRecord>::under(&r.product_id))
        .await?
        .into_iter()
        .map(|s| (s.record.serial, s.record))
        .collect())
}

/// Takes every step `rollout_id`'s gates allow now, each in its own transaction guarded on the
/// rollout record; returns the steps this call committed (none if another replica took them).
pub async fn advance(db: &Db, audit: &AuditLog, rollout_id: &CampaignId) -> Result<Vec<Step>> {
    let mut taken = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let Some(stored) = db.get::<RolloutRecord>(rollout_id).await? else {
            return Ok(taken);
        };
        let r = &stored.record;
        let progress = progress::count(r, &devices_of(db, r).await?);
        let Some(step) = progress::next_step(r, &progress) else {
            return Ok(taken);
        };
        let mut next = RolloutRecord {
            updated_at_ms: now_ms(),
            ..r.clone()
        };
        match step {
            Step::OpenWave(n) => next.open_waves = n,
            Step::Pause(reason) => next.state = RolloutState::Paused { reason },
            Step::Complete => next.state = RolloutState::Completed,
        }
        let entry = audit::Entry::new(&Actor::coordinator(), "rollout step", rollout_id)
            .detail(format!("{step:?}"));
        let txn = audit
            .append_global(Txn::new().unchanged(&stored).replace(&stored, &next), entry)
            .await?;
        if db.commit(txn).await? {
            tracing::info!(rollout = %rollout_id, ?step, "rollout step");
            taken.push(step);
        }
    }
    Ok(taken)
}

/// [`advance`] for every running rollout (the housekeeping sweep); how many steps it took.
pub async fn advance_all(db: &Db, audit: &AuditLog) -> Result<usize> {
    let mut steps = 0;
    for stored in db.list(Scope::<RolloutRecord>::all()).await? {
        if stored.record.state == RolloutState::Running {
            steps += advance(db, audit, &stored.record.rollout_id).await?.len();
        }
    }
    Ok(steps)
}

/// Whether `update`'s device may have its package now: `Ok(None)` outside any rollout,
/// `Ok(Some(rollout))` (to guard the issue on) inside an open wave of a running or completed
/// one, FAILED_PRECONDITION otherwise.
pub async fn gate(db: &Db, update: &DeviceUpdateRecord) -> Result<Option<Stored<RolloutRecord>>> {
    let Some(stored) = db.get::<RolloutRecord>(&update.campaign_id).await? else {
        return Ok(None);
    };
    let r = &stored.record;
    if let RolloutState::Paused { reason } = r.state {
        return Err(E::FailedPrecondition(format!(
            "rollout {} is paused ({}): no packages until `flashgate update resume {}`",
            r.rollout_id,
            reason_text(reason),
            r.rollout_id
        )));
    }
    let wave = r.wave_of(&update.serial).ok_or_else(|| {
        E::Internal(format!(
            "device {} is targeted by rollout {} but in none of its waves",
            update.serial, r.rollout_id
        ))
    })?;
    if wave >= r.open_waves as usize {
        return Err(E::FailedPrecondition(format!(
            "device {} is not yet in an open wave of rollout {}: it is in wave {} of {}, {} open",
            update.serial,
            r.rollout_id,
            wave + 1,
            r.waves.len(),
            r.open_waves
        )));
    }
    Ok(Some(stored))
}

fn state_name(state: &RolloutState) -> &'static str {
    match state {
        RolloutState::Running => "running",
        RolloutState::Paused { .. } => "paused",
        RolloutState::Completed => "completed",
    }
}

fn reason_text(reason: PauseReason) -> String {
    match reason {
        PauseReason::Operator => "by an operator".into(),
        PauseReason::FailureThreshold { failed, opened } => {
            format!("failure threshold: {failed} failed of {opened} devices in open waves")
        }
    }
}

fn threshold_proto(t: Threshold) -> v1::FailureThreshold {
    use v1::failure_threshold::Limit;
    v1::FailureThreshold {
        limit: Some(match t {
            Threshold::Percent(p) => Limit::Percent(p),
            Threshold::Count(c) => Limit::Count(c),
        }),
    }
}

fn to_proto(r: &RolloutRecord, progress: &[WaveProgress]) -> v1::RolloutStatus {
    let waves = r
        .waves
        .iter()
        .zip(progress)
        .enumerate()
        .map(|(i, (wave, p))| v1::WaveStatus {
            index: i as u32 + 1,
            label: match &wave.label {
                WaveLabel::Group(order) => format!("group {order}"),
                WaveLabel::Size(WaveSize::Percent(p)) => format!("{p}%"),
                WaveLabel::Size(WaveSize::Count(c)) => format!("first {c}"),
                WaveLabel::Rest => "the rest".into(),
            },
            open: i < r.open_waves as usize,
            targeted: p.targeted,
            confirmed: p.confirmed,
            failed: p.failed,
            pending: p.pending,
            superseded: p.superseded,
        })
        .collect();
    v1::RolloutStatus {
        rollout_id: r.rollout_id.to_string(),
        product_id: r.product_id.0,
        version: r.version,
        state: state_name(&r.state).into(),
        pause_reason: match r.state {
            RolloutState::Paused { reason } => reason_text(reason),
            _ => String::new(),
        },
        open_waves: r.open_waves,
        waves,
        failure_threshold: Some(threshold_proto(r.threshold)),
        min_confirmed: r.min_confirmed,
        accepted_failures: r.accepted_failures,
        created_at_ms: r.created_at_ms,
        updated_at_ms: r.updated_at_ms,
    }
}
