//! Reports to the coordinator, journal first: a [`Report`] is appended to the journal (fsynced)
//! before it is queued, sent one at a time in order, re-sent while the coordinator is
//! unreachable, and settled in the journal (reported, or refused for good) once it answers.
//! After a crash the journal replay gives the queue back ([`JournalState::unreported`]).
//!
//! [`JournalState::unreported`]: super::journal::JournalState::unreported

use std::collections::VecDeque;

use flashgate_proto::v1;

use super::journal::{Journal, JournalError, JournalRecord};
use super::Report;
use crate::coordinator_client::transient;

/// How the coordinator answered one report.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Registered (or, for a failure, recorded) — also when the coordinator recognised a re-sent
    /// report whose first answer was lost: it answers with the device registered then.
    Accepted,
    /// Not reachable now: kept, sent again later.
    Deferred {
        /// Why.
        reason: String,
    },
    /// Refused for good (lease ended, serial registered by another install, …): not re-sent.
    Refused {
        /// The coordinator's code.
        code: tonic::Code,
        /// Its reason.
        reason: String,
    },
}

impl Delivery {
    /// Reads the coordinator's answer to `report`.
    pub fn of(
        report: &Report,
        answer: &Result<v1::ReportInstallResponse, tonic::Status>,
    ) -> Delivery {
        match answer {
            Ok(response)
                if report.is_failure()
                    || response
                        .device
                        .as_ref()
                        .is_some_and(|d| report.registered_as(d)) =>
            {
                Delivery::Accepted
            }
            Ok(_) => Delivery::Refused {
                code: tonic::Code::Internal,
                reason:
                    "the coordinator accepted the report but answered with another device record"
                        .into(),
            },
            Err(status) if transient(status) => Delivery::Deferred {
                reason: status.message().to_owned(),
            },
            Err(status) => Delivery::Refused {
                code: status.code(),
                reason: status.message().to_owned(),
            },
        }
    }
}

/// What settling a report did.
#[derive(Debug)]
pub enum Settled {
    /// Journaled as reported and taken off the queue.
    Reported(Report),
    /// Journaled as refused and taken off the queue.
    Refused {
        /// The report.
        report: Report,
        /// The coordinator's reason.
        reason: String,
    },
    /// Still queued. `first` is true for the first deferral since the last success (worth
    /// telling the operator once, not on every retry).
    Deferred {
        /// The report.
        report: Report,
        /// Why.
        reason: String,
        /// The first deferral in a row.
        first: bool,
    },
}

/// The queue of reports not yet settled.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Report>,
    sending: bool,
    deferred: bool,
}

impl Outbox {
    /// An outbox holding the reports the journal replay found unsettled.
    pub fn new(unreported: Vec<Report>) -> Self {
        Self {
            queue: unreported.into(),
            ..Self::default()
        }
    }

    /// Journals `report` (fsync), then queues it. Nothing is queued that is not durable.
    pub fn record(&mut self, journal: &mut Journal, report: Report) -> Result<(), JournalError> {
        journal.append(&if report.is_failure() {
            JournalRecord::InstallFailed(report.clone())
        } else {
            JournalRecord::InstallCompleted(report.clone())
        })?;
        self.queue.push_back(report);
        Ok(())
    }

    /// The report to send now, unless one is on its way or none is queued.
    pub fn next_to_send(&mut self) -> Option<Report> {
        if self.sending {
            return None;
        }
        let next = self.queue.front().cloned();
        self.sending = next.is_some();
        next
    }

    /// Settles the report [`next_to_send`](Self::next_to_send) gave out, with the coordinator's
    /// answer: journaled first, then taken off the queue.
    pub fn settle(
        &mut self,
        journal: &mut Journal,
        report: Report,
        delivery: Delivery,
    ) -> Result<Settled, JournalError> {
        self.sending = false;
        debug_assert_eq!(self.queue.front(), Some(&report), "reports settle in order");
        match delivery {
            Delivery::Accepted => {
                journal.append(&JournalRecord::InstallReported {
                    lease_id: report.lease_id.clone(),
                    serial: report.serial,
                    installed_at_ms: Some(report.installed_at_ms),
                })?;
                self.queue.pop_front();
                self.deferred = false;
                Ok(Settled::Reported(report))
            }
            Delivery::Refused { reason, .. } => {
                journal.append(&JournalRecord::ReportRefused {
                    lease_id: report.lease_id.clone(),
                    serial: report.serial,
                    reason: reason.clone(),
                    installed_at_ms: Some(report.installed_at_ms),
                })?;
                self.queue.pop_front();
                Ok(Settled::Refused { report, reason })
            }
            Delivery::Deferred { reason } => {
                let first = !std::mem::replace(&mut self.deferred, true);
                Ok(Settled::Deferred {
                    report,
                    reason,
                    first,
                })
            }
        }
    }

    /// Reports not yet settled.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when every report is settled.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// True while a report under `lease_id` is unsettled (the lease cannot be returned yet: the
    /// coordinator refuses reports under an ended lease).
    pub fn holds_lease(&self, lease_id: &str) -> bool {
        self.queue.iter().any(|r| r.lease_id == lease_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::report::{Outcome, TestOutcome, TestRecord};

    fn report(serial: u8, at: i64) -> Report {
        Report {
            lease_id: "l1".into(),
            serial: [serial; 16],
            bootloader_version: 3,
            test: TestRecord {
                outcome: TestOutcome::None,
                log: String::new(),
            },
            outcome: Outcome::Provisioned,
            installed_at_ms: at,
            failure_reason: None,
            trace_parent: None,
            os_version: 0,
            os_receipt: Vec::new(),
            hello: None,
        }
    }

    fn registered(report: &Report) -> v1::ReportInstallResponse {
        v1::ReportInstallResponse {
            device: Some(v1::Device {
                serial: report.serial.to_vec(),
                lease_id: report.lease_id.clone(),
                installed_at_ms: report.installed_at_ms,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn answers_are_read_by_code_and_record_not_by_message() {
        let r = report(1, 5);
        assert_eq!(Delivery::of(&r, &Ok(registered(&r))), Delivery::Accepted);
        // Another install of the same serial (other time): not ours.
        let other = registered(&report(1, 6));
        assert!(matches!(
            Delivery::of(&r, &Ok(other)),
            Delivery::Refused { .. }
        ));
        let down = tonic::Status::unavailable("connection refused");
        assert!(matches!(
            Delivery::of(&r, &Err(down)),
            Delivery::Deferred { .. }
        ));
        // A duplicate is refused for good whatever its message says.
        let dup = tonic::Status::already_exists(format!("serial … station {}", "st-1"));
        assert!(matches!(
            Delivery::of(&r, &Err(dup)),
            Delivery::Refused {
                code: tonic::Code::AlreadyExists,
                ..
            }
        ));
    }

    #[test]
    fn reports_are_journaled_first_and_settled_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        let mut outbox = Outbox::default();
        outbox.record(&mut journal, report(1, 5)).unwrap();
        outbox.record(&mut journal, report(2, 6)).unwrap();
        assert_eq!(
            super::super::journal::replay(&Journal::read(journal.path()).unwrap())
                .unreported
                .len(),
            2,
            "durable before it is sent"
        );
        let first = outbox.next_to_send().unwrap();
        assert!(outbox.next_to_send().is_none(), "one at a time");
        let down = Delivery::Deferred {
            reason: "down".into(),
        };
        assert!(matches!(
            outbox.settle(&mut journal, first.clone(), down).unwrap(),
            Settled::Deferred { first: true, .. }
        ));
        let again = outbox.next_to_send().unwrap();
        assert_eq!(again, first, "re-sent, in order");
        outbox
            .settle(&mut journal, again, Delivery::Accepted)
            .unwrap();
        let second = outbox.next_to_send().unwrap();
        let refused = Delivery::Refused {
            code: tonic::Code::FailedPrecondition,
            reason: "lease ended".into(),
        };
        outbox.settle(&mut journal, second, refused).unwrap();
        assert!(outbox.is_empty());
        let state = super::super::journal::replay(&Journal::read(journal.path()).unwrap());
        assert!(state.unreported.is_empty(), "both settled in the journal");
    }
}
