//! Errors of the debug link. Each message names the operation and what the operator should check.

use std::{io, time::Duration};

/// An error talking to a debug probe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The TCP connection to the GDB server could not be opened.
    #[error("could not connect to the GDB server at {server}: {source} — is QEMU/OpenOCD running and listening on that port (and the board's debug port not locked)?")]
    Connect {
        /// The server address.
        server: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The GDB server closed the connection in the middle of an operation.
    #[error("GDB server at {server} closed the connection while {operation} — is QEMU/OpenOCD still running?")]
    Closed {
        /// The server address.
        server: String,
        /// What the client was doing.
        operation: String,
    },
    /// No (complete) answer within the time limit.
    #[error("no answer from the GDB server at {server} within {after:?} while {operation} — is the target hung or the probe unplugged?")]
    Timeout {
        /// The server address.
        server: String,
        /// What the client was doing.
        operation: String,
        /// The time limit.
        after: Duration,
    },
    /// Another socket error.
    #[error("I/O error on the link to the GDB server at {server} while {operation}: {source}")]
    Io {
        /// The server address.
        server: String,
        /// What the client was doing.
        operation: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the GDB server at {server} while {operation}: {detail} — is this really a GDB remote-protocol server?")]
    Protocol {
        /// The server address.
        server: String,
        /// What the client was doing.
        operation: String,
        /// What was wrong.
        detail: String,
    },
    /// The server answered `Exx`.
    #[error("the GDB server at {server} refused {operation} (error E{code:02x}) — check that the address range is mapped and the target is halted")]
    ErrorReply {
        /// The server address.
        server: String,
        /// What the client was doing.
        operation: String,
        /// The error number.
        code: u8,
    },
    /// The probe cannot do this at all.
    #[error("this probe does not support {operation}")]
    Unsupported {
        /// The operation.
        operation: String,
    },
    /// The operation needs a halted target.
    #[error("cannot do {operation} while the target is running — halt it first")]
    TargetRunning {
        /// The operation.
        operation: String,
    },
    /// The target process is gone (stop reply `W`/`X`).
    #[error("the target has stopped for good ({reason}) — power-cycle the board")]
    TargetGone {
        /// Exit code or signal, as text.
        reason: String,
    },
}

impl ProbeError {
    /// True when the link is gone (closed, or broken by an I/O error): reconnect before retrying.
    pub fn is_link_lost(&self) -> bool {
        matches!(self, ProbeError::Closed { .. } | ProbeError::Io { .. })
    }
}
