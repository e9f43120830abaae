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
    /// A USB debug probe selector (`VID:PID[:SERIAL]`) could not be parsed.
    #[error("invalid debug probe selector {selector:?}: {detail} — write VID:PID or VID:PID:SERIAL with hex ids, as `probe-rs list` shows them (e.g. 0483:3748)")]
    InvalidProbeSelector {
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        detail: String,
    },
    /// No connected USB debug probe matches the selector.
    #[error("no debug probe matches {selector} — is it plugged in and are udev rules installed (docs/probes.md)?")]
    NoProbeFound {
        /// The selector, or a description of "any probe".
        selector: String,
    },
    /// Several probes match and nothing says which one to use.
    #[error(
        "{count} debug probes match {selector} ({candidates}) — give VID:PID:SERIAL to pick one"
    )]
    AmbiguousProbe {
        /// The selector, or a description of "any probe".
        selector: String,
        /// How many match.
        count: usize,
        /// The matching probes, as `identifier VID:PID:SERIAL`, comma-separated.
        candidates: String,
    },
    /// The probe was found but could not be opened.
    #[error("could not open the debug probe {probe}: {detail} — check the udev rules (docs/probes.md) and that no other program (OpenOCD, a GDB server, probe-rs) holds it")]
    ProbeOpen {
        /// The probe (name and VID:PID:SERIAL).
        probe: String,
        /// What went wrong.
        detail: String,
    },
    /// The chip name is not in probe-rs's target list.
    #[error("unknown chip {chip:?}: {detail} — use an exact name from `probe-rs chip list` (e.g. STM32F103C8, nRF52840_xxAA, RP2040)")]
    UnknownChip {
        /// The chip name as given.
        chip: String,
        /// Why it was not found (or which names it could mean).
        detail: String,
    },
    /// The chip is known but its first core is not a Cortex-M.
    #[error("chip {chip} has a {core} core, but the station drives Cortex-M cores only — check the chip name")]
    UnsupportedChip {
        /// The chip name.
        chip: String,
        /// Its core type.
        core: String,
    },
    /// The probe could not attach to the chip's debug port.
    #[error("could not attach to {chip} through {probe}: {detail} — check target power, the SWD wiring (SWDIO, SWCLK, GND, VTref) and the chip name; a chip in deep sleep may need attaching under reset")]
    Attach {
        /// The probe.
        probe: String,
        /// The chip name.
        chip: String,
        /// What went wrong.
        detail: String,
    },
    /// The target did not reach the expected state in time.
    #[error("target did not {operation} within {after:?} — check power and the SWD wiring")]
    TargetTimeout {
        /// What the target should have done ("halt", …).
        operation: String,
        /// The time limit.
        after: Duration,
    },
    /// The target's debug port refused an access (a bus fault on a memory access).
    #[error("the target refused {operation}: {detail} — check that the address range is mapped and accessible")]
    TargetRefused {
        /// What the station was doing.
        operation: String,
        /// The probe's error.
        detail: String,
    },
    /// Another error of a USB debug probe during an operation.
    #[error("debug probe {probe} failed while {operation}: {detail} — check the SWD wiring and target power, then reopen the probe")]
    DebugLink {
        /// The probe.
        probe: String,
        /// What the station was doing.
        operation: String,
        /// The probe's error.
        detail: String,
    },
    /// The USB connection to the debug probe broke.
    #[error("lost the USB connection to debug probe {probe} while {operation}: {detail} — check the USB cable, replug the probe and reopen it")]
    ProbeDisconnected {
        /// The probe.
        probe: String,
        /// What the station was doing.
        operation: String,
        /// The USB error.
        detail: String,
    },
}

impl ProbeError {
    /// True when the link is gone (closed, broken by an I/O error, USB probe unplugged):
    /// reconnect before retrying.
    pub fn is_link_lost(&self) -> bool {
        matches!(
            self,
            ProbeError::Closed { .. }
                | ProbeError::Io { .. }
                | ProbeError::ProbeDisconnected { .. }
        )
    }
}
