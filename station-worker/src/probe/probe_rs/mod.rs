//! [`Probe`] over [probe-rs](https://probe.rs): USB debug probes (CMSIS-DAP v2, ST-Link, J-Link, …)
//! wired by SWD to a Cortex-M chip, without a GDB server in between.
//!
//! **Status: built and unit-tested here, untested on real hardware.** The tests cover what runs
//! without a probe (listing, selector parsing, chip lookup, the register table, error mapping);
//! no call in this file has ever driven a real probe. Try it on a bench board before a line.
//!
//! Built only with the `probe-rs` cargo feature of `flashgate-station` (off by default), with
//! probe-rs's pure-Rust USB stack (`nusb`): no libusb or hidapi, so no C library to install.
//! Without probe-rs's `cmsisdap_v1` feature, CMSIS-DAP v1 (HID-only) probes are not seen.
//!
//! How the trait maps onto probe-rs 0.32 (a [`Core`] is taken from the [`Session`] per call; its
//! state stays in the session):
//! - halt/resume/step/reset: `Core::halt`, `run`, `step`, `reset_and_halt`; `wait_for_halt` polls
//!   with `wait_for_core_halted` and reads the reason from `Core::status`. probe-rs caches the
//!   core state, so every call that needs a halted core asks `status()` first.
//! - memory: `MemoryInterface::read`/`write` on the core, which go through the memory AP and so
//!   also work while the core runs ([`read_memory_while_running`](Probe::read_memory_while_running)).
//! - registers: `read_core_reg`/`write_core_reg` with the ids of [`registers::CORE_REGISTER_IDS`].
//! - breakpoints: hardware (FPB) only; software breakpoints answer [`ProbeError::Unsupported`].
//!   On ARMv6-M/ARMv7-M (FPB v1) they only reach code below `0x2000_0000`.
//! - `monitor` is not supported: there is no monitor to talk to.

mod registers;
#[cfg(test)]
mod tests;

use std::{error::Error as StdError, fmt, time::Duration};

use ::probe_rs::{
    architecture::arm::{ArmError, DapError},
    config::{Registry, Target},
    probe::{
        list::{Accessibility, Lister, ProbeListItem},
        DebugProbeError, DebugProbeInfo, DebugProbeSelector, ProbeCreationError, WireProtocol,
    },
    BreakpointError, Core, CoreStatus, MemoryInterface, Permissions, Session,
};

use self::registers::{CORE_REGISTER_IDS, CORE_REGISTER_NAMES};
pub use super::ProbeSelector;
use super::{BreakpointKind, CoreRegisters, DebugWire, HaltReason, Probe, ProbeError, ProbeResult};

/// Time limit of halting, reset and other waits on the target, unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// GDB's SIGSEGV: the halt reason reported for a fault (exception vector catch, lockup), as GDB
/// servers do.
const SIGSEGV: u8 = 11;

/// Wording of a missing selector in errors: "no debug probe matches any USB debug probe".
const ANY_PROBE: &str = "any USB debug probe";

/// A USB debug probe found by [`list_probes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeListing {
    /// The probe's name as probe-rs gives it (e.g. `STLink V2`).
    pub identifier: String,
    /// USB vendor id.
    pub vid: u16,
    /// USB product id.
    pub pid: u16,
    /// USB serial number, when the probe has one.
    pub serial: Option<String>,
    /// False when the probe is there but this user may not open it (Linux: no udev rule).
    pub accessible: bool,
}

impl ProbeListing {
    /// The selector that opens exactly this probe (`VID:PID[:SERIAL]`), for the station config.
    pub fn selector(&self) -> ProbeSelector {
        ProbeSelector {
            vid: self.vid,
            pid: self.pid,
            serial: self.serial.clone(),
        }
    }
}

impl fmt::Display for ProbeListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.identifier, self.selector())?;
        if !self.accessible {
            f.write_str(" — permission denied: install the udev rules (docs/probes.md)")?;
        }
        Ok(())
    }
}

impl From<&ProbeListItem> for ProbeListing {
    fn from(item: &ProbeListItem) -> Self {
        ProbeListing {
            identifier: item.info.identifier.clone(),
            vid: item.info.vendor_id,
            pid: item.info.product_id,
            serial: item.info.serial_number.clone(),
            accessible: item.accessibility == Accessibility::Accessible,
        }
    }
}

/// The USB debug probes probe-rs sees now (empty when there are none, or no USB at all).
pub fn list_probes() -> Vec<ProbeListing> {
    Lister::new()
        .list_all_with_access()
        .iter()
        .map(ProbeListing::from)
        .collect()
}

/// A USB debug probe attached, through probe-rs, to core 0 of a Cortex-M chip.
pub struct ProbeRsProbe {
    session: Session,
    link: LinkContext,
    chip: String,
}

impl fmt::Debug for ProbeRsProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeRsProbe")
            .field("probe", &self.link.probe)
            .field("chip", &self.chip)
            .field("timeout", &self.link.timeout)
            .finish_non_exhaustive()
    }
}

impl ProbeRsProbe {
    /// Opens the probe `selector` picks (`VID:PID[:SERIAL]`; `None`: the only one connected),
    /// selects SWD at `speed_khz` (`None`: the probe's default) and attaches to `target_chip`, a
    /// probe-rs target name (`probe-rs chip list`, e.g. `STM32F103C8`). The core is left as it
    /// was: running or halted.
    ///
    /// The chip name is checked before any USB access, so a typo is reported as such.
    pub fn open(
        selector: Option<&str>,
        target_chip: &str,
        speed_khz: Option<u32>,
    ) -> ProbeResult<Self> {
        let selector = selector.map(str::parse::<ProbeSelector>).transpose()?;
        Self::open_with(selector.as_ref(), target_chip, DebugWire::Swd, speed_khz)
    }

    /// [`open`](Self::open) with a parsed selector and a choice of wire protocol (as a station
    /// configuration gives them).
    pub fn open_with(
        selector: Option<&ProbeSelector>,
        target_chip: &str,
        wire: DebugWire,
        speed_khz: Option<u32>,
    ) -> ProbeResult<Self> {
        let registry = Registry::from_builtin_families();
        let target = find_cortex_m_target(&registry, target_chip)?;
        let info = find_probe(&Lister::new(), selector)?;
        let name = probe_name(&info);
        let open_failed = |err: DebugProbeError| match err {
            DebugProbeError::ProbeCouldNotBeCreated(ProbeCreationError::NotFound) => {
                ProbeError::NoProbeFound {
                    selector: name.clone(),
                }
            }
            err => ProbeError::ProbeOpen {
                probe: name.clone(),
                detail: error_chain(&err),
            },
        };
        let mut probe = info.open().map_err(open_failed)?;
        probe
            .select_protocol(match wire {
                DebugWire::Swd => WireProtocol::Swd,
                DebugWire::Jtag => WireProtocol::Jtag,
            })
            .map_err(open_failed)?;
        if let Some(khz) = speed_khz {
            let actual = probe.set_speed(khz).map_err(open_failed)?;
            tracing::debug!(probe = %name, requested_khz = khz, actual_khz = actual, ?wire, "debug wire speed set");
        }
        let chip = target.name.clone();
        let session = probe
            .attach_with_registry(target, Permissions::default(), &registry)
            .map_err(|err| ProbeError::Attach {
                probe: name.clone(),
                chip: chip.clone(),
                detail: error_chain(&err),
            })?;
        tracing::info!(probe = %name, %chip, "attached through probe-rs");
        Ok(ProbeRsProbe {
            session,
            link: LinkContext {
                probe: name,
                timeout: DEFAULT_TIMEOUT,
            },
            chip,
        })
    }

    /// Sets the time limit of halting, reset and the other waits on the target.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.link.timeout = timeout;
    }

    /// The probe, as named in errors (`identifier (VID:PID:SERIAL)`).
    pub fn probe_name(&self) -> &str {
        &self.link.probe
    }

    /// The probe-rs name of the attached chip.
    pub fn chip(&self) -> &str {
        &self.chip
    }
}

/// Looks `chip` up among probe-rs's built-in targets; it must have a Cortex-M first core.
fn find_cortex_m_target(registry: &Registry, chip: &str) -> ProbeResult<Target> {
    let target = registry
        .get_target_by_name(chip)
        .map_err(|err| ProbeError::UnknownChip {
            chip: chip.into(),
            detail: error_chain(&err),
        })?;
    match target.cores.first() {
        Some(core) if core.core_type.is_cortex_m() => Ok(target),
        other => Err(ProbeError::UnsupportedChip {
            chip: target.name.clone(),
            core: other.map_or_else(|| "no".into(), |core| format!("{:?}", core.core_type)),
        }),
    }
}

/// The one probe `selector` picks among those connected.
fn find_probe(lister: &Lister, selector: Option<&ProbeSelector>) -> ProbeResult<DebugProbeInfo> {
    let wanted = selector.map(DebugProbeSelector::from);
    let described = || selector.map_or_else(|| ANY_PROBE.to_owned(), ToString::to_string);
    let mut found = lister.list_with_access(wanted.as_ref());
    match found.len() {
        0 => Err(ProbeError::NoProbeFound {
            selector: described(),
        }),
        1 => {
            let item = found.remove(0);
            match item.accessibility {
                Accessibility::Accessible => Ok(item.info),
                Accessibility::PermissionDenied => Err(ProbeError::ProbeOpen {
                    probe: probe_name(&item.info),
                    detail: "permission denied on its USB device".into(),
                }),
            }
        }
        count => Err(ProbeError::AmbiguousProbe {
            selector: described(),
            count,
            candidates: found
                .iter()
                .map(|item| probe_name(&item.info))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// `identifier (VID:PID[:SERIAL])`.
fn probe_name(info: &DebugProbeInfo) -> String {
    let selector = ProbeSelector {
        vid: info.vendor_id,
        pid: info.product_id,
        serial: info.serial_number.clone(),
    };
    format!("{} ({selector})", info.identifier)
}

/// An error and its sources as one line (`a: b: c`), skipping sources already in the text.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What a probe-rs error means to the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The target did not answer or reach a state in time.
    Timeout,
    /// The operation needs a halted core.
    CoreRunning,
    /// The target answered an access with a FAULT (unmapped or protected address).
    Refused,
    /// The USB link to the probe broke.
    UsbLost,
    /// Anything else.
    Other,
}

fn classify(err: &::probe_rs::Error) -> Failure {
    use ::probe_rs::Error;
    match err {
        Error::Timeout => return Failure::Timeout,
        Error::Arm(ArmError::CoreNotHalted) => return Failure::CoreRunning,
        _ => {}
    }
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return Failure::UsbLost;
        }
        match cause.downcast_ref::<DebugProbeError>() {
            Some(DebugProbeError::Usb(_)) => return Failure::UsbLost,
            Some(DebugProbeError::Timeout) => return Failure::Timeout,
            _ => {}
        }
        match cause.downcast_ref::<ArmError>() {
            Some(ArmError::Timeout) => return Failure::Timeout,
            Some(ArmError::CoreNotHalted) => return Failure::CoreRunning,
            _ => {}
        }
        if let Some(DapError::FaultResponse) = cause.downcast_ref::<DapError>() {
            return Failure::Refused;
        }
        source = cause.source();
    }
    Failure::Other
}

/// What errors need to name: the probe, and the time limit of waits.
#[derive(Debug, Clone)]
struct LinkContext {
    probe: String,
    timeout: Duration,
}

impl LinkContext {
    /// Maps a probe-rs error of `operation` ("reading register r3"). `expected` is what the target
    /// should have done within `self.timeout` ("halt") when the operation waits for it; other
    /// timeouts are probe-rs's own and reported as a link failure.
    fn fail(&self, operation: &str, expected: Option<&str>, err: ::probe_rs::Error) -> ProbeError {
        let detail = || error_chain(&err);
        match (classify(&err), expected) {
            (Failure::Timeout, Some(expected)) => ProbeError::TargetTimeout {
                operation: expected.into(),
                after: self.timeout,
            },
            (Failure::CoreRunning, _) => ProbeError::TargetRunning {
                operation: operation.into(),
            },
            (Failure::Refused, _) => ProbeError::TargetRefused {
                operation: operation.into(),
                detail: detail(),
            },
            (Failure::UsbLost, _) => ProbeError::ProbeDisconnected {
                probe: self.probe.clone(),
                operation: operation.into(),
                detail: detail(),
            },
            (Failure::Timeout | Failure::Other, _) => ProbeError::DebugLink {
                probe: self.probe.clone(),
                operation: operation.into(),
                detail: detail(),
            },
        }
    }

    /// Core 0 of the session.
    fn core<'s>(&self, session: &'s mut Session, operation: &str) -> ProbeResult<Core<'s>> {
        session
            .core(0)
            .map_err(|err| self.fail(operation, None, err))
    }

    /// The core's state, read from the target (probe-rs otherwise answers from its cache).
    fn status(&self, core: &mut Core<'_>, operation: &str) -> ProbeResult<CoreStatus> {
        core.status().map_err(|err| self.fail(operation, None, err))
    }

    /// Fails with [`ProbeError::TargetRunning`] unless the core is halted.
    fn ensure_halted(&self, core: &mut Core<'_>, operation: &str) -> ProbeResult<()> {
        match self.status(core, operation)? {
            CoreStatus::Halted(_) => Ok(()),
            _ => Err(ProbeError::TargetRunning {
                operation: operation.into(),
            }),
        }
    }
}

/// The station's halt reason for a probe-rs one, in GDB terms.
fn halt_reason(reason: ::probe_rs::HaltReason) -> HaltReason {
    use ::probe_rs::HaltReason as Why;
    match reason {
        Why::Breakpoint(_) | Why::Step | Why::Watchpoint | Why::Multiple => HaltReason::Trap,
        Why::Exception => HaltReason::Signal(SIGSEGV),
        Why::Request | Why::External | Why::Unknown => HaltReason::Interrupted,
    }
}

/// The address an FPB comparator matches: Thumb addresses with bit 0 cleared.
fn breakpoint_address(addr: u32) -> u64 {
    u64::from(addr & !1)
}

fn software_breakpoints_unsupported() -> ProbeError {
    ProbeError::Unsupported {
        operation: "software breakpoints (the probe-rs backend sets hardware breakpoints only)"
            .into(),
    }
}

impl Probe for ProbeRsProbe {
    fn halt(&mut self) -> ProbeResult<HaltReason> {
        let operation = "halting the core";
        let link = &self.link;
        let mut core = link.core(&mut self.session, operation)?;
        let reason = match link.status(&mut core, operation)? {
            CoreStatus::Halted(reason) => return Ok(halt_reason(reason)),
            CoreStatus::LockedUp => HaltReason::Signal(SIGSEGV),
            _ => HaltReason::Interrupted,
        };
        core.halt(link.timeout)
            .map_err(|err| link.fail(operation, Some("halt"), err))?;
        Ok(reason)
    }

    fn resume(&mut self) -> ProbeResult<()> {
        let operation = "resuming the core";
        let link = &self.link;
        let mut core = link.core(&mut self.session, operation)?;
        if matches!(
            link.status(&mut core, operation)?,
            CoreStatus::Running | CoreStatus::Sleeping
        ) {
            return Ok(());
        }
        core.run().map_err(|err| link.fail(operation, None, err))
    }

    /// A locked-up core (a fault inside the fault handler) counts as halted by a fault: it is
    /// halted and [`HaltReason::Signal`]`(11)` returned.
    fn wait_for_halt(&mut self, timeout: Duration) -> ProbeResult<HaltReason> {
        let operation = "waiting for the core to halt";
        let link = &self.link;
        let mut core = link.core(&mut self.session, operation)?;
        let waited = core.wait_for_core_halted(timeout);
        let status = link.status(&mut core, operation)?;
        match (status, waited) {
            (CoreStatus::Halted(reason), _) => Ok(halt_reason(reason)),
            (CoreStatus::LockedUp, _) => {
                core.halt(link.timeout)
                    .map_err(|err| link.fail("halting a locked-up core", Some("halt"), err))?;
                Ok(HaltReason::Signal(SIGSEGV))
            }
            (_, Err(err)) if classify(&err) != Failure::Timeout => {
                Err(link.fail(operation, None, err))
            }
            _ => Err(ProbeError::TargetTimeout {
                operation: "halt (no breakpoint, fault or halt request)".into(),
                after: timeout,
            }),
        }
    }

    fn step(&mut self) -> ProbeResult<HaltReason> {
        let operation = "single-stepping";
        let link = &self.link;
        let mut core = link.core(&mut self.session, operation)?;
        link.ensure_halted(&mut core, operation)?;
        core.step()
            .map_err(|err| link.fail(operation, Some("halt after one step"), err))?;
        Ok(HaltReason::Trap)
    }

    fn reset(&mut self) -> ProbeResult<()> {
        let operation = "resetting the target";
        let link = &self.link;
        let mut core = link.core(&mut self.session, operation)?;
        core.reset_and_halt(link.timeout)
            .map_err(|err| link.fail(operation, Some("halt after reset"), err))?;
        Ok(())
    }

    fn read_memory(&mut self, addr: u32, buf: &mut [u8]) -> ProbeResult<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let operation = format!("reading {} bytes at {addr:#010x}", buf.len());
        let link = &self.link;
        let mut core = link.core(&mut self.session, &operation)?;
        core.read(u64::from(addr), buf)
            .map_err(|err| link.fail(&operation, None, err))
    }

    fn write_memory(&mut self, addr: u32, data: &[u8]) -> ProbeResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        let operation = format!("writing {} bytes at {addr:#010x}", data.len());
        let link = &self.link;
        let mut core = link.core(&mut self.session, &operation)?;
        core.write(u64::from(addr), data)
            .and_then(|()| core.flush())
            .map_err(|err| link.fail(&operation, None, err))
    }

    fn read_registers(&mut self) -> ProbeResult<CoreRegisters> {
        let link = &self.link;
        let mut core = link.core(&mut self.session, "reading the core registers")?;
        link.ensure_halted(&mut core, "reading the core registers")?;
        let mut words = [0; CoreRegisters::WORDS];
        for ((word, id), name) in words
            .iter_mut()
            .zip(CORE_REGISTER_IDS)
            .zip(CORE_REGISTER_NAMES)
        {
            *word = core
                .read_core_reg::<u32>(id)
                .map_err(|err| link.fail(&format!("reading register {name}"), None, err))?;
        }
        Ok(CoreRegisters::from_words(&words))
    }

    fn write_registers(&mut self, regs: &CoreRegisters) -> ProbeResult<()> {
        let link = &self.link;
        let mut core = link.core(&mut self.session, "writing the core registers")?;
        link.ensure_halted(&mut core, "writing the core registers")?;
        for ((word, id), name) in regs
            .to_words()
            .into_iter()
            .zip(CORE_REGISTER_IDS)
            .zip(CORE_REGISTER_NAMES)
        {
            core.write_core_reg(id, word)
                .map_err(|err| link.fail(&format!("writing register {name}"), None, err))?;
        }
        Ok(())
    }

    fn set_breakpoint(&mut self, addr: u32, kind: BreakpointKind) -> ProbeResult<()> {
        if kind == BreakpointKind::Software {
            return Err(software_breakpoints_unsupported());
        }
        let operation = format!("setting a hardware breakpoint at {addr:#010x}");
        let link = &self.link;
        let mut core = link.core(&mut self.session, &operation)?;
        core.set_hw_breakpoint(breakpoint_address(addr))
            .map_err(|err| link.fail(&operation, None, err))
    }

    /// Removing a breakpoint that is not set succeeds: the end state is the one asked for.
    fn clear_breakpoint(&mut self, addr: u32, kind: BreakpointKind) -> ProbeResult<()> {
        if kind == BreakpointKind::Software {
            return Err(software_breakpoints_unsupported());
        }
        let operation = format!("clearing the hardware breakpoint at {addr:#010x}");
        let link = &self.link;
        let mut core = link.core(&mut self.session, &operation)?;
        match core.clear_hw_breakpoint(breakpoint_address(addr)) {
            Err(::probe_rs::Error::BreakpointOperation(BreakpointError::NotFound(_))) => Ok(()),
            result => result.map_err(|err| link.fail(&operation, None, err)),
        }
    }

    /// SWD reads memory through the memory AP without stopping the core.
    fn read_memory_while_running(&mut self, addr: u32, buf: &mut [u8]) -> ProbeResult<()> {
        self.read_memory(addr, buf)
    }
}

impl From<&ProbeSelector> for DebugProbeSelector {
    fn from(selector: &ProbeSelector) -> Self {
        DebugProbeSelector {
            vendor_id: selector.vid,
            product_id: selector.pid,
            interface: None,
            serial_number: selector.serial.clone(),
        }
    }
}
