//! The install journal: append-only JSON lines in `<state-dir>/journal.jsonl`, each record
//! fsynced before the station acts on it. An install is journaled before it is reported, so a
//! coordinator outage or a station crash loses nothing; replaying the journal on start tells which
//! installs still need reporting and how many slots each lease has left, so nothing is counted
//! twice.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the journal inside the state directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// The factory test result as journaled and reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestRecord {
    /// `none`, `pass` or `fail`.
    pub outcome: String,
    /// The test application's log.
    pub log: String,
}

/// One install made under a lease, waiting to be (or already) reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    /// The lease it used.
    pub lease_id: String,
    /// The device serial (32 hex chars).
    pub serial: String,
    /// The installed bootloader version.
    pub bootloader_version: u32,
    /// Test result.
    pub test: TestRecord,
    /// Whether the device passed everything (`provisioned`) or failed its test (`rejected`).
    pub outcome: String,
    /// When (unix ms).
    pub installed_at_ms: i64,
}

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
    InstallCompleted(InstallRecord),
    /// The coordinator registered that install.
    InstallReported {
        /// Lease id.
        lease_id: String,
        /// Serial, hex.
        serial: String,
    },
    /// The coordinator refused a report for good (lease ended, duplicate of another station's
    /// device…): it is not re-sent.
    ReportRefused {
        /// Lease id.
        lease_id: String,
        /// Serial, hex.
        serial: String,
        /// The coordinator's reason.
        reason: String,
    },
    /// A target failed; its slot went back to the lease (nothing registered).
    TargetFailed {
        /// Serial, hex, when it was learnt before the failure.
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
    /// Installs completed but not yet reported.
    pub unreported: Vec<InstallRecord>,
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
            .append(true)
            .open(&path)
            .map_err(io)?;
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

    /// Appends one record and fsyncs it. Returns only once it is durable.
    pub fn append(&mut self, record: &JournalRecord) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("journal records serialise");
        line.push(b'\n');
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Folds records into the state the station resumes from.
pub fn replay(records: &[JournalRecord]) -> JournalState {
    let mut state = JournalState::default();
    let mut pending: Vec<InstallRecord> = Vec::new();
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
            JournalRecord::InstallReported { lease_id, serial }
            | JournalRecord::ReportRefused {
                lease_id, serial, ..
            } => {
                pending.retain(|p| !(p.lease_id == *lease_id && p.serial == *serial));
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

    fn install(lease: &str, serial: &str) -> JournalRecord {
        JournalRecord::InstallCompleted(InstallRecord {
            lease_id: lease.into(),
            serial: serial.into(),
            bootloader_version: 1,
            test: TestRecord {
                outcome: "none".into(),
                log: String::new(),
            },
            outcome: "provisioned".into(),
            installed_at_ms: 5,
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
                install("l1", "aa"),
                JournalRecord::InstallReported {
                    lease_id: "l1".into(),
                    serial: "aa".into(),
                },
                install("l1", "bb"),
            ] {
                journal.append(&r).unwrap();
            }
        }
        // A crash while appending leaves a torn line: ignored.
        let path = dir.path().join(JOURNAL_FILE);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"record\":\"install_comp");
        std::fs::write(&path, text).unwrap();
        let (_, state) = Journal::open(dir.path()).unwrap();
        assert_eq!(state.installs, 2);
        assert_eq!(state.installs_per_lease["l1"], 2);
        assert_eq!(state.unreported.len(), 1);
        assert_eq!(state.unreported[0].serial, "bb");
        assert_eq!(state.open_leases.len(), 1);
    }

    #[test]
    fn a_corrupt_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), "garbage\n{}\n").unwrap();
        assert!(matches!(
            Journal::open(dir.path()),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
    }
}
