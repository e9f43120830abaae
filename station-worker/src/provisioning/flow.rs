//! The per-target flow, the only one: the factory's probe actors, the demo and every test run
//! [`run_target`]. Blocking (run it on a thread of its own); each phase is a `tracing` span and a
//! progress [`Event::Step`].
//!
//! connect (the fixture's next board, its debug link) → handshake (loader, key agreement,
//! serial, then the chip's certificate from the coordinator, retried within the step timeout)
//! → transfer (key confirmation, sealed device key, certificate and configuration, bootloader,
//! commit, verified receipt) → test (optional factory test app) → lock → verify (reset, `hello`
//! answering the coordinator's challenge; the coordinator checks the proof, the station holds
//! no device key) → os-install (an order with an OS: the board's package relayed over the same
//! UART, its status receipt; [`super::os_install`]).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use flashgate_protocol::Serial;

use super::os_install::{install_os, OsInstalled};
use super::session::{FlashLoaderSession, TestAppReport, TestRun};
use super::{
    Failed, IssueError, IssuedCertificate, Job, PhaseTimings, ProvisioningError, StationFault,
    Step, TargetFault,
};
use crate::device_link::{DeviceLink, HelloAnswer};
use crate::events::{Event, EventSink, PhaseMillis};
use crate::fixture::{FixtureError, TargetFixture};

/// A target provisioned, its receipt verified: locked and its hello verified, or (when its
/// factory test failed) left unlocked for rework.
#[derive(Debug)]
pub struct Provisioned {
    /// Serial.
    pub serial: Serial,
    /// Installed bootloader version (from the verified receipt).
    pub bootloader_version: u32,
    /// The factory test's report, if the order has a test application.
    pub test: Option<TestAppReport>,
    /// Whether the debug port was locked (not when the factory test failed).
    pub locked: bool,
    /// The device's hello to the coordinator's challenge, for the report (absent when the
    /// fixture has no UART or the board was not locked). Its identity was checked here; its
    /// proof is the coordinator's to verify.
    pub hello: Option<HelloAnswer>,
    /// The order's OS, installed and running by the board's own receipt (absent when the order
    /// installs none, or the board was not locked).
    pub os: Option<OsInstalled>,
    /// True when the coordinator re-issued the chip's existing certificate (no slot consumed).
    pub reissued: bool,
    /// Where the time went, per phase.
    pub phases: PhaseMillis,
    /// Where the debug-link time went (link, target, station; the loader's own tick counts).
    pub timings: PhaseTimings,
    /// Total time.
    pub total: Duration,
    /// W3C `traceparent` of this target's install span when traces are exported: the report
    /// joins the device's trace with it (kept in the journal, so a re-sent report does too).
    pub trace_parent: Option<String>,
}

impl Provisioned {
    /// True when the factory test application ran and failed (the board goes to rework).
    pub fn test_failed(&self) -> bool {
        self.test.as_ref().is_some_and(|t| !t.passed())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Progress lines and the failure's context (step, serial) of one target.
struct Progress<'a> {
    events: &'a EventSink,
    probe: String,
    started: Instant,
    serial: Option<Serial>,
    step: Step,
    /// A certificate was issued for this attempt (a lease slot consumed).
    certified: bool,
}

impl Progress<'_> {
    fn enter(&mut self, step: Step) -> tracing::span::EnteredSpan {
        self.step = step;
        self.events.emit(Event::Step {
            probe: self.probe.clone(),
            serial: self.serial.map(hex::encode),
            step: step.as_str().to_owned(),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
        });
        // Span names are static: one per step (the telemetry test looks for each).
        match step {
            Step::Connect => tracing::info_span!("connect"),
            Step::Handshake => tracing::info_span!("handshake"),
            Step::Transfer => tracing::info_span!("transfer"),
            Step::Test => tracing::info_span!("test"),
            Step::Lock => tracing::info_span!("lock"),
            Step::Verify => tracing::info_span!("verify"),
            Step::OsInstall => tracing::info_span!("os_install"),
        }
        .entered()
    }

    fn failed(&self, error: impl Into<ProvisioningError>) -> Failed {
        let error = error.into();
        tracing::warn!(step = %self.step, at_fault = error.at_fault().as_str(), error = %error, "target failed");
        Failed {
            serial: self.serial,
            step: self.step,
            certified: self.certified,
            error,
        }
    }
}

/// Runs the whole flow on the next target of `fixture`, then detaches it. A panic in the flow
/// (a bug) is a failure of the step it happened in, like any other.
pub fn run_target(
    fixture: &mut dyn TargetFixture,
    job: &Job,
    step_timeout: Duration,
    events: &EventSink,
) -> Result<Provisioned, Failed> {
    let mut p = Progress {
        events,
        probe: fixture.name().to_owned(),
        started: Instant::now(),
        serial: None,
        step: Step::Connect,
        certified: false,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_attached(&mut *fixture, job, step_timeout, &mut p)
    }));
    fixture.detach();
    result.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        Err(p.failed(StationFault::FlowCrashed(why)))
    })
}

fn run_attached(
    fixture: &mut dyn TargetFixture,
    job: &Job,
    timeout: Duration,
    p: &mut Progress<'_>,
) -> Result<Provisioned, Failed> {
    let plan = &*job.plan;
    // The root of this device's trace (runs on a blocking thread: no parent).
    let install = tracing::info_span!(
        parent: None,
        "install",
        probe = %p.probe,
        lease = %job.lease_id,
        serial = tracing::field::Empty
    )
    .entered();
    let trace_parent = flashgate_telemetry::current_traceparent();
    let mut phases = PhaseMillis::default();

    let span = p.enter(Step::Connect);
    let t = Instant::now();
    let mut probe = fixture.attach_next(timeout).map_err(|e| p.failed(e))?;
    phases.connect = ms(t.elapsed());
    drop(span);

    let span = p.enter(Step::Handshake);
    let t = Instant::now();
    let session =
        FlashLoaderSession::start(&mut *probe, plan.loader(), timeout).map_err(|e| p.failed(e))?;
    phases.handshake = ms(t.elapsed());
    let serial = session.serial();
    p.serial = Some(serial);
    install.record("serial", hex::encode(serial));
    tracing::info!(serial = %hex::encode(serial), "target answered the handshake");
    let issued = certificate(job, &serial, &session.loader_public(), timeout)
        .map_err(|e| p.failed(StationFault::from(e)))?;
    p.certified = !issued.reissued;
    drop(span);

    // The loader programs flash as frames arrive: transfer and flash are one phase here.
    let span = p.enter(Step::Transfer);
    let flash = tracing::info_span!("flash").entered();
    let t = Instant::now();
    let committed = session
        .confirm_key()
        .and_then(|s| s.send_secrets(plan, &issued))
        .and_then(|s| s.install_bootloader(plan))
        .map_err(|e| p.failed(e))?;
    let bootloader_version = committed.receipt().bootloader_version;
    phases.transfer_flash = ms(t.elapsed());
    drop(flash);
    drop(span);

    let (timings, test, locked) = match plan.test_app() {
        Some(app) => {
            let span = p.enter(Step::Test);
            let t = Instant::now();
            let run = committed
                .run_test_app(app, plan.chunk_size())
                .map_err(|e| p.failed(e))?;
            phases.test = ms(t.elapsed());
            drop(span);
            match run {
                TestRun::Passed(tested) => {
                    let report = tested.test_report().clone();
                    let span = p.enter(Step::Lock);
                    let t = Instant::now();
                    let locked = tested.lock().and_then(|s| s.finish());
                    let timings = locked.map_err(|e| p.failed(e))?;
                    phases.lock = ms(t.elapsed());
                    drop(span);
                    (timings, Some(report), true)
                }
                TestRun::Failed(failed) => {
                    let report = failed.test_report().clone();
                    tracing::info!(failed = report.failed, "factory test failed: not locked");
                    (
                        failed.finish().map_err(|e| p.failed(e))?,
                        Some(report),
                        false,
                    )
                }
            }
        }
        None => {
            let span = p.enter(Step::Lock);
            let t = Instant::now();
            let timings = committed
                .lock()
                .and_then(|s| s.finish())
                .map_err(|e| p.failed(e))?;
            phases.lock = ms(t.elapsed());
            drop(span);
            (timings, None, true)
        }
    };
    drop(probe);
    phases.link = ms(timings.link);
    phases.target = ms(timings.target);
    phases.station = ms(timings.station);

    let mut hello = None;
    let mut os = None;
    if locked {
        let span = p.enter(Step::Verify);
        let t = Instant::now();
        let verified = checked_hello(fixture, &issued, serial, bootloader_version, timeout)
            .map_err(|e| p.failed(e))?;
        phases.verify = ms(t.elapsed());
        drop(span);
        let link = match verified {
            Some((answer, link)) => {
                hello = Some(answer);
                Some(link)
            }
            None => None,
        };
        if let Some(os_install) = &job.os {
            let span = p.enter(Step::OsInstall);
            let link = link.ok_or_else(|| {
                p.failed(FixtureError::Reset(
                    "the fixture has no UART: the order's OS cannot be installed".into(),
                ))
            })?;
            let installed = install_os(fixture, link, os_install, &job.lease_id, serial, timeout)
                .map_err(|e| p.failed(e))?;
            phases.os_package = installed.timings.package;
            phases.os_install = installed.timings.install;
            phases.os_receipt = installed.timings.receipt;
            drop(span);
            os = Some(installed);
        }
    }
    Ok(Provisioned {
        serial,
        bootloader_version,
        test,
        locked,
        hello,
        os,
        reissued: issued.reissued,
        phases,
        timings,
        total: p.started.elapsed(),
        trace_parent,
    })
}

/// The chip's certificate, asked of the coordinator until it answers or `timeout` passes: an
/// outage holds the target at the handshake (nothing written, no slot consumed), a refusal
/// fails it at once.
fn certificate(
    job: &Job,
    serial: &Serial,
    loader_public: &[u8; 32],
    timeout: Duration,
) -> Result<IssuedCertificate, IssueError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    loop {
        match job.issuer.issue(&job.lease_id, serial, loader_public) {
            Err(IssueError::Unavailable(why)) if Instant::now() + pause < deadline => {
                tracing::warn!(error = %why, "coordinator unavailable for the certificate; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// Restarts the locked board and asks its hello with the coordinator's challenge; checks the
/// identity it claims (its record's serial on its own chip, the installed bootloader). The
/// proof goes into the report: only the coordinator holds the device key.
fn checked_hello(
    fixture: &mut dyn TargetFixture,
    issued: &IssuedCertificate,
    serial: Serial,
    bootloader_version: u32,
    timeout: Duration,
) -> Result<Option<(HelloAnswer, DeviceLink<TcpStream>)>, ProvisioningError> {
    let Some(mut link) = fixture.restart_for_hello(timeout)? else {
        tracing::warn!("fixture has no UART: hello not asked (the device stays CERTIFIED)");
        return Ok(None);
    };
    let answer = link
        .hello_with(issued.hello_challenge, timeout)
        .map_err(TargetFault::Hello)?;
    let info = answer.claimed;
    if info.serial != serial
        || !info.on_its_own_chip()
        || info.bootloader_version != bootloader_version
    {
        return Err(TargetFault::HelloMismatch {
            serial: hex::encode(info.serial),
            version: info.bootloader_version,
        }
        .into());
    }
    Ok(Some((answer, link)))
}
