//! A [`Report`]: what the station tells the coordinator about one target, in the form it is
//! journaled (JSON, fsynced) before it is sent, so a coordinator outage or a crash loses nothing.
//! [`Report::to_request`] is the one place it becomes the wire's `ReportInstallRequest`.

use flashgate_proto::v1;
use flashgate_protocol::Serial;
use serde::{Deserialize, Serialize};

use super::{Failed, Provisioned};

/// Longest test log the coordinator accepts.
const MAX_LOG: usize = 16 * 1024;
/// Longest failure reason sent.
const MAX_REASON: usize = 1000;

/// What happened to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Verified and locked: registered by the coordinator, consumes a slot.
    Provisioned,
    /// The flow failed after the serial was known, or the factory test failed: recorded, not
    /// registered, consumes nothing.
    Failed,
}

/// The factory test's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestOutcome {
    /// The order has no test application (or the flow failed before it).
    None,
    /// Every check passed.
    Pass,
    /// A check failed.
    Fail,
}

impl TestOutcome {
    /// `none`, `pass` or `fail`, as in the journal and the events.
    pub fn as_str(self) -> &'static str {
        match self {
            TestOutcome::None => "none",
            TestOutcome::Pass => "pass",
            TestOutcome::Fail => "fail",
        }
    }
}

/// The factory test result as journaled and reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestRecord {
    /// The verdict.
    pub outcome: TestOutcome,
    /// The test application's log.
    pub log: String,
}

/// One target's report, waiting to be (or already) sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The lease the target's slot belonged to.
    pub lease_id: String,
    /// The device serial (32 hex chars in the journal).
    #[serde(with = "serial_hex")]
    pub serial: Serial,
    /// The installed bootloader version (0 when the flow failed before the receipt).
    pub bootloader_version: u32,
    /// Test result.
    pub test: TestRecord,
    /// Registered, or recorded as failed.
    pub outcome: Outcome,
    /// When (unix ms): the install, or the failure.
    pub installed_at_ms: i64,
    /// For [`Outcome::Failed`]: why (operator-facing, no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// W3C `traceparent` of the install's span (telemetry on): the report continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
    /// The OS version the board left with, by its own receipt (0: the order installs none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub os_version: u32,
    /// The device's status receipt of that install (hex in the journal), for the coordinator
    /// to verify: not a secret, and useless to anyone for another challenge.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "bytes_hex")]
    pub os_receipt: Vec<u8>,
    /// The coordinator's hello challenge and the device's answer (hex), the install's proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello: Option<HelloProof>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A device's hello to the coordinator's challenge, journaled as hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloProof {
    /// The challenge (from `IssueDeviceCertificate`).
    pub challenge: String,
    /// The device's response.
    pub response: String,
}

impl Report {
    /// The report of a verified target: registered when it is locked, FAILED (to rework) when
    /// its factory test failed.
    pub fn of_target(lease_id: &str, done: &Provisioned, at_ms: i64) -> Self {
        let (outcome, failure_reason) = match &done.test {
            Some(t) if !t.passed() => (
                Outcome::Failed,
                Some(format!(
                    "factory test failed ({} check(s)); not locked, to rework",
                    t.failed
                )),
            ),
            _ => (Outcome::Provisioned, None),
        };
        Self {
            lease_id: lease_id.to_owned(),
            serial: done.serial,
            bootloader_version: done.bootloader_version,
            test: TestRecord {
                outcome: match &done.test {
                    None => TestOutcome::None,
                    Some(t) if t.passed() => TestOutcome::Pass,
                    Some(_) => TestOutcome::Fail,
                },
                log: done
                    .test
                    .as_ref()
                    .map(|t| t.log.clone())
                    .unwrap_or_default(),
            },
            outcome,
            installed_at_ms: at_ms,
            failure_reason,
            trace_parent: done.trace_parent.clone(),
            os_version: done.os.as_ref().map_or(0, |o| o.version),
            os_receipt: done
                .os
                .as_ref()
                .map(|o| o.receipt.to_vec())
                .unwrap_or_default(),
            hello: done.hello.as_ref().map(|h| HelloProof {
                challenge: hex::encode(h.challenge),
                response: hex::encode(&h.raw),
            }),
        }
    }

    /// The FAILED report of a target whose serial was known; `None` when it was not (nothing to
    /// name it by: the failure stays in the journal only).
    pub fn of_failure(lease_id: &str, probe: &str, failed: &Failed, at_ms: i64) -> Option<Self> {
        Some(Self {
            lease_id: lease_id.to_owned(),
            serial: failed.serial?,
            bootloader_version: 0,
            test: TestRecord {
                outcome: TestOutcome::None,
                log: String::new(),
            },
            outcome: Outcome::Failed,
            installed_at_ms: at_ms,
            failure_reason: Some(format!(
                "{} failed on probe {probe}: {}",
                failed.step, failed.error
            )),
            trace_parent: None,
            os_version: 0,
            os_receipt: Vec::new(),
            hello: None,
        })
    }

    /// True for a failed target (reported as FAILED).
    pub fn is_failure(&self) -> bool {
        self.outcome == Outcome::Failed
    }

    /// The wire form.
    pub fn to_request(&self) -> v1::ReportInstallRequest {
        let test_outcome = match self.test.outcome {
            TestOutcome::Pass => v1::TestOutcome::Pass,
            TestOutcome::Fail => v1::TestOutcome::Fail,
            TestOutcome::None => v1::TestOutcome::None,
        };
        let outcome = match self.outcome {
            Outcome::Provisioned => v1::InstallOutcome::Provisioned,
            Outcome::Failed => v1::InstallOutcome::Failed,
        };
        v1::ReportInstallRequest {
            lease_id: self.lease_id.clone(),
            serial: self.serial.to_vec(),
            bootloader_version: self.bootloader_version,
            test_result: Some(v1::TestResult {
                outcome: test_outcome as i32,
                log: truncate(&self.test.log, MAX_LOG),
            }),
            outcome: outcome as i32,
            installed_at_ms: self.installed_at_ms,
            failure_reason: truncate(
                self.failure_reason.as_deref().unwrap_or_default(),
                MAX_REASON,
            ),
            os_status_receipt: self.os_receipt.clone(),
            hello_challenge: self
                .hello
                .as_ref()
                .and_then(|h| hex::decode(&h.challenge).ok())
                .unwrap_or_default(),
            hello_response: self
                .hello
                .as_ref()
                .and_then(|h| hex::decode(&h.response).ok())
                .unwrap_or_default(),
        }
    }

    /// True when `device`, as the coordinator registered it, is this report's install (the
    /// coordinator answers a re-sent report with the device registered the first time).
    pub fn registered_as(&self, device: &v1::Device) -> bool {
        device.serial == self.serial
            && device.lease_id == self.lease_id
            && device.installed_at_ms == self.installed_at_ms
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

pub(super) mod serial_hex {
    use flashgate_protocol::Serial;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(serial: &Serial, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&flashgate_proto::serial::to_hex(serial))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Serial, D::Error> {
        let text = String::deserialize(d)?;
        flashgate_proto::serial::from_hex(&text)
            .ok_or_else(|| de::Error::custom(format!("{text:?} is not a 32-hex-digit serial")))
    }
}

mod bytes_hex {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(&text).map_err(|e| de::Error::custom(format!("{text:?} is not hex: {e}")))
    }
}
