//! The supervisor: holds the current [`Lease`] and its [`OrderPlan`], the journal and the
//! [`Outbox`]; hands one [`Slot`] at a time to each idle probe actor; consumes the slot when an
//! install is journaled and releases it when the target failed; restarts a failing probe actor
//! and retires it after repeated failures. When the lease is used up or expired it is closed and
//! a new one is asked for; the coordinator grants one only while the order has quota left, else
//! the station stops with "quota spent".

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use flashgate_proto::clock::now_ms;
use tokio::sync::oneshot;

use super::bays::Bays;
use super::packages::CoordinatorPackages;
use super::probe_actor::{lost, SharedFixture};
use crate::coordinator_client::{transient, CoordinatorClient};
use crate::events::{Event, EventSink, Summary};
use crate::identity::StationIdentity;
use crate::provisioning::journal::{Journal, JournalError, JournalRecord};
use crate::provisioning::{
    CertificateIssuer, Delivery, Failed, Job, Lease, LeaseRefused, OrderPlan, OsInstall, Outbox,
    PackageSource, Provisioned, ReleaseCache, ReleaseError, Report, Settled, Slot,
};

/// Tunables of one run.
#[derive(Clone, Debug)]
pub struct SupervisorSettings {
    /// The order worked on.
    pub order_id: String,
    /// Slots asked for per lease.
    pub lease_size: u32,
    /// Requested lease validity (0 = coordinator default).
    pub lease_validity_s: u32,
    /// Stop after this many devices in this run.
    pub max_devices: Option<u32>,
    /// Time allowed per loader turn / link operation.
    pub step_timeout: Duration,
    /// Pause between report (and lease) retries while the coordinator is unreachable.
    pub retry_every: Duration,
    /// How long to keep re-sending reports once the work is done.
    pub report_deadline: Duration,
    /// Consecutive failures after which a probe is retired.
    pub retire_after: u32,
}

/// Why the station stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StopReason {
    /// The coordinator grants no more slots for the order (its words name the order).
    #[error("quota spent: {detail}")]
    QuotaSpent {
        /// The order.
        order_id: String,
        /// The coordinator's words.
        detail: String,
    },
    /// `--max-devices` reached.
    #[error("the requested number of devices is done")]
    DevicesDone,
    /// Every probe failed too often in a row.
    #[error("every probe is retired")]
    ProbesRetired,
    /// The coordinator refused a lease for good (station revoked, order closed, …).
    #[error("the coordinator refused a lease: {0}")]
    LeaseRefused(String),
    /// A granted lease does not verify on the station.
    #[error("the coordinator granted a lease this station refuses: {0}")]
    BadLease(#[from] LeaseRefused),
    /// The lease's images cannot be fetched or do not verify.
    #[error("the lease's releases cannot be used: {0}")]
    Releases(#[from] ReleaseError),
    /// The journal cannot be written.
    #[error("the journal cannot be written ({0}): stopping so no install goes unrecorded")]
    Journal(#[from] JournalError),
}

/// Holds a retry back until its time (so the many re-evaluations a run makes do not turn a
/// coordinator outage into a tight loop of calls).
#[derive(Debug, Default)]
struct RetryGate(Option<Instant>);

impl RetryGate {
    fn ready(&self) -> bool {
        self.0.is_none_or(|at| Instant::now() >= at)
    }

    fn pause(&mut self, for_: Duration) {
        self.0 = Some(Instant::now() + for_);
    }

    fn clear(&mut self) {
        self.0 = None;
    }
}

/// Everything the supervisor starts with.
pub struct SupervisorParts {
    /// Settings.
    pub settings: SupervisorSettings,
    /// Coordinator client.
    pub client: CoordinatorClient,
    /// Where each chip's certificate comes from (the coordinator, through `client`).
    pub issuer: Arc<dyn CertificateIssuer>,
    /// Identity.
    pub identity: Arc<StationIdentity>,
    /// The coordinator's lease-signing key.
    pub coordinator_key: ed25519_dalek::VerifyingKey,
    /// The open journal.
    pub journal: Journal,
    /// Where release images come from.
    pub releases: ReleaseCache,
    /// The lease resumed from the journal.
    pub lease: Option<Lease>,
    /// Reports to re-send (from the journal).
    pub unreported: Vec<Report>,
    /// Fixtures, one per probe.
    pub fixtures: Vec<(String, SharedFixture)>,
    /// Events.
    pub events: EventSink,
    /// Receives the summary.
    pub done: oneshot::Sender<Summary>,
}

/// The supervisor actor.
pub struct Supervisor {
    settings: SupervisorSettings,
    client: CoordinatorClient,
    issuer: Arc<dyn CertificateIssuer>,
    identity: Arc<StationIdentity>,
    coordinator_key: ed25519_dalek::VerifyingKey,
    journal: Journal,
    releases: ReleaseCache,
    events: EventSink,
    lease: Option<Lease>,
    /// How the current lease came (`acquired`, `resumed`), until it is announced: once its
    /// plan is loaded and targets can start.
    unannounced: Option<&'static str>,
    plan: Option<Arc<OrderPlan>>,
    acquiring: bool,
    loading_plan: bool,
    returning: bool,
    lease_retry: RetryGate,
    plan_retry: RetryGate,
    report_retry: RetryGate,
    outbox: Outbox,
    bays: Bays,
    /// Where the boards of an order with an OS get their packages.
    packages: Arc<dyn PackageSource>,
    stop: Option<StopReason>,
    stopping_since: Option<Instant>,
    summary: Summary,
    started: Instant,
    done: Option<oneshot::Sender<Summary>>,
}

impl Supervisor {
    /// A supervisor (start it with `Actor::start`; call inside the actix system, whose runtime
    /// also carries the probe threads' calls for OS packages).
    pub fn new(parts: SupervisorParts) -> Self {
        let packages = Arc::new(CoordinatorPackages::new(
            parts.client.clone(),
            tokio::runtime::Handle::current(),
            parts.settings.retry_every,
        ));
        let bays = Bays::start(
            parts.fixtures,
            parts.events.clone(),
            parts.settings.step_timeout,
            parts.settings.retire_after,
        );
        Self {
            settings: parts.settings,
            client: parts.client,
            issuer: parts.issuer,
            identity: parts.identity,
            coordinator_key: parts.coordinator_key,
            journal: parts.journal,
            releases: parts.releases,
            events: parts.events,
            unannounced: parts.lease.as_ref().map(|_| "resumed"),
            lease: parts.lease,
            plan: None,
            acquiring: false,
            loading_plan: false,
            returning: false,
            lease_retry: RetryGate::default(),
            plan_retry: RetryGate::default(),
            report_retry: RetryGate::default(),
            outbox: Outbox::new(parts.unreported),
            bays,
            packages,
            stop: None,
            stopping_since: None,
            summary: Summary::default(),
            started: Instant::now(),
            done: Some(parts.done),
        }
    }

    fn append(&mut self, record: &JournalRecord) -> bool {
        let result = self.journal.append(record);
        self.journaled(result)
    }

    /// Journals `report` and queues it for the coordinator.
    fn record(&mut self, report: Report) -> bool {
        let result = self.outbox.record(&mut self.journal, report);
        self.journaled(result)
    }

    fn journaled(&mut self, result: Result<(), JournalError>) -> bool {
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "journal write failed");
                self.stop_with(e.into());
                false
            }
        }
    }

    fn stop_with(&mut self, reason: StopReason) {
        if self.stop.is_none() {
            tracing::info!(%reason, "station stopping");
            self.stop = Some(reason);
            self.stopping_since = Some(Instant::now());
        }
    }

    fn devices_left(&self) -> Option<u32> {
        self.settings
            .max_devices
            .map(|max| max.saturating_sub(self.summary.provisioned + self.bays.in_flight()))
    }

    /// Re-evaluates everything after any change.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.done.is_none() {
            return;
        }
        self.flush_reports(ctx);
        if self.stop.is_none() {
            self.manage_lease(ctx);
            self.assign(ctx);
        }
        if self.stop.is_some() && self.bays.in_flight() == 0 {
            self.return_unused_lease(ctx);
            let deadline_passed = self
                .stopping_since
                .is_some_and(|t| t.elapsed() >= self.settings.report_deadline);
            if !self.returning
                && (self.outbox.is_empty() || deadline_passed || self.journal_failed())
            {
                self.finish();
            }
        }
    }

    /// Once the journal cannot be written, nothing more is sent: a report whose answer cannot
    /// be journaled would be re-sent in a loop, and a lease returned unjournaled would be
    /// resumed by the next start. The journal's reports go out after the restart.
    fn journal_failed(&self) -> bool {
        matches!(self.stop, Some(StopReason::Journal(_)))
    }

    fn finish(&mut self) {
        let Some(done) = self.done.take() else { return };
        self.summary.stop_reason = self
            .stop
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        self.summary.unreported = self.outbox.len() as u32;
        self.summary.elapsed_s = self.started.elapsed().as_secs_f64();
        self.summary.retired_probes = self.bays.retired();
        self.events.emit(Event::Summary(self.summary.clone()));
        let _ = done.send(self.summary.clone());
    }

    fn manage_lease(&mut self, ctx: &mut Context<Self>) {
        if let Some(lease) = &self.lease {
            let ledger = lease.ledger();
            let expired = lease.expired(now_ms());
            if ledger.out() > 0 || (ledger.free() > 0 && !expired) {
                // `--max-devices` reached with slots left: stop (the rest goes back).
                if self.devices_left() == Some(0) {
                    if self.bays.in_flight() == 0 {
                        self.stop_with(StopReason::DevicesDone);
                    }
                    return;
                }
                if self.plan.is_none() {
                    self.load_plan(ctx);
                }
                return;
            }
            let reason = if expired {
                "expired"
            } else if ledger.spent_at_coordinator() {
                "used up at the coordinator"
            } else {
                "used up"
            };
            let lease_id = lease.id().to_owned();
            if !self.append(&JournalRecord::LeaseClosed {
                lease_id,
                reason: reason.into(),
            }) {
                return;
            }
            self.lease = None;
            self.plan = None;
        }
        if self.acquiring || !self.lease_retry.ready() {
            return;
        }
        let want = match self.devices_left() {
            Some(0) => {
                if self.bays.in_flight() == 0 {
                    self.stop_with(StopReason::DevicesDone);
                }
                return;
            }
            Some(left) => left.min(self.settings.lease_size),
            None => self.settings.lease_size,
        };
        self.acquiring = true;
        let client = self.client.clone();
        let order = self.settings.order_id.clone();
        let validity = self.settings.lease_validity_s;
        let identity = self.identity.clone();
        let key = self.coordinator_key;
        // A lease acquisition is its own trace (its slots serve several devices).
        let span = tracing::info_span!(parent: None, "lease_acquire", order = %order, want);
        let fut = async move { client.acquire_lease(&order, want, validity).await };
        let fut = tracing::Instrument::instrument(fut, span);
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            act.acquiring = false;
            match result {
                Ok(signed) => match Lease::open(signed, &key, &identity, now_ms(), 0) {
                    Ok(lease) => act.lease_acquired(lease),
                    Err(refused) => act.stop_with(refused.into()),
                },
                Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                    let order_id = act.settings.order_id.clone();
                    act.stop_with(StopReason::QuotaSpent {
                        order_id,
                        detail: status.message().to_owned(),
                    });
                }
                Err(status) if transient(&status) => {
                    tracing::warn!(error = %status.message(), "coordinator unreachable for a lease; retrying");
                    act.lease_retry.pause(act.settings.retry_every);
                    ctx.run_later(act.settings.retry_every, |act, ctx| act.pump(ctx));
                    return;
                }
                Err(status) => act.stop_with(StopReason::LeaseRefused(status.message().into())),
            }
            act.pump(ctx);
        }));
    }

    fn lease_acquired(&mut self, lease: Lease) {
        let journaled = self.append(&JournalRecord::LeaseAcquired {
            lease_id: lease.id().to_owned(),
            signed_lease: lease.journal_form(),
            at_ms: now_ms(),
        });
        if journaled {
            self.lease = Some(lease);
            self.unannounced = Some("acquired");
        }
    }

    /// Tells the operator the current lease is in use (its plan is loaded).
    fn announce_lease(&mut self) {
        let (Some(lease), Some(how)) = (&self.lease, self.unannounced.take()) else {
            return;
        };
        self.events.emit(Event::Lease {
            lease_id: lease.id().to_owned(),
            count: lease.body().count,
            used: lease.ledger().used(),
            not_after_ms: lease.body().not_after_ms,
            how: how.into(),
        });
    }

    /// Fetches (or reads from the cache) and verifies the current lease's images.
    fn load_plan(&mut self, ctx: &mut Context<Self>) {
        let Some(lease) = &self.lease else { return };
        if self.loading_plan || !self.plan_retry.ready() {
            return;
        }
        self.loading_plan = true;
        let body = lease.body().clone();
        let releases = self.releases.clone();
        let client = self.client.clone();
        let fut = async move { releases.plan(&client, &body).await };
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.loading_plan = false;
            match result {
                Ok(plan) => {
                    act.plan = Some(Arc::new(plan));
                    act.announce_lease();
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "coordinator unreachable for the lease's releases; retrying");
                    act.plan_retry.pause(act.settings.retry_every);
                    ctx.run_later(act.settings.retry_every, |act, ctx| act.pump(ctx));
                    return;
                }
                Err(e) => act.stop_with(e.into()),
            }
            act.pump(ctx);
        }));
    }

    fn assign(&mut self, ctx: &mut Context<Self>) {
        for index in self.bays.idle() {
            if self.devices_left() == Some(0) {
                return;
            }
            let Some(plan) = self.plan.clone() else {
                return;
            };
            let Some(lease) = self.lease.as_mut() else {
                return;
            };
            let Some(slot) = lease.take_slot(now_ms()) else {
                return;
            };
            let os = plan.os_version().map(|version| OsInstall {
                version,
                packages: self.packages.clone(),
            });
            let job = Job {
                plan,
                issuer: self.issuer.clone(),
                lease_id: lease.id().to_owned(),
                os,
            };
            let request = self.bays.hand_out(index, slot, job);
            ctx.spawn(request.into_actor(self).map(move |result, act, ctx| {
                let result =
                    result.unwrap_or_else(|e| Err(lost(format!("probe actor unreachable: {e}"))));
                act.target_finished(index, result, ctx);
            }));
        }
    }

    /// Gives a finished target's slot back to its lease: consumed or released, once.
    fn settle(&mut self, slot: Slot, consumed: bool) {
        let settled = match self.lease.as_mut() {
            Some(lease) if consumed => lease.consume(slot),
            Some(lease) => lease.release(slot),
            None => {
                tracing::error!(lease = %slot.lease_id(), "a slot came back after its lease was closed");
                return;
            }
        };
        if let Err(e) = settled {
            tracing::error!(error = %e, "slot not counted");
        }
    }

    fn target_finished(
        &mut self,
        index: usize,
        result: Result<Provisioned, Failed>,
        ctx: &mut Context<Self>,
    ) {
        let Some(slot) = self.bays.finished(index) else {
            tracing::error!("a target finished on an idle probe");
            return;
        };
        let lease_id = slot.lease_id().to_owned();
        let probe = self.bays.name(index).to_owned();
        match result {
            // The board failed its factory test: not locked, to rework. Its slot goes back to the
            // lease; it is reported FAILED (not registered). Not the probe's fault.
            Ok(done) if done.test_failed() => {
                self.bays.succeeded(index);
                // Certified: the slot is the coordinator's (the board comes back from rework
                // with the same certificate).
                self.settle(slot, !done.reissued);
                let report = Report::of_target(&lease_id, &done, now_ms());
                let reason = report.failure_reason.clone().unwrap_or_default();
                self.summary.failed += 1;
                self.summary.test_failed += 1;
                self.record(report);
                self.events.emit(Event::TargetFailed {
                    probe,
                    serial: Some(hex::encode(done.serial)),
                    step: "test".into(),
                    reason,
                });
            }
            Ok(done) => {
                self.bays.succeeded(index);
                // The board is locked and programmed: its slot is spent even if the journal
                // write below fails (the station then stops).
                self.settle(slot, true);
                let report = Report::of_target(&lease_id, &done, now_ms());
                let test = report.test.outcome;
                let _span =
                    tracing::info_span!("journal", serial = %hex::encode(done.serial)).entered();
                if !self.record(report) {
                    return self.pump(ctx);
                }
                self.summary.provisioned += 1;
                self.summary.os_installed += u32::from(done.os.is_some());
                self.events.emit(Event::Installed {
                    probe,
                    serial: hex::encode(done.serial),
                    lease_id,
                    test: test.as_str().into(),
                    phases: done.phases.clone(),
                    total_ms: done.total.as_secs_f64() * 1000.0,
                    hello_challenge: done.hello.as_ref().map(|h| hex::encode(h.challenge)),
                    hello_response: done.hello.as_ref().map(|h| hex::encode(&h.raw)),
                    os_version: done.os.as_ref().map(|o| o.version),
                });
            }
            Err(failed) if lease_spent(&failed) => {
                // Not the chip's or the probe's failure: the coordinator's count of this lease
                // is ahead of the journal (certificates issued for installs a crash cut short).
                // Nothing was written to the chip; it is tried again under a new lease.
                self.settle(slot, false);
                if let Some(lease) = self.lease.as_mut() {
                    lease.spent_at_coordinator();
                }
                tracing::info!(lease = %lease_id, "the coordinator counts the lease used up; acquiring a new one");
            }
            Err(failed) => {
                // A chip certified in this attempt took its slot at the coordinator; a refused
                // certificate means the coordinator counts no slot left for it here (the lease
                // is used up there, e.g. by a board certified before a crash): not retried.
                let refused = matches!(
                    failed.error,
                    crate::provisioning::ProvisioningError::Station(
                        crate::provisioning::StationFault::NoCertificate(
                            crate::provisioning::IssueError::Refused(_)
                        )
                    )
                );
                self.settle(slot, failed.certified || refused);
                self.summary.failed += 1;
                // Known board: reported FAILED (journal first, re-sent after outages); else
                // nothing to name it by: kept in the station's journal only.
                match Report::of_failure(&lease_id, &probe, &failed, now_ms()) {
                    Some(report) => {
                        self.record(report);
                    }
                    None => {
                        self.append(&JournalRecord::TargetFailed {
                            serial: None,
                            probe: probe.clone(),
                            reason: failed.to_string(),
                            at_ms: now_ms(),
                        });
                    }
                }
                self.events.emit(Event::TargetFailed {
                    probe: probe.clone(),
                    serial: failed.serial.map(hex::encode),
                    step: failed.step.as_str().into(),
                    reason: failed.error.to_string(),
                });
                if self.bays.failed(index, &failed) {
                    self.stop_with(StopReason::ProbesRetired);
                }
            }
        }
        self.pump(ctx);
    }

    fn flush_reports(&mut self, ctx: &mut Context<Self>) {
        if self.done.is_none() || !self.report_retry.ready() || self.journal_failed() {
            return;
        }
        let Some(report) = self.outbox.next_to_send() else {
            return;
        };
        let request = report.to_request();
        let client = self.client.clone();
        let serial = hex::encode(report.serial);
        let span =
            tracing::info_span!(parent: None, "report", serial = %serial, lease = %report.lease_id);
        // Part of the device's trace (its install span), also when re-sent after a restart.
        flashgate_telemetry::set_parent_from_traceparent(&span, report.trace_parent.as_deref());
        let fut = async move { client.report_install(request).await };
        ctx.spawn(
            tracing::Instrument::instrument(fut, span)
                .into_actor(self)
                .map(move |answer, act, ctx| {
                    let delivery = Delivery::of(&report, &answer);
                    let settled = act.outbox.settle(&mut act.journal, report, delivery);
                    match settled {
                        Err(e) => {
                            act.journaled(Err(e));
                        }
                        Ok(Settled::Reported(report)) => {
                            act.report_retry.clear();
                            act.reported(report);
                        }
                        Ok(Settled::Refused { report, reason }) => {
                            act.summary.report_refused += 1;
                            act.events.emit(Event::ReportRefused {
                                serial: hex::encode(report.serial),
                                reason,
                            });
                        }
                        Ok(Settled::Deferred {
                            report,
                            reason,
                            first,
                        }) => {
                            if first {
                                act.events.emit(Event::ReportDeferred {
                                    serial: hex::encode(report.serial),
                                    reason,
                                });
                            }
                            act.report_retry.pause(act.settings.retry_every);
                            ctx.run_later(act.settings.retry_every, |act, ctx| act.pump(ctx));
                            return;
                        }
                    }
                    act.pump(ctx);
                }),
        );
    }

    fn reported(&mut self, report: Report) {
        let serial = hex::encode(report.serial);
        let failure = report.is_failure();
        let lease_id = report.lease_id;
        if failure {
            self.summary.failures_reported += 1;
            self.events
                .emit(Event::FailureReported { serial, lease_id });
        } else {
            self.summary.reported += 1;
            self.events.emit(Event::Reported { serial, lease_id });
        }
    }

    /// At the end, gives the lease's unused slots back (only once every install under it is
    /// reported: the coordinator refuses reports under an ended lease).
    fn return_unused_lease(&mut self, ctx: &mut Context<Self>) {
        if self.returning || self.journal_failed() {
            return;
        }
        let Some(lease) = &self.lease else { return };
        if lease.ledger().out() > 0 || self.outbox.holds_lease(lease.id()) {
            return;
        }
        self.returning = true;
        let id = lease.id().to_owned();
        let client = self.client.clone();
        ctx.spawn(
            async move { client.return_lease(&id).await.map(|r| (id, r)) }
                .into_actor(self)
                .map(|result, act, ctx| {
                    act.returning = false;
                    match result {
                        Ok((id, response)) => {
                            tracing::info!(lease = %id, released = response.released, "lease returned");
                            act.append(&JournalRecord::LeaseClosed {
                                lease_id: id,
                                reason: format!("returned, {} slot(s) released", response.released),
                            });
                        }
                        // Kept in the journal: the next start resumes it (or it expires).
                        Err(s) => tracing::warn!(error = %s.message(), "could not return the lease"),
                    }
                    act.lease = None;
                    act.pump(ctx);
                }),
        );
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Re-check stop conditions now and then (report deadlines while the coordinator is down).
        ctx.run_interval(Duration::from_millis(500), |act, ctx| act.pump(ctx));
        self.pump(ctx);
    }
}

/// True when the target stopped because the coordinator counts the lease's chips all certified.
fn lease_spent(failed: &crate::provisioning::Failed) -> bool {
    use crate::provisioning::{IssueError, ProvisioningError, StationFault};
    matches!(
        failed.error,
        ProvisioningError::Station(StationFault::NoCertificate(IssueError::LeaseSpent(_)))
    )
}
