//! The install journal: append-only JSON lines in `<state-dir>/journal.jsonl`, each record
//! fsynced before the station acts on it. A [`Report`] is journaled before it is sent (see
//! [`super::outbox`]), so a coordinator outage or a station crash loses nothing; replaying the
//! journal on start tells which reports still need sending and how many slots each lease has
//! left, so nothing is counted twice.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use flashgate_protocol::Serial;

use super::Report;

/// File name of the journal inside the state directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum JournalRecord {
    /// A lease was granted: the signed lease (prost encoding, hex) as received.
    LeaseAcquired {
        /// Lease id.
        lease_id: String,
        /// `SignedLease` encoding, hex.
        signed_lease: String,
        /// When (unix ms).
        at_ms: i64,
    },
    /// A verified install consumed a slot.
    InstallCompleted(Report),
    /// A target failed after its serial was known (or failed its factory test): its slot went
    /// back to the lease; it is reported as FAILED (nothing registered).
    InstallFailed(Report),
    /// The coordinator registered that install (or recorded that failure).
    InstallReported {
        /// Lease id.
        lease_id: String,
        /// Serial, hex.
        #[serde(with = "super::report::serial_hex")]
        serial: Serial,
        /// The record's `installed_at_ms` (absent in older journals).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        installed_at_ms: Option<i64>,
    },
    /// The coordinator refused a report for good (lease ended, duplicate of another station's
    /// device…): it is not re-sent.
    ReportRefused {
        /// Lease id.
        lease_id: String,
        /// Serial, hex.
        #[serde(with = "super::report::serial_hex")]
        serial: Serial,
        /// The coordinator's reason.
        reason: String,
        /// The record's `installed_at_ms` (absent in older journals).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        installed_at_ms: Option<i64>,
    },
    /// A target failed before its serial was known; its slot went back to the lease (nothing
    /// registered, nothing reported).
    TargetFailed {
        /// Always absent since failures with a known serial are [`Self::InstallFailed`]; kept
        /// for journals written before.
        #[serde(default)]
        serial: Option<String>,
        /// The probe.
        probe: String,
        /// The reason shown to the operator.
        reason: String,
        /// When (unix ms).
        at_ms: i64,
    },
    /// The lease ended (returned or used up/expired): it will not be used again.
    LeaseClosed {
        /// Lease id.
        lease_id: String,
        /// Why.
        reason: String,
    },
}

/// What the journal says after replay.
#[derive(Clone, Debug, Default)]
pub struct JournalState {
    /// Leases not closed, in the order they were acquired: (lease id, signed lease hex).
    pub open_leases: Vec<(String, String)>,
    /// Installs per lease (every lease ever seen).
    pub installs_per_lease: BTreeMap<String, u32>,
    /// Installs completed and failures journaled, not yet reported.
    pub unreported: Vec<Report>,
    /// Every install journaled.
    pub installs: u32,
    /// Failures journaled.
    pub failures: u32,
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// I/O.
    #[error("journal {path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line that is not a record (other than a torn last line).
    #[error("journal {path} line {line} is corrupt: {detail}")]
    Corrupt {
        /// Which file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Parser message.
        detail: String,
    },
}

/// Cuts a last line that has no newline (torn by a crash or a full disk while appending; its
/// record was never acted on) so the next append starts a line of its own.
fn cut_torn_tail(file: &File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    let mut reader = file;
    let mut keep = len;
    let mut byte = [0u8; 1];
    while keep > 0 {
        reader.seek(SeekFrom::Start(keep - 1))?;
        reader.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            break;
        }
        keep -= 1;
    }
    if keep < len {
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(())
}

/// The open journal.
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens (creating) the journal in `state_dir` and replays it.
    pub fn open(state_dir: &Path) -> Result<(Self, JournalState), JournalError> {
        let path = state_dir.join(JOURNAL_FILE);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let records = Self::read(&path)?;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        cut_torn_tail(&file).map_err(io)?;
        Ok((Self { path, file }, replay(&records)))
    }

    /// Reads every record. A torn last line (crash while appending) is ignored: its record was
    /// never acted on, since the station acts only after the fsync.
    pub fn read(path: &Path) -> Result<Vec<JournalRecord>, JournalError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(JournalError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let lines: Vec<String> = BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|source| JournalError::Io {
                path: path.to_owned(),
                source,
            })?;
        let mut records = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(r) => records.push(r),
                Err(_) if i + 1 == lines.len() => {
                    tracing::warn!(path = %path.display(), "ignoring a torn last journal line");
                }
                Err(e) => {
                    return Err(JournalError::Corrupt {
                        path: path.to_owned(),
                        line: i + 1,
                        detail: e.to_string(),
                    })
                }
            }
        }
        Ok(records)
    }

    /// Appends one record and fsyncs it. Returns only once it is durable; on an error the
    /// record is not in the journal.
    pub fn append(&mut self, record: &JournalRecord) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("journal records serialise");
        line.push(b'\n');
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let before = self.file.metadata().map_err(io)?.len();
        if let Err(e) = self.file.write_all(&line) {
            // A full disk can take part of the line: take it back, or the next append would be
            // glued onto it (and lost with it when the journal is read).
            let _ = self.file.set_len(before);
            return Err(io(e));
        }
        if let Err(e) = self.file.sync_data() {
            // Not durable, so never acted on; and after a failed fsync the kernel may drop the
            // line's pages while a later fsync succeeds without them. Take the line back so a
            // restart does not act on a record this run refused to count.
            let _ = self.file.set_len(before);
            let _ = self.file.sync_data();
            return Err(io(e));
        }
        Ok(())
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether an `InstallReported` / `ReportRefused` record names `report`. Records written before
/// `installed_at_ms` was journaled name (lease, serial) only, and only installs.
fn named_by(report: &Report, lease_id: &str, serial: &Serial, at_ms: Option<i64>) -> bool {
    report.lease_id == lease_id
        && report.serial == *serial
        && match at_ms {
            Some(at) => report.installed_at_ms == at,
            None => !report.is_failure(),
        }
}

/// Folds records into the state the station resumes from.
pub fn replay(records: &[JournalRecord]) -> JournalState {
    let mut state = JournalState::default();
    let mut pending: Vec<Report> = Vec::new();
    for record in records {
        match record {
            JournalRecord::LeaseAcquired {
                lease_id,
                signed_lease,
                ..
            } => {
                if !state.open_leases.iter().any(|(id, _)| id == lease_id) {
                    state
                        .open_leases
                        .push((lease_id.clone(), signed_lease.clone()));
                }
                state
                    .installs_per_lease
                    .entry(lease_id.clone())
                    .or_default();
            }
            JournalRecord::InstallCompleted(install) => {
                *state
                    .installs_per_lease
                    .entry(install.lease_id.clone())
                    .or_default() += 1;
                state.installs += 1;
                pending.push(install.clone());
            }
            JournalRecord::InstallFailed(failure) => {
                state.failures += 1;
                pending.push(failure.clone());
            }
            JournalRecord::InstallReported {
                lease_id,
                serial,
                installed_at_ms,
            }
            | JournalRecord::ReportRefused {
                lease_id,
                serial,
                installed_at_ms,
                ..
            } => {
                if let Some(i) = pending
                    .iter()
                    .position(|p| named_by(p, lease_id, serial, *installed_at_ms))
                {
                    pending.remove(i);
                }
            }
            JournalRecord::TargetFailed { .. } => state.failures += 1,
            JournalRecord::LeaseClosed { lease_id, .. } => {
                state.open_leases.retain(|(id, _)| id != lease_id);
            }
        }
    }
    state.unreported = pending;
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::report::{Outcome, TestOutcome, TestRecord};

    const AA: Serial = [0xAA; 16];
    const BB: Serial = [0xBB; 16];

    fn install(lease: &str, serial: Serial) -> JournalRecord {
        JournalRecord::InstallCompleted(Report {
            lease_id: lease.into(),
            serial,
            bootloader_version: 1,
            test: TestRecord {
                outcome: TestOutcome::None,
                log: String::new(),
            },
            outcome: Outcome::Provisioned,
            installed_at_ms: 5,
            failure_reason: None,
            trace_parent: None,
            os_version: 0,
            os_receipt: Vec::new(),
            hello: None,
        })
    }

    #[test]
    fn replay_counts_installs_and_finds_unreported_ones() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut journal, state) = Journal::open(dir.path()).unwrap();
            assert_eq!(state.installs, 0);
            for r in [
                JournalRecord::LeaseAcquired {
                    lease_id: "l1".into(),
                    signed_lease: "00".into(),
                    at_ms: 1,
                },
                install("l1", AA),
                JournalRecord::InstallReported {
                    lease_id: "l1".into(),
                    serial: AA,
                    installed_at_ms: None,
                },
                install("l1", BB),
            ] {
                journal.append(&r).unwrap();
            }
        }
        // A crash while appending leaves a torn line: ignored.
        let path = dir.path().join(JOURNAL_FILE);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"record\":\"install_comp");
        std::fs::write(&path, text).unwrap();
        let (mut journal, state) = Journal::open(dir.path()).unwrap();
        assert_eq!(state.installs, 2);
        assert_eq!(state.installs_per_lease["l1"], 2);
        assert_eq!(state.unreported.len(), 1);
        assert_eq!(state.unreported[0].serial, BB);
        assert_eq!(state.open_leases.len(), 1);
        // The torn line is cut on open: what is appended next is a line of its own, and the
        // journal still opens afterwards (it was glued onto the torn line, then corrupt).
        journal.append(&install("l1", [0xCC; 16])).unwrap();
        journal.append(&install("l1", [0xDD; 16])).unwrap();
        drop(journal);
        let (_, state) = Journal::open(dir.path()).unwrap();
        assert_eq!(state.installs, 4);
        assert_eq!(state.unreported.len(), 3);
    }

    #[test]
    fn failures_are_re_sent_but_consume_no_slot_and_reports_match_exactly() {
        let failed = |at: i64| {
            let JournalRecord::InstallCompleted(mut record) = install("l1", AA) else {
                unreachable!()
            };
            record.test.outcome = TestOutcome::Fail;
            record.outcome = Outcome::Failed;
            record.installed_at_ms = at;
            record.failure_reason = Some("factory test failed".into());
            JournalRecord::InstallFailed(record)
        };
        let reported = |at: Option<i64>| JournalRecord::InstallReported {
            lease_id: "l1".into(),
            serial: AA,
            installed_at_ms: at,
        };
        // The same board failed twice, was reworked, then installed: three reports to send.
        let records = [failed(1), failed(3), install("l1", AA)];
        let state = replay(&records);
        assert_eq!(
            state.installs_per_lease.get("l1"),
            Some(&1),
            "failures use no slot"
        );
        assert_eq!((state.installs, state.failures), (1, 2));
        assert_eq!(state.unreported.len(), 3);
        assert!(state.unreported[0].is_failure());
        // A report names exactly one of them.
        let mut with_reports = records.to_vec();
        with_reports.push(reported(Some(3)));
        let state = replay(&with_reports);
        let left: Vec<i64> = state.unreported.iter().map(|r| r.installed_at_ms).collect();
        assert_eq!(left, vec![1, 5]);
        // An old-style report (no time) names the install, never a failure.
        with_reports.push(reported(None));
        let state = replay(&with_reports);
        assert_eq!(state.unreported.len(), 1);
        assert!(state.unreported[0].is_failure());
        // Round trip through the file, with the optional fields.
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        for r in &with_reports {
            journal.append(r).unwrap();
        }
        assert_eq!(Journal::read(journal.path()).unwrap(), with_reports);
    }

    #[test]
    fn a_corrupt_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), "garbage\n{}\n").unwrap();
        assert!(matches!(
            Journal::open(dir.path()),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
        // Refused as it was: nothing appended, nothing cut.
        assert_eq!(
            std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap(),
            b"garbage\n{}\n"
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn text() -> impl Strategy<Value = String> {
            "\\PC{0,40}"
        }

        fn record() -> impl Strategy<Value = JournalRecord> {
            prop_oneof![
                (text(), text(), any::<i64>()).prop_map(|(lease_id, signed_lease, at_ms)| {
                    JournalRecord::LeaseAcquired {
                        lease_id,
                        signed_lease,
                        at_ms,
                    }
                }),
                (text(), any::<Serial>(), proptest::option::of(any::<i64>())).prop_map(
                    |(lease_id, serial, installed_at_ms)| JournalRecord::InstallReported {
                        lease_id,
                        serial,
                        installed_at_ms,
                    }
                ),
                (
                    text(),
                    any::<Serial>(),
                    text(),
                    proptest::option::of(any::<i64>())
                )
                    .prop_map(|(lease_id, serial, reason, installed_at_ms)| {
                        JournalRecord::ReportRefused {
                            lease_id,
                            serial,
                            reason,
                            installed_at_ms,
                        }
                    }),
                (text(), text(), any::<i64>()).prop_map(|(probe, reason, at_ms)| {
                    JournalRecord::TargetFailed {
                        serial: None,
                        probe,
                        reason,
                        at_ms,
                    }
                }),
                (text(), text())
                    .prop_map(|(lease_id, reason)| JournalRecord::LeaseClosed { lease_id, reason }),
                (text(), any::<Serial>(), any::<i64>()).prop_map(|(lease, serial, at)| {
                    let JournalRecord::InstallCompleted(mut report) = install(&lease, serial)
                    else {
                        unreachable!("install() makes an InstallCompleted")
                    };
                    report.installed_at_ms = at;
                    JournalRecord::InstallFailed(report)
                }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

            /// Every record appended (one fsynced JSON line each) reads back as itself.
            #[test]
            fn appended_records_read_back(records in proptest::collection::vec(record(), 0..8)) {
                let dir = tempfile::tempdir().unwrap();
                let (mut journal, _) = Journal::open(dir.path()).unwrap();
                for r in &records {
                    journal.append(r).unwrap();
                }
                prop_assert_eq!(Journal::read(journal.path()).unwrap(), records);
            }

            /// Any bytes on disk: records, a torn last line skipped, or `Corrupt` — no panic.
            #[test]
            fn any_journal_file_reads_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join(JOURNAL_FILE);
                std::fs::write(&path, &bytes).unwrap();
                match Journal::read(&path) {
                    Ok(records) => drop(replay(&records)),
                    Err(JournalError::Corrupt { .. } | JournalError::Io { .. }) => {}
                }
            }
        }
    }
}
