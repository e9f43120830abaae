//! The station's side of a board's debug port (SWD behind a probe).
//!
//! [`Probe`] is what the station's flows use: halt/run control, memory and core registers,
//! breakpoints. [`gdb::GdbProbe`] implements it over the GDB remote serial protocol, spoken by
//! QEMU's gdbstub in tests and by OpenOCD / probe gdb servers in the factory; `probe_rs`
//! (cargo feature `probe-rs`) drives USB probes directly. Opening them per station bay is the
//! [`fixture`](crate::fixture)'s job.
//!
//! All calls block (with timeouts): run them on a blocking thread.

pub mod error;
pub mod gdb;
#[cfg(feature = "probe-rs")]
pub mod probe_rs;
mod selector;

use std::time::Duration;

#[cfg(feature = "probe-rs")]
pub use self::probe_rs::{list_probes, ProbeListing, ProbeRsProbe};
pub use self::selector::ProbeSelector;
pub use error::ProbeError;
pub use gdb::{GdbProbe, GdbProbeOptions, LinkTap, ResetCommand, TrafficRecorder};

/// Result of probe operations.
pub type ProbeResult<T> = Result<T, ProbeError>;

/// The Cortex-M core registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoreRegisters {
    /// r0–r12.
    pub r: [u32; 13],
    /// r13, the current stack pointer.
    pub sp: u32,
    /// r14, the link register.
    pub lr: u32,
    /// r15, the program counter.
    pub pc: u32,
    /// The combined program status register (bit 24 = Thumb, always set on Cortex-M).
    pub xpsr: u32,
}

impl CoreRegisters {
    /// Number of 32-bit words: r0–r15 then xPSR.
    pub const WORDS: usize = 17;

    /// The registers in GDB's ARM M-profile order: r0–r12, sp, lr, pc, xpsr.
    pub fn to_words(&self) -> [u32; Self::WORDS] {
        let mut words = [0; Self::WORDS];
        words[..13].copy_from_slice(&self.r);
        words[13] = self.sp;
        words[14] = self.lr;
        words[15] = self.pc;
        words[16] = self.xpsr;
        words
    }

    /// The inverse of [`to_words`](Self::to_words).
    pub fn from_words(words: &[u32; Self::WORDS]) -> Self {
        let mut r = [0; 13];
        r.copy_from_slice(&words[..13]);
        CoreRegisters {
            r,
            sp: words[13],
            lr: words[14],
            pc: words[15],
            xpsr: words[16],
        }
    }
}

/// Why the target is halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HaltReason {
    /// A breakpoint was hit or a single step completed (SIGTRAP).
    Trap,
    /// Halted on request (SIGINT), or because the server stops a running target for any packet.
    Interrupted,
    /// Another signal number (GDB numbering), e.g. 11 for a fault some servers report.
    Signal(u8),
    /// The target "exited" with this code: it will not run again without a reset.
    Exited(u8),
    /// The target was terminated by this signal.
    Terminated(u8),
}

/// The wire between a USB debug probe and the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DebugWire {
    /// Serial Wire Debug (two wires; what Cortex-M boards usually expose).
    #[default]
    Swd,
    /// JTAG.
    Jtag,
}

/// Which comparator a breakpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakpointKind {
    /// A hardware comparator (Cortex-M FPB): works in flash and RAM, limited in number.
    Hardware,
    /// A software breakpoint (the server patches a `bkpt` into memory): RAM only.
    Software,
}

/// A debug probe attached to one Cortex-M core.
///
/// Required methods are what every probe can do; optional abilities are default methods that
/// answer [`ProbeError::Unsupported`], so a backend implements only what it has (as probe-rs does).
pub trait Probe {
    /// Stops the core and says why it is halted. A halted core stays halted.
    fn halt(&mut self) -> ProbeResult<HaltReason>;
    /// Lets the core run; returns at once. Use [`wait_for_halt`](Self::wait_for_halt) next.
    fn resume(&mut self) -> ProbeResult<()>;
    /// Waits until the running core halts (breakpoint, fault…). On timeout the core still runs.
    fn wait_for_halt(&mut self, timeout: Duration) -> ProbeResult<HaltReason>;
    /// Executes one instruction.
    fn step(&mut self) -> ProbeResult<HaltReason>;
    /// Resets the core (and the system); it stays halted.
    fn reset(&mut self) -> ProbeResult<()>;
    /// Reads `buf.len()` bytes at `addr`.
    fn read_memory(&mut self, addr: u32, buf: &mut [u8]) -> ProbeResult<()>;
    /// Writes `data` at `addr`.
    fn write_memory(&mut self, addr: u32, data: &[u8]) -> ProbeResult<()>;
    /// Reads r0–r15 and xPSR.
    fn read_registers(&mut self) -> ProbeResult<CoreRegisters>;
    /// Writes r0–r15 and xPSR.
    fn write_registers(&mut self, regs: &CoreRegisters) -> ProbeResult<()>;
    /// Sets a breakpoint on the Thumb instruction at `addr`.
    fn set_breakpoint(&mut self, addr: u32, kind: BreakpointKind) -> ProbeResult<()>;
    /// Removes a breakpoint set with [`set_breakpoint`](Self::set_breakpoint).
    fn clear_breakpoint(&mut self, addr: u32, kind: BreakpointKind) -> ProbeResult<()>;

    /// Continues from a breakpoint the core is halted on at `addr`: remove it, step over the
    /// instruction, put it back, run. (Without this, some servers — QEMU — stop again at once.)
    fn resume_from_breakpoint(&mut self, addr: u32, kind: BreakpointKind) -> ProbeResult<()> {
        self.clear_breakpoint(addr, kind)?;
        self.step()?;
        self.set_breakpoint(addr, kind)?;
        self.resume()
    }

    /// Reads one little-endian 32-bit word.
    fn read_u32(&mut self, addr: u32) -> ProbeResult<u32> {
        let mut word = [0; 4];
        self.read_memory(addr, &mut word)?;
        Ok(u32::from_le_bytes(word))
    }

    /// Writes one little-endian 32-bit word.
    fn write_u32(&mut self, addr: u32, value: u32) -> ProbeResult<()> {
        self.write_memory(addr, &value.to_le_bytes())
    }

    /// Runs a command of the probe's own monitor (OpenOCD/QEMU `monitor …`), returns its output.
    fn monitor(&mut self, command: &str) -> ProbeResult<String> {
        let _ = command;
        Err(ProbeError::Unsupported {
            operation: "monitor commands".into(),
        })
    }

    /// Reads memory while the core runs (real SWD can; QEMU's gdbstub cannot).
    fn read_memory_while_running(&mut self, addr: u32, buf: &mut [u8]) -> ProbeResult<()> {
        let _ = (addr, buf);
        Err(ProbeError::Unsupported {
            operation: "reading memory while the core runs".into(),
        })
    }
}
