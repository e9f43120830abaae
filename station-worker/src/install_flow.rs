//! The whole flow for one target on one probe, blocking: attach → flash-loader handshake →
//! device key for the serial from the lease → bootloader + key + configuration → verified
//! receipt → optional factory test → debug lock → reset → verified `hello`. Runs on a blocking
//! thread of its probe actor; each phase is a `tracing` span and a progress event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_protocol::lease_keys::derive_device_key;
use flashgate_protocol::Serial;
use zeroize::Zeroizing;

use crate::device_link::HelloAnswer;
use crate::events::{Event, EventSink, PhaseMillis};
use crate::fixture::{FixtureError, TargetFixture};
use crate::provisioning::{
    FlashLoaderSession, LoaderImage, ProvisioningError, ProvisioningJob, TestAppReport,
};

/// What every target of an order gets (shared by the probe actors).
pub struct OrderImages {
    /// The RAM flash loader.
    pub loader: LoaderImage,
    /// The vendor-signed bootloader.
    pub bootloader: Vec<u8>,
    /// Its version.
    pub bootloader_version: u32,
    /// The vendor-signed factory test application, if the order has one.
    pub test_app: Option<Vec<u8>>,
    /// Product.
    pub product_id: u32,
    /// The vendor key written into the device configuration.
    pub vendor_public: [u8; 32],
    /// Anti-rollback floor written into the device record.
    pub rollback_floor: u32,
}

/// One slot of a lease handed to a probe actor.
pub struct TargetJob {
    /// Shared images.
    pub images: Arc<OrderImages>,
    /// The lease the slot belongs to.
    pub lease_id: String,
    /// The lease secret (device keys are derived per serial).
    pub lease_secret: Zeroizing<[u8; 32]>,
    /// Time allowed per loader turn and per link operation.
    pub step_timeout: Duration,
    /// Probe name (progress lines).
    pub probe: String,
}

/// A target provisioned, tested, locked and verified.
#[derive(Debug)]
pub struct InstallDone {
    /// Serial.
    pub serial: Serial,
    /// Installed bootloader version (from the verified receipt).
    pub bootloader_version: u32,
    /// Factory test result.
    pub test: Option<TestAppReport>,
    /// Whether the port was locked (not when the test failed).
    pub locked: bool,
    /// The verified hello (absent when the fixture has no UART or the board was not locked).
    pub hello: Option<HelloAnswer>,
    /// Where the time went.
    pub phases: PhaseMillis,
    /// Total time.
    pub total: Duration,
    /// W3C `traceparent` of this target's install span when traces are exported: the report
    /// joins the device's trace with it (kept in the journal, so a re-sent report does too).
    pub trace_parent: Option<String>,
}

/// A target that failed; nothing is registered for it.
#[derive(Debug, Clone)]
pub struct TargetFailure {
    /// Serial if the loader's hello was read.
    pub serial: Option<Serial>,
    /// Which step.
    pub step: &'static str,
    /// Operator-facing reason.
    pub reason: String,
    /// True when the probe or fixture itself failed (counts towards retiring the probe).
    pub probe_fault: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Progress<'a> {
    events: &'a EventSink,
    probe: &'a str,
    started: Instant,
    serial: Option<Serial>,
}

impl Progress<'_> {
    fn step(&self, step: &str) {
        self.events.emit(Event::Step {
            probe: self.probe.to_owned(),
            serial: self.serial.map(hex::encode),
            step: step.to_owned(),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
        });
    }
}

/// Runs the flow on the next target of `fixture`.
pub fn run_target(
    fixture: &mut dyn TargetFixture,
    job: &TargetJob,
    events: &EventSink,
) -> Result<InstallDone, TargetFailure> {
    let result = run_attached(fixture, job, events);
    fixture.detach();
    result
}

fn run_attached(
    fixture: &mut dyn TargetFixture,
    job: &TargetJob,
    events: &EventSink,
) -> Result<InstallDone, TargetFailure> {
    let started = Instant::now();
    let mut progress = Progress {
        events,
        probe: &job.probe,
        started,
        serial: None,
    };
    // The root of this device's trace (runs on a blocking thread: no parent).
    let _target = tracing::info_span!(
        parent: None,
        "install",
        probe = %job.probe,
        lease = %job.lease_id,
        serial = tracing::field::Empty
    )
    .entered();
    let trace_parent = flashgate_telemetry::current_traceparent();
    let mut phases = PhaseMillis::default();
    let images = &job.images;

    progress.step("connect");
    let t = Instant::now();
    let mut probe = {
        let _s = tracing::info_span!("connect").entered();
        fixture
            .attach_next(job.step_timeout)
            .map_err(|e| fixture_failure(None, "connect", e))?
    };
    phases.connect = ms(t.elapsed());

    progress.step("handshake");
    let t = Instant::now();
    let mut session = {
        let _s = tracing::info_span!("handshake").entered();
        FlashLoaderSession::start(&mut *probe, &images.loader, job.step_timeout, None)
            .map_err(|e| failure(None, "handshake", e))?
    };
    phases.handshake = ms(t.elapsed());
    let serial = session.serial();
    progress.serial = Some(serial);
    _target.record("serial", hex::encode(serial));
    tracing::info!(serial = %hex::encode(serial), "target answered the handshake");

    progress.step("transfer");
    let t = Instant::now();
    let secret = job.lease_secret.clone();
    let product_id = images.product_id;
    let device_key = move |s: &Serial| derive_device_key(&secret, product_id, s);
    let provisioning = ProvisioningJob {
        bootloader: &images.bootloader,
        product_id,
        vendor_public: images.vendor_public,
        rollback_floor: images.rollback_floor,
        device_key: &device_key,
        test_app: images.test_app.as_deref(),
        lock_debug_port: true,
        chunk_size: 4096,
        fault: None,
    };
    let receipt = {
        let _s = tracing::info_span!("transfer", serial = %hex::encode(serial)).entered();
        // The loader programs flash as frames arrive: transfer and flash are one phase here.
        let _f = tracing::info_span!("flash").entered();
        session
            .install(&provisioning)
            .map_err(|e| failure(Some(serial), "transfer", e))?
    };
    phases.transfer_flash = ms(t.elapsed());

    let test = match images.test_app.as_deref() {
        Some(app) => {
            progress.step("test");
            let t = Instant::now();
            let _s = tracing::info_span!("test").entered();
            let report = session
                .run_test_app(app, provisioning.chunk_size)
                .map_err(|e| failure(Some(serial), "test", e))?;
            phases.test = ms(t.elapsed());
            tracing::info!(failed = report.failed, "factory test finished");
            Some(report)
        }
        None => None,
    };
    let lock = test.as_ref().is_none_or(TestAppReport::passed);
    if lock {
        progress.step("lock");
        let t = Instant::now();
        let _s = tracing::info_span!("lock").entered();
        session
            .lock_debug_port()
            .map_err(|e| failure(Some(serial), "lock", e))?;
        phases.lock = ms(t.elapsed());
    }
    let timings = session
        .finish()
        .map_err(|e| failure(Some(serial), "finish", e))?;
    drop(probe);
    phases.link = ms(timings.link);
    phases.target = ms(timings.target);
    phases.station = ms(timings.station);

    let mut hello = None;
    if lock {
        progress.step("verify");
        let t = Instant::now();
        let _s = tracing::info_span!("verify").entered();
        if let Some(mut link) = fixture
            .restart_for_hello(job.step_timeout)
            .map_err(|e| fixture_failure(Some(serial), "verify", e))?
        {
            let answer = link
                .hello(job.step_timeout)
                .map_err(|e| plain_failure(Some(serial), "verify", e.to_string()))?;
            let info = answer
                .verify(&device_key(&serial))
                .map_err(|e| plain_failure(Some(serial), "verify", e.to_string()))?;
            if info.serial != serial || info.bootloader_version != receipt.bootloader_version {
                return Err(plain_failure(
                    Some(serial),
                    "verify",
                    "the board's hello names another serial or bootloader version".into(),
                ));
            }
            hello = Some(answer);
        } else {
            tracing::warn!("fixture has no UART: hello not checked");
        }
        phases.verify = ms(t.elapsed());
    }
    Ok(InstallDone {
        serial,
        bootloader_version: receipt.bootloader_version,
        test,
        locked: lock,
        hello,
        phases,
        total: started.elapsed(),
        trace_parent,
    })
}

fn failure(serial: Option<Serial>, step: &'static str, e: ProvisioningError) -> TargetFailure {
    let probe_fault = matches!(e, ProvisioningError::Probe(_));
    tracing::warn!(step, error = %e, "target failed");
    TargetFailure {
        serial,
        step,
        reason: e.to_string(),
        probe_fault,
    }
}

fn fixture_failure(serial: Option<Serial>, step: &'static str, e: FixtureError) -> TargetFailure {
    tracing::warn!(step, error = %e, "fixture failed");
    TargetFailure {
        serial,
        step,
        reason: e.to_string(),
        probe_fault: matches!(e, FixtureError::NoTarget(_)),
    }
}

fn plain_failure(serial: Option<Serial>, step: &'static str, reason: String) -> TargetFailure {
    tracing::warn!(step, error = %reason, "target failed");
    TargetFailure {
        serial,
        step,
        reason,
        probe_fault: false,
    }
}
