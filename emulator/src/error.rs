use std::{io, path::PathBuf};

/// What went wrong with an emulated board. Messages say what to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BoardError {
    /// A board file could not be read or written.
    #[error("board file {path}: {source} — check the board directory exists and is writable")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The directory holds no board (missing or wrong-sized file).
    #[error("{path} is not a board file: {detail} — create the board first (`flashgate-board create DIR`)")]
    NotABoard {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// `qemu-system-arm` could not be run.
    #[error("could not run {program}: {source} — is qemu-system-arm installed and on PATH?")]
    Spawn {
        /// The program run.
        program: String,
        /// The I/O error.
        source: io::Error,
    },
    /// QEMU did not come up (or exited early).
    #[error("QEMU did not start: {detail}\n--- tail of {log} ---\n{tail}")]
    Start {
        /// What was seen.
        detail: String,
        /// The log file with QEMU's stderr.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// A QMP exchange failed.
    #[error("QMP {command} failed: {detail} — is QEMU still running? (see {log})")]
    Qmp {
        /// The QMP command.
        command: String,
        /// What went wrong.
        detail: String,
        /// QEMU's log file.
        log: PathBuf,
    },
    /// QEMU is gone (a guest lockup makes QEMU 7.2 abort: "Lockup: can't escalate…").
    #[error("QEMU exited ({status}): the board crashed or was killed; unsaved flash writes are lost\n--- tail of {log} ---\n{tail}")]
    Exited {
        /// How it exited.
        status: String,
        /// The log file with QEMU's stderr.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// An operation needs a running board.
    #[error("the board is powered off — start it first")]
    NotRunning,
    /// The network options would let the board reach beyond this machine, or are malformed.
    #[error("network options refused: {0}")]
    Network(#[from] crate::network::NetworkError),
    /// The instruction-cut plugin could not be built.
    #[error("the instruction-cut QEMU plugin: {detail}")]
    Plugin {
        /// What went wrong.
        detail: String,
    },
    /// A cut asked for did not happen.
    #[error("no power cut: {detail} (see {log})")]
    CutNotReached {
        /// What was seen instead.
        detail: String,
        /// QEMU's log file.
        log: PathBuf,
    },
    /// A UID given by the operator is not 16 bytes of hex.
    #[error("invalid UID {0:?}: expected 32 hex digits (16 bytes)")]
    InvalidUid(String),
}
