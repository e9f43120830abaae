//! Why one target failed, grouped by who is at fault (as rustls groups its errors): the probe or
//! its fixture, the target, or the station itself. Nothing is registered for a failed target.
//! Coordinator faults are not target failures: they stop the run or refuse a report
//! (`station::StopReason`, [`super::outbox::Delivery`]).

use std::fmt;

use flashgate_protocol::{ErrorCode, Serial};

use crate::device_link::DeviceLinkError;
use crate::fixture::FixtureError;
use crate::probe::{HaltReason, ProbeError};

/// Why provisioning one target failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisioningError {
    // -- The probe or its fixture: replug, check the bay. Counts towards retiring the probe.
    /// The debug link failed (probe unplugged, GDB server gone, timeout).
    #[error("debug link: {0}")]
    Probe(#[from] ProbeError),
    /// The fixture gave no target, or the target did not come back after its reset.
    #[error("fixture: {0}")]
    Fixture(#[from] FixtureError),

    // -- The target.
    /// The flash loader refused a request with its own code: the session is over and nothing
    /// was made bootable.
    #[error("target refused {request}: {code}")]
    TargetRefused {
        /// What the station asked.
        request: &'static str,
        /// The loader's error code.
        code: ErrorCode,
    },
    /// The target answered something the station does not accept.
    #[error("target: {0}")]
    Target(#[from] TargetFault),

    // -- The station: its inputs or its own code.
    /// The station cannot run the flow with what it was given.
    #[error("station: {0}")]
    Station(#[from] StationFault),
}

/// The target misbehaved (or is not the target it claims to be).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetFault {
    /// The loader reported an error code this station does not know.
    #[error("refused {request} with unknown error code {raw:#x}: is the loader newer than this station?")]
    UnknownCode {
        /// What the station asked.
        request: &'static str,
        /// The raw code.
        raw: u32,
    },
    /// Something the target sent does not verify (reply tag, receipt, loader hello, mailbox).
    #[error("its {what} does not verify: {code}")]
    Unverified {
        /// What was checked.
        what: &'static str,
        /// Why it failed.
        code: ErrorCode,
    },
    /// The core stopped somewhere other than the loader's `host_yield` breakpoint.
    #[error(
        "halted unexpectedly ({reason:?}) at pc {pc:#010x} during {request}: did the loader fault?"
    )]
    UnexpectedHalt {
        /// What the station asked.
        request: &'static str,
        /// Why the core stopped.
        reason: HaltReason,
        /// Where.
        pc: u32,
    },
    /// After the lock, the board did not prove its identity on its UART.
    #[error("no valid hello after the lock: {0}")]
    Hello(#[from] DeviceLinkError),
    /// The board's hello verifies but names another serial or bootloader version.
    #[error("its hello names serial {serial} and bootloader {version}, not what was installed")]
    HelloMismatch {
        /// The serial in the hello, hex.
        serial: String,
        /// The bootloader version in the hello.
        version: u32,
    },
    /// The board's UART failed during the OS install (after every restart allowed), or it
    /// answered something that is not part of the update path.
    #[error("OS install: {0}")]
    OsInstall(DeviceLinkError),
    /// The board does not claim to run the order's OS, confirmed, after its install.
    #[error("the OS install did not end with the order's OS running, confirmed: {0}")]
    OsNotConfirmed(String),
}

/// Why no certificate came.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The coordinator could not be reached (or asked to retry): the target waits and retries
    /// within its step timeout.
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
    /// The coordinator counts every chip of the lease certified (slots spent by installs this
    /// station did not journal, e.g. cut short by a crash): the lease is closed and a new one
    /// acquired; nothing was written to the chip, which is tried again under the new lease.
    #[error("the coordinator counts the lease used up: {0}")]
    LeaseSpent(String),
    /// The coordinator refused (lease ended or expired; chip certified elsewhere).
    #[error("coordinator refused the certificate: {0}")]
    Refused(String),
}

/// The station's own fault: a configuration or input problem, or a bug.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StationFault {
    /// The loader image given to the station is not a flashgate loader.
    #[error("loader image is invalid: {0} (rebuild it with `cargo xtask firmware`)")]
    BadLoaderImage(ErrorCode),
    /// The bootloader image is malformed.
    #[error("bootloader image is invalid: {0}")]
    BadBootloaderImage(ErrorCode),
    /// The test application image is malformed.
    #[error("test application image is invalid: {0}")]
    BadTestApp(ErrorCode),
    /// The coordinator gave no usable package of the order's OS for this board.
    #[error("{0}")]
    OsPackage(#[from] PackageError),
    /// No certificate for the chip: the coordinator refused, or stayed unreachable for the
    /// whole step timeout. Nothing was written to the chip and no slot was consumed.
    #[error("no device certificate: {0}")]
    NoCertificate(#[from] IssueError),
    /// The probe actor's thread died (a bug): its actor is restarted.
    #[error("the probe's flow crashed ({0}); the probe actor is restarted")]
    FlowCrashed(String),
}

/// Who has to act on a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtFault {
    /// The probe or its fixture.
    Probe,
    /// The target board.
    Target,
    /// The station's configuration or code.
    Station,
}

impl AtFault {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AtFault::Probe => "probe",
            AtFault::Target => "target",
            AtFault::Station => "station",
        }
    }
}

impl ProvisioningError {
    /// Who has to act.
    pub fn at_fault(&self) -> AtFault {
        match self {
            Self::Probe(_) | Self::Fixture(_) => AtFault::Probe,
            Self::TargetRefused { .. } | Self::Target(_) => AtFault::Target,
            Self::Station(_) => AtFault::Station,
        }
    }

    /// The loader's own error code, when the target refused a request.
    pub fn refusal(&self) -> Option<ErrorCode> {
        match self {
            Self::TargetRefused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The phases of one target, in order; each is a progress event and a `tracing` span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Waiting for the board and opening its debug link.
    Connect,
    /// Loader written, key agreement, serial learnt.
    Handshake,
    /// Key confirmation, device secrets, bootloader, commit, receipt.
    Transfer,
    /// The factory test application.
    Test,
    /// The debug-port lock.
    Lock,
    /// Reset and the verified `hello`.
    Verify,
    /// The order's OS, relayed to the bootloader's update path; the status receipt.
    OsInstall,
}

impl Step {
    /// The step's name in events, metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Handshake => "handshake",
            Step::Transfer => "transfer",
            Step::Test => "test",
            Step::Lock => "lock",
            Step::Verify => "verify",
            Step::OsInstall => "os-install",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A target that failed: where, why, and its serial when the loader's hello was read.
#[derive(Debug, thiserror::Error)]
#[error("{step} failed: {error}")]
pub struct Failed {
    /// The board's serial, if the handshake got that far.
    pub serial: Option<Serial>,
    /// The step that failed.
    pub step: Step,
    /// True when the coordinator had issued the chip's certificate for this attempt: its lease
    /// slot is consumed (a certificate is a slot, whatever became of the board; the chip gets
    /// the same certificate back when it is reworked, without a new slot).
    pub certified: bool,
    /// Why.
    #[source]
    pub error: ProvisioningError,
}

impl Failed {
    /// True when the probe or its fixture failed (counts towards retiring the probe).
    pub fn is_probe_fault(&self) -> bool {
        self.error.at_fault() == AtFault::Probe
    }
}

/// Why no package came.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// The coordinator refused (lease ended, order without an OS, board registered already…).
    #[error("the coordinator refused the OS package: {0}")]
    Refused(String),
    /// The coordinator could not be reached within the step's time.
    #[error("the coordinator was unreachable for the OS package: {0}")]
    Unreachable(String),
    /// The answer is not a package.
    #[error("the coordinator's OS package is malformed: {0}")]
    Malformed(String),
}
