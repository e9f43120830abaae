//! What the operator (and a factory MES) sees: live per-probe progress, a summary at the end,
//! and with `--json` one JSON object per line on stdout (they deserialize back into [`Event`]).
//! Events carry no secret.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Time spent per phase of one device, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseMillis {
    /// Board placed and debug link opened.
    pub connect: f64,
    /// Loader written, key agreement.
    pub handshake: f64,
    /// Key, configuration and bootloader sent, flashed, receipt verified.
    pub transfer_flash: f64,
    /// Factory test application.
    pub test: f64,
    /// Debug-port lock.
    pub lock: f64,
    /// Reset and verified `hello`.
    pub verify: f64,
    /// OS install: asking the coordinator for the board's package.
    #[serde(default)]
    pub os_package: f64,
    /// OS install: the package over the UART (transfer, staging checks, install, restarts).
    #[serde(default)]
    pub os_install: f64,
    /// OS install: the status request and the device's receipt.
    #[serde(default)]
    pub os_receipt: f64,
    /// Of handshake + transfer + test + lock: time on the debug link.
    pub link: f64,
    /// Of handshake + transfer + test + lock: time the target computed or flashed.
    pub target: f64,
    /// Of handshake + transfer + test + lock: the station's own work.
    pub station: f64,
}

/// Summary of one run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Why the station stopped.
    pub stop_reason: String,
    /// Devices provisioned and verified in this run.
    pub provisioned: u32,
    /// Of those, boards that left running the order's OS (its install confirmed by the board's
    /// status receipt).
    #[serde(default)]
    pub os_installed: u32,
    /// Targets that failed (not registered, slot given back).
    pub failed: u32,
    /// Of those, boards that failed their factory test (not locked, to rework).
    pub test_failed: u32,
    /// Installs the coordinator registered in this run (including re-sent ones).
    pub reported: u32,
    /// Failed targets the coordinator recorded in this run (including re-sent ones).
    pub failures_reported: u32,
    /// Installs journaled but not yet reported (will be re-sent on the next start).
    pub unreported: u32,
    /// Reports the coordinator refused for good.
    pub report_refused: u32,
    /// Probes retired after repeated failures.
    pub retired_probes: Vec<String>,
    /// Wall-clock of the run, seconds.
    pub elapsed_s: f64,
}

/// One event (its JSON form is what `--json` prints, one per line).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The station started.
    Started {
        /// Station id.
        station_id: String,
        /// Order.
        order_id: String,
        /// Probe names.
        probes: Vec<String>,
        /// Installs found unreported in the journal.
        unreported_in_journal: usize,
    },
    /// A lease is in use.
    Lease {
        /// Lease id.
        lease_id: String,
        /// Slots.
        count: u32,
        /// Already used (resumed from the journal).
        used: u32,
        /// Not after (unix ms).
        not_after_ms: i64,
        /// `acquired` or `resumed`.
        how: String,
    },
    /// A probe moved to the next step with its target.
    Step {
        /// Probe.
        probe: String,
        /// Serial once known.
        serial: Option<String>,
        /// connect, handshake, transfer, test, lock, verify, journal, report.
        step: String,
        /// Since the target was attached, ms.
        elapsed_ms: u64,
    },
    /// A target was provisioned, locked and its hello verified.
    Installed {
        /// Probe.
        probe: String,
        /// Serial.
        serial: String,
        /// Lease.
        lease_id: String,
        /// `pass`, `fail` or `none`.
        test: String,
        /// Where the time went.
        phases: PhaseMillis,
        /// Total ms.
        total_ms: f64,
        /// The hello challenge (hex), so anyone with the device key can re-check the proof.
        hello_challenge: Option<String>,
        /// The hello response (hex).
        hello_response: Option<String>,
        /// The OS version the board now runs, confirmed by its (yet unverified) receipt; the
        /// coordinator verifies the receipt when the install is reported.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        os_version: Option<u32>,
    },
    /// A target failed; nothing registered, slot given back.
    TargetFailed {
        /// Probe.
        probe: String,
        /// Serial if known.
        serial: Option<String>,
        /// During which step.
        step: String,
        /// Why (operator-facing).
        reason: String,
    },
    /// The coordinator registered an install.
    Reported {
        /// Serial.
        serial: String,
        /// Lease.
        lease_id: String,
    },
    /// The coordinator recorded a failed target (not registered, no slot consumed).
    FailureReported {
        /// Serial.
        serial: String,
        /// Lease.
        lease_id: String,
    },
    /// A report could not be sent now; it stays journaled and is retried.
    ReportDeferred {
        /// Serial.
        serial: String,
        /// Why.
        reason: String,
    },
    /// The coordinator refused a report for good.
    ReportRefused {
        /// Serial.
        serial: String,
        /// Why.
        reason: String,
    },
    /// A probe was restarted or retired.
    Probe {
        /// Probe.
        probe: String,
        /// `restarted` or `retired`.
        action: String,
        /// Why.
        reason: String,
    },
    /// The end.
    Summary(Summary),
}

/// Output style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventFormat {
    /// Human progress lines on stderr.
    Human,
    /// One JSON object per line on stdout.
    Json,
    /// Nothing printed (tests, embedding).
    Quiet,
}

/// Where events go; clones share the same log.
#[derive(Clone)]
pub struct EventSink {
    format: EventFormat,
    log: Arc<Mutex<Vec<Event>>>,
}

impl EventSink {
    /// A sink printing in `format` and keeping every event.
    pub fn new(format: EventFormat) -> Self {
        Self {
            format,
            log: Arc::default(),
        }
    }

    /// Emits one event.
    pub fn emit(&self, event: Event) {
        match self.format {
            EventFormat::Json => {
                if let Ok(line) = serde_json::to_string(&event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
            EventFormat::Human => eprintln!("{}", human(&event)),
            EventFormat::Quiet => {}
        }
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn short(serial: &Option<String>) -> String {
    serial
        .as_deref()
        .map(|s| s.chars().take(12).collect())
        .unwrap_or_else(|| "-".repeat(12))
}

/// The human form of an event.
pub fn human(event: &Event) -> String {
    match event {
        Event::Started {
            station_id,
            order_id,
            probes,
            unreported_in_journal,
        } => format!(
            "station {station_id} on order {order_id} with {} probe(s) [{}]; {unreported_in_journal} install(s) to re-send from the journal",
            probes.len(),
            probes.join(", ")
        ),
        Event::Lease {
            lease_id,
            count,
            used,
            how,
            ..
        } => format!("lease {lease_id} {how}: {used}/{count} slots used"),
        Event::Step {
            probe,
            serial,
            step,
            elapsed_ms,
        } => format!(
            "[{probe:>8}] {} {step:<10} {:>6.1}s",
            short(serial),
            *elapsed_ms as f64 / 1000.0
        ),
        Event::Installed {
            probe,
            serial,
            test,
            total_ms,
            os_version,
            ..
        } => format!(
            "[{probe:>8}] {serial} provisioned, locked, hello verified{} (test {test}) in {:.1}s",
            os_version
                .map(|v| format!(", OS {v} running"))
                .unwrap_or_default(),
            total_ms / 1000.0
        ),
        Event::TargetFailed {
            probe,
            serial,
            step,
            reason,
        } => format!("[{probe:>8}] {} FAILED during {step}: {reason}", short(serial)),
        Event::Reported { serial, lease_id } => {
            format!("reported {serial} under {lease_id}")
        }
        Event::FailureReported { serial, lease_id } => {
            format!("reported {serial} as FAILED under {lease_id}")
        }
        Event::ReportDeferred { serial, reason } => {
            format!("report of {serial} deferred (journaled, will retry): {reason}")
        }
        Event::ReportRefused { serial, reason } => {
            format!("report of {serial} REFUSED by the coordinator: {reason}")
        }
        Event::Probe {
            probe,
            action,
            reason,
        } => format!("[{probe:>8}] probe {action}: {reason}"),
        Event::Summary(s) => format!(
            "summary: {} provisioned{}, {} failed ({} by their factory test), {} reported ({} failures), {} unreported, {} refused in {:.1}s; stopped: {}{}",
            s.provisioned,
            if s.os_installed > 0 {
                format!(" ({} running the order's OS)", s.os_installed)
            } else {
                String::new()
            },
            s.failed,
            s.test_failed,
            s.reported,
            s.failures_reported,
            s.unreported,
            s.report_refused,
            s.elapsed_s,
            s.stop_reason,
            if s.retired_probes.is_empty() {
                String::new()
            } else {
                format!("; retired probes: {}", s.retired_probes.join(", "))
            }
        ),
    }
}
