//! The supervisor: holds the station identity, the current lease and what is left of it, the
//! journal and the queue of reports; hands one lease slot at a time to each idle probe actor;
//! restarts a failing probe actor and retires it after repeated failures.
//!
//! Slot accounting: a slot is reserved in memory when handed to a probe actor. A verified install
//! consumes it (journal first, fsync, then report); a failed target gives it back and nothing is
//! registered: when its serial was known (or the board failed its factory test) it is journaled
//! and reported as FAILED, re-sent after outages like installs. When the lease is used up or expired it is closed and a new one is asked for; the
//! coordinator grants one only while the order has quota left, else the station stops with
//! "quota spent".

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use flashgate_proto::v1;
use tokio::sync::oneshot;

use crate::actors::probe_actor::{ProbeActor, RunTarget, SharedFixture};
use crate::coordinator_client::CoordinatorClient;
use crate::events::{Event, EventSink, Summary};
use crate::identity::StationIdentity;
use crate::install_flow::{InstallDone, OrderImages, TargetFailure, TargetJob};
use crate::journal::{InstallRecord, Journal, JournalRecord, TestRecord};
use crate::lease::ActiveLease;
use crate::station::{load_images, now_ms, ImageSource};

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
    /// Fault injection: stop abruptly (no report, no lease return) once this many installs of
    /// this run are journaled, as a crash right after the fsync would.
    pub crash_after_journaled: Option<u32>,
}

struct ProbeSlot {
    name: String,
    fixture: SharedFixture,
    addr: Addr<ProbeActor>,
    busy: bool,
    failures_in_a_row: u32,
    retired: bool,
}

/// The supervisor actor.
pub struct Supervisor {
    settings: SupervisorSettings,
    client: CoordinatorClient,
    identity: Arc<StationIdentity>,
    coordinator_key: ed25519_dalek::VerifyingKey,
    journal: Journal,
    images: ImageSource,
    current_images: Option<Arc<OrderImages>>,
    events: EventSink,
    lease: Option<ActiveLease>,
    acquiring: bool,
    returning: bool,
    reporting: bool,
    deferred_noted: bool,
    probes: Vec<ProbeSlot>,
    pending: VecDeque<InstallRecord>,
    in_flight: u32,
    journaled_this_run: u32,
    stop: Option<String>,
    stopping_since: Option<Instant>,
    summary: Summary,
    started: Instant,
    done: Option<oneshot::Sender<Summary>>,
}

/// Everything the supervisor starts with.
pub struct SupervisorParts {
    /// Settings.
    pub settings: SupervisorSettings,
    /// Coordinator client.
    pub client: CoordinatorClient,
    /// Identity.
    pub identity: Arc<StationIdentity>,
    /// The coordinator's lease-signing key.
    pub coordinator_key: ed25519_dalek::VerifyingKey,
    /// The open journal.
    pub journal: Journal,
    /// Where release images come from.
    pub images: ImageSource,
    /// Images of the resumed lease, if any.
    pub current_images: Option<Arc<OrderImages>>,
    /// The lease resumed from the journal.
    pub lease: Option<ActiveLease>,
    /// Installs to re-send.
    pub pending: Vec<InstallRecord>,
    /// Fixtures, one per probe.
    pub fixtures: Vec<(String, SharedFixture)>,
    /// Events.
    pub events: EventSink,
    /// Receives the summary.
    pub done: oneshot::Sender<Summary>,
}

impl Supervisor {
    /// A supervisor (start it with `Actor::start`).
    pub fn new(parts: SupervisorParts) -> Self {
        let probes = parts
            .fixtures
            .into_iter()
            .map(|(name, fixture)| ProbeSlot {
                addr: ProbeActor::new(fixture.clone(), parts.events.clone()).start(),
                name,
                fixture,
                busy: false,
                failures_in_a_row: 0,
                retired: false,
            })
            .collect();
        Self {
            settings: parts.settings,
            client: parts.client,
            identity: parts.identity,
            coordinator_key: parts.coordinator_key,
            journal: parts.journal,
            images: parts.images,
            current_images: parts.current_images,
            events: parts.events,
            lease: parts.lease,
            acquiring: false,
            returning: false,
            reporting: false,
            deferred_noted: false,
            probes,
            pending: parts.pending.into(),
            in_flight: 0,
            journaled_this_run: 0,
            stop: None,
            stopping_since: None,
            summary: Summary::default(),
            started: Instant::now(),
            done: Some(parts.done),
        }
    }

    fn append(&mut self, record: &JournalRecord) -> bool {
        match self.journal.append(record) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "journal write failed");
                self.stop_with(format!(
                    "the journal cannot be written ({e}): stopping so no install goes unrecorded"
                ));
                false
            }
        }
    }

    fn stop_with(&mut self, reason: String) {
        if self.stop.is_none() {
            tracing::info!(%reason, "station stopping");
            self.stop = Some(reason);
            self.stopping_since = Some(Instant::now());
        }
    }

    fn devices_left(&self) -> Option<u32> {
        self.settings
            .max_devices
            .map(|max| max.saturating_sub(self.summary.provisioned + self.in_flight))
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
        if self
            .settings
            .crash_after_journaled
            .is_some_and(|n| self.journaled_this_run >= n)
        {
            // A crash: no report, no lease return, targets in flight are abandoned.
            return self.finish();
        }
        let busy = self.probes.iter().any(|p| p.busy);
        if self.stop.is_some() && !busy {
            self.return_unused_lease(ctx);
            let deadline_passed = self
                .stopping_since
                .is_some_and(|t| t.elapsed() >= self.settings.report_deadline);
            if !self.returning && (self.pending.is_empty() || deadline_passed) {
                self.finish();
            }
        }
    }

    fn finish(&mut self) {
        let Some(done) = self.done.take() else { return };
        self.summary.stop_reason = self.stop.clone().unwrap_or_default();
        self.summary.unreported = self.pending.len() as u32;
        self.summary.elapsed_s = self.started.elapsed().as_secs_f64();
        self.summary.retired_probes = self
            .probes
            .iter()
            .filter(|p| p.retired)
            .map(|p| p.name.clone())
            .collect();
        self.events.emit(Event::Summary(self.summary.clone()));
        let _ = done.send(self.summary.clone());
    }

    fn manage_lease(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        if let Some(lease) = &self.lease {
            let expired = lease.expired(now);
            if lease.reserved > 0 || (lease.free() > 0 && !expired) {
                return;
            }
            let reason = if expired { "expired" } else { "used up" };
            let id = lease.id().to_owned();
            if !self.append(&JournalRecord::LeaseClosed {
                lease_id: id,
                reason: reason.into(),
            }) {
                return;
            }
            self.lease = None;
        }
        if self.acquiring {
            return;
        }
        let want = match self.devices_left() {
            Some(0) => {
                if self.in_flight == 0 {
                    self.stop_with("the requested number of devices is done".into());
                }
                return;
            }
            Some(left) => left.min(self.settings.lease_size),
            None => self.settings.lease_size,
        };
        self.acquiring = true;
        let client = self.client.clone();
        let order = self.settings.order_id.clone();
        let order_id_for_span = order.clone();
        let validity = self.settings.lease_validity_s;
        let images = self.images.clone();
        let identity = self.identity.clone();
        let key = self.coordinator_key;
        let fut = async move {
            let signed = client.acquire_lease(&order, want, validity).await?;
            let lease = ActiveLease::open(signed, &key, &identity, now_ms())
                .map_err(|e| tonic::Status::failed_precondition(e.to_string()))?;
            let loaded = load_images(&client, &images, &lease.body)
                .await
                .map_err(|e| tonic::Status::failed_precondition(format!("{e:#}")))?;
            Ok::<_, tonic::Status>((lease, loaded))
        };
        // A lease acquisition is its own trace (its slots serve several devices).
        let span =
            tracing::info_span!(parent: None, "lease_acquire", order = %order_id_for_span, want);
        let fut = tracing::Instrument::instrument(fut, span);
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.acquiring = false;
            match result {
                Ok((lease, images)) => {
                    if act.append(&JournalRecord::LeaseAcquired {
                        lease_id: lease.id().to_owned(),
                        signed_lease: lease.journal_form(),
                        at_ms: now_ms(),
                    }) {
                        act.events.emit(Event::Lease {
                            lease_id: lease.id().to_owned(),
                            count: lease.body.count,
                            used: 0,
                            not_after_ms: lease.body.not_after_ms,
                            how: "acquired".into(),
                        });
                        act.current_images = Some(Arc::new(images));
                        act.lease = Some(lease);
                    }
                }
                Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                    act.stop_with(format!(
                        "quota spent: order {} has no slots left ({})",
                        act.settings.order_id,
                        status.message()
                    ));
                }
                Err(status) if transient(&status) => {
                    tracing::warn!(error = %status.message(), "coordinator unreachable for a lease; retrying");
                    ctx.run_later(act.settings.retry_every, |act, ctx| act.pump(ctx));
                    return;
                }
                Err(status) => act.stop_with(format!(
                    "the coordinator refused a lease: {}",
                    status.message()
                )),
            }
            act.pump(ctx);
        }));
    }

    fn assign(&mut self, ctx: &mut Context<Self>) {
        for index in 0..self.probes.len() {
            if self.probes[index].busy || self.probes[index].retired {
                continue;
            }
            if self.devices_left() == Some(0) {
                return;
            }
            let Some(images) = self.current_images.clone() else {
                return;
            };
            let Some(lease) = self.lease.as_mut() else {
                return;
            };
            if lease.free() == 0 || lease.expired(now_ms()) {
                return;
            }
            lease.reserved += 1;
            self.in_flight += 1;
            let slot = &mut self.probes[index];
            slot.busy = true;
            let job = TargetJob {
                images,
                lease_id: lease.id().to_owned(),
                lease_secret: lease.secret_copy(),
                step_timeout: self.settings.step_timeout,
                probe: slot.name.clone(),
            };
            let lease_id = job.lease_id.clone();
            ctx.spawn(slot.addr.send(RunTarget(job)).into_actor(self).map(
                move |result, act, ctx| {
                    let result = result.unwrap_or_else(|e| {
                        Err(TargetFailure {
                            serial: None,
                            step: "flow",
                            reason: format!("probe actor unreachable: {e}"),
                            probe_fault: true,
                        })
                    });
                    act.target_finished(index, &lease_id, result, ctx);
                },
            ));
        }
    }

    fn target_finished(
        &mut self,
        index: usize,
        lease_id: &str,
        result: Result<InstallDone, TargetFailure>,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight -= 1;
        self.probes[index].busy = false;
        let lease = self.lease.as_mut().filter(|l| l.id() == lease_id);
        let probe = self.probes[index].name.clone();
        match result {
            // The board failed its factory test: not locked, to rework. Its slot goes back to the
            // lease; it is reported FAILED (not registered). Not the probe's fault.
            Ok(done) if done.test.as_ref().is_some_and(|t| !t.passed()) => {
                self.probes[index].failures_in_a_row = 0;
                if let Some(lease) = lease {
                    lease.reserved -= 1;
                }
                let test = done.test.as_ref().expect("checked above");
                let reason = format!(
                    "factory test failed ({} check(s)); not locked, to rework",
                    test.failed
                );
                let record = InstallRecord {
                    lease_id: lease_id.to_owned(),
                    serial: hex::encode(done.serial),
                    bootloader_version: done.bootloader_version,
                    test: TestRecord {
                        outcome: "fail".into(),
                        log: test.log.clone(),
                    },
                    outcome: "failed".into(),
                    installed_at_ms: now_ms(),
                    failure_reason: Some(reason.clone()),
                    trace_parent: done.trace_parent.clone(),
                };
                self.summary.failed += 1;
                self.summary.test_failed += 1;
                self.journal_failure(record);
                self.events.emit(Event::TargetFailed {
                    probe,
                    serial: Some(hex::encode(done.serial)),
                    step: "test".into(),
                    reason,
                });
            }
            Ok(done) => {
                self.probes[index].failures_in_a_row = 0;
                let test = if done.test.is_some() { "pass" } else { "none" };
                let record = InstallRecord {
                    lease_id: lease_id.to_owned(),
                    serial: hex::encode(done.serial),
                    bootloader_version: done.bootloader_version,
                    test: TestRecord {
                        outcome: test.into(),
                        log: done
                            .test
                            .as_ref()
                            .map(|t| t.log.clone())
                            .unwrap_or_default(),
                    },
                    outcome: "provisioned".into(),
                    installed_at_ms: now_ms(),
                    failure_reason: None,
                    trace_parent: done.trace_parent.clone(),
                };
                if let Some(lease) = lease {
                    lease.reserved -= 1;
                    lease.used += 1;
                }
                let _span = tracing::info_span!("journal", serial = %record.serial).entered();
                if !self.append(&JournalRecord::InstallCompleted(record.clone())) {
                    return self.pump(ctx);
                }
                self.journaled_this_run += 1;
                self.summary.provisioned += 1;
                self.events.emit(Event::Installed {
                    probe,
                    serial: record.serial.clone(),
                    lease_id: lease_id.to_owned(),
                    test: test.into(),
                    phases: done.phases.clone(),
                    total_ms: done.total.as_secs_f64() * 1000.0,
                    hello_challenge: done.hello.as_ref().map(|h| hex::encode(h.challenge)),
                    hello_response: done.hello.as_ref().map(|h| hex::encode(&h.raw)),
                });
                self.pending.push_back(record);
                if let Some(n) = self.settings.crash_after_journaled {
                    if self.journaled_this_run >= n {
                        self.stop_with(format!(
                            "fault injection: crash after {n} journaled install(s)"
                        ));
                        self.pending.clear();
                    }
                }
            }
            Err(failure) => {
                if let Some(lease) = lease {
                    lease.reserved -= 1;
                }
                self.summary.failed += 1;
                let serial = failure.serial.map(hex::encode);
                match &serial {
                    // Known board: reported FAILED (journal first, re-sent after outages).
                    Some(serial) => self.journal_failure(InstallRecord {
                        lease_id: lease_id.to_owned(),
                        serial: serial.clone(),
                        bootloader_version: 0,
                        test: TestRecord {
                            outcome: "none".into(),
                            log: String::new(),
                        },
                        outcome: "failed".into(),
                        installed_at_ms: now_ms(),
                        failure_reason: Some(format!(
                            "{} failed on probe {probe}: {}",
                            failure.step, failure.reason
                        )),
                        trace_parent: None,
                    }),
                    // Nothing to name it by: kept in the station's journal only.
                    None => {
                        self.append(&JournalRecord::TargetFailed {
                            serial: None,
                            probe: probe.clone(),
                            reason: failure.reason.clone(),
                            at_ms: now_ms(),
                        });
                    }
                }
                self.events.emit(Event::TargetFailed {
                    probe: probe.clone(),
                    serial,
                    step: failure.step.into(),
                    reason: failure.reason.clone(),
                });
                let slot = &mut self.probes[index];
                slot.failures_in_a_row += 1;
                if slot.failures_in_a_row >= self.settings.retire_after {
                    slot.retired = true;
                    self.events.emit(Event::Probe {
                        probe,
                        action: "retired".into(),
                        reason: format!(
                            "{} failures in a row, last: {}",
                            slot.failures_in_a_row, failure.reason
                        ),
                    });
                    if self.probes.iter().all(|p| p.retired) {
                        self.stop_with("every probe is retired".into());
                    }
                } else {
                    // A fresh actor on the same fixture: nothing of the failed run survives.
                    slot.addr = ProbeActor::new(slot.fixture.clone(), self.events.clone()).start();
                    self.events.emit(Event::Probe {
                        probe,
                        action: "restarted".into(),
                        reason: failure.reason,
                    });
                }
            }
        }
        self.pump(ctx);
    }

    /// Journals a failed target (fsync) and queues its FAILED report.
    fn journal_failure(&mut self, record: InstallRecord) {
        if self.append(&JournalRecord::InstallFailed(record.clone())) {
            self.pending.push_back(record);
        }
    }

    fn flush_reports(&mut self, ctx: &mut Context<Self>) {
        if self.reporting || self.done.is_none() {
            return;
        }
        let Some(record) = self.pending.front().cloned() else {
            return;
        };
        self.reporting = true;
        let request = report_request(&record);
        let client = self.client.clone();
        let span = tracing::info_span!(parent: None, "report", serial = %record.serial, lease = %record.lease_id);
        // Part of the device's trace (its install span), also when re-sent after a restart.
        flashgate_telemetry::set_parent_from_traceparent(&span, record.trace_parent.as_deref());
        let fut = async move { client.report_install(request).await };
        ctx.spawn(
            tracing::Instrument::instrument(fut, span)
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.reporting = false;
                    if act.pending.front() != Some(&record) {
                        return act.pump(ctx);
                    }
                    let own_duplicate = |s: &tonic::Status| {
                        s.code() == tonic::Code::AlreadyExists
                            && s.message().contains(&act.identity.station_id())
                    };
                    match result {
                        Ok(_) => act.reported(record, ctx),
                        // The coordinator registered it before an outage cut the answer.
                        Err(s) if own_duplicate(&s) => act.reported(record, ctx),
                        Err(s) if transient(&s) => {
                            if !act.deferred_noted {
                                act.deferred_noted = true;
                                act.events.emit(Event::ReportDeferred {
                                    serial: record.serial.clone(),
                                    reason: s.message().to_owned(),
                                });
                            }
                            ctx.run_later(act.settings.retry_every, |act, ctx| act.pump(ctx));
                        }
                        Err(s) => {
                            act.pending.pop_front();
                            act.summary.report_refused += 1;
                            act.append(&JournalRecord::ReportRefused {
                                lease_id: record.lease_id.clone(),
                                serial: record.serial.clone(),
                                reason: s.message().to_owned(),
                                installed_at_ms: Some(record.installed_at_ms),
                            });
                            act.events.emit(Event::ReportRefused {
                                serial: record.serial,
                                reason: s.message().to_owned(),
                            });
                            act.pump(ctx);
                        }
                    }
                }),
        );
    }

    fn reported(&mut self, record: InstallRecord, ctx: &mut Context<Self>) {
        self.pending.pop_front();
        self.deferred_noted = false;
        self.append(&JournalRecord::InstallReported {
            lease_id: record.lease_id.clone(),
            serial: record.serial.clone(),
            installed_at_ms: Some(record.installed_at_ms),
        });
        if record.is_failure() {
            self.summary.failures_reported += 1;
            self.events.emit(Event::FailureReported {
                serial: record.serial,
                lease_id: record.lease_id,
            });
        } else {
            self.summary.reported += 1;
            self.events.emit(Event::Reported {
                serial: record.serial,
                lease_id: record.lease_id,
            });
        }
        self.pump(ctx);
    }

    /// At the end, gives the lease's unused slots back (only once every install under it is
    /// reported: the coordinator refuses reports under an ended lease).
    fn return_unused_lease(&mut self, ctx: &mut Context<Self>) {
        if self.returning {
            return;
        }
        let Some(lease) = &self.lease else { return };
        if lease.reserved > 0 || self.pending.iter().any(|p| p.lease_id == lease.id()) {
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
                            act.lease = None;
                        }
                        Err(s) => {
                            // Kept in the journal: the next start resumes it (or it expires).
                            tracing::warn!(error = %s.message(), "could not return the lease");
                            act.lease = None;
                        }
                    }
                    act.pump(ctx);
                }),
        );
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(lease) = &self.lease {
            self.events.emit(Event::Lease {
                lease_id: lease.id().to_owned(),
                count: lease.body.count,
                used: lease.used,
                not_after_ms: lease.body.not_after_ms,
                how: "resumed".into(),
            });
        }
        // Re-check stop conditions now and then (report deadlines while the coordinator is down).
        ctx.run_interval(Duration::from_millis(500), |act, ctx| act.pump(ctx));
        self.pump(ctx);
    }
}

fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
    )
}

fn report_request(record: &InstallRecord) -> v1::ReportInstallRequest {
    let test_outcome = match record.test.outcome.as_str() {
        "pass" => v1::TestOutcome::Pass,
        "fail" => v1::TestOutcome::Fail,
        _ => v1::TestOutcome::None,
    };
    let outcome = if record.is_failure() {
        v1::InstallOutcome::Failed
    } else {
        v1::InstallOutcome::Provisioned
    };
    v1::ReportInstallRequest {
        lease_id: record.lease_id.clone(),
        serial: hex::decode(&record.serial).unwrap_or_default(),
        bootloader_version: record.bootloader_version,
        test_result: Some(v1::TestResult {
            outcome: test_outcome as i32,
            log: record.test.log.chars().take(16 * 1024).collect(),
        }),
        outcome: outcome as i32,
        installed_at_ms: record.installed_at_ms,
        failure_reason: record
            .failure_reason
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(1000)
            .collect(),
    }
}

/// Keeps a shared fixture type nameable for callers.
pub fn share_fixture(fixture: Box<dyn crate::fixture::TargetFixture>) -> SharedFixture {
    Arc::new(Mutex::new(fixture))
}
