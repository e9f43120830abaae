//! Turns with the RAM flash loader through its mailbox (`flashgate_protocol::mailbox`): write a
//! frame into `in`, let the loader run to its `host_yield` breakpoint, read `out`. The frames are
//! opaque here; [`super::FlashLoaderSession`] seals and opens them. QEMU's gdbstub (like many GDB
//! servers) is all-stop, so memory is only touched while the core is halted.

use std::time::{Duration, Instant};

use flashgate_protocol::codec::Codec;
use flashgate_protocol::layout::{LOADER_BASE, LOADER_STACK_TOP, MAILBOX_ADDR, PARAMS_ADDR};
use flashgate_protocol::mailbox::{self, State};
use flashgate_protocol::provisioning::{LoaderHello, PARAMS_LEN};
use flashgate_protocol::ErrorCode;

use crate::probe::{BreakpointKind, HaltReason, Probe};
use crate::provisioning::{LoaderImage, PhaseTimings, ProvisioningError, TargetFault};

/// xPSR with only the Thumb bit: the state a Cortex-M core must run in.
const XPSR_THUMB: u32 = 0x0100_0000;
/// Mailbox bytes read after every turn: header and the start of `out` (a reply fits).
const FIRST_READ: usize = mailbox::HEADER_LEN + 64;

/// A running loader on one target, one turn at a time.
pub struct LoaderMailbox<'p, P: Probe + ?Sized> {
    probe: &'p mut P,
    yield_addr: u32,
    step_timeout: Duration,
    timings: PhaseTimings,
}

impl<'p, P: Probe + ?Sized> LoaderMailbox<'p, P> {
    /// Halts the target, writes the loader and its parameter block, starts it and waits for its
    /// hello (the loader's first turn).
    pub fn boot(
        probe: &'p mut P,
        loader: &LoaderImage,
        params: &[u8; PARAMS_LEN],
        step_timeout: Duration,
    ) -> Result<(Self, LoaderHello), ProvisioningError> {
        let header = *loader.header();
        let yield_addr = header.host_yield & !1;
        let mut timings = PhaseTimings::default();
        let link = Instant::now();
        probe.halt()?;
        probe.write_memory(LOADER_BASE, loader.bytes())?;
        verify_written(probe, loader)?;
        probe.write_memory(PARAMS_ADDR, params)?;
        // A stale mailbox from an earlier run must not be mistaken for this loader's hello.
        probe.write_memory(MAILBOX_ADDR, &[0u8; mailbox::HEADER_LEN])?;
        let mut regs = probe.read_registers()?;
        regs.sp = LOADER_STACK_TOP;
        regs.pc = header.entry & !1;
        regs.lr = 0xFFFF_FFFF;
        regs.xpsr = XPSR_THUMB;
        probe.write_registers(&regs)?;
        probe.set_breakpoint(yield_addr, BreakpointKind::Hardware)?;
        timings.link += link.elapsed();

        let waited = Instant::now();
        probe.resume()?;
        let reason = probe.wait_for_halt(step_timeout)?;
        timings.target += waited.elapsed();
        let mut this = Self {
            probe,
            yield_addr,
            step_timeout,
            timings,
        };
        let (header, out) = this.read_turn("loader start", reason)?;
        this.timings.handshake_ticks = header.handshake_ticks;
        if header.state != State::Hello {
            return Err(refusal("loader start", &header));
        }
        let hello = LoaderHello::read_bytes(&out).map_err(|code| TargetFault::Unverified {
            what: "loader hello",
            code,
        })?;
        Ok((this, hello))
    }

    /// One turn: `frame` into `in`, run to the next yield, and `out` back when the loader
    /// replied (its refusal, with its code, otherwise).
    pub fn exchange(
        &mut self,
        request: &'static str,
        frame: &[u8],
    ) -> Result<Vec<u8>, ProvisioningError> {
        let link = Instant::now();
        self.probe
            .write_memory(MAILBOX_ADDR + mailbox::IN_OFFSET as u32, frame)?;
        // state, error, out_len := 0 and in_len := frame length, in one write.
        let mut words = [0u8; 16];
        words[12..].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.probe
            .write_memory(MAILBOX_ADDR + mailbox::offset::STATE as u32, &words)?;
        self.timings.link += link.elapsed();

        let waited = Instant::now();
        self.probe
            .resume_from_breakpoint(self.yield_addr, BreakpointKind::Hardware)?;
        let reason = self.probe.wait_for_halt(self.step_timeout)?;
        self.timings.target += waited.elapsed();

        let (header, out) = self.read_turn(request, reason)?;
        self.timings.target_flash_ticks = u64::from(header.flash_ticks);
        self.timings.target_busy_ticks = u64::from(header.busy_ticks);
        if header.state != State::Reply {
            return Err(refusal(request, &header));
        }
        Ok(out)
    }

    /// Adds the station's own work (sealing, opening, checking) to the timings.
    pub fn add_station_time(&mut self, spent: Duration) {
        self.timings.station += spent;
    }

    /// Counts the loader's work since `before` as one bootloader `ImageData` frame of `bytes`.
    pub fn count_image_frame(&mut self, before: &PhaseTimings, bytes: usize) {
        self.timings.count_image_frame(before, bytes);
    }

    /// Time spent so far.
    pub fn timings(&self) -> PhaseTimings {
        self.timings
    }

    /// Leaves the target halted where it is and removes the breakpoint.
    pub fn finish(self) -> Result<PhaseTimings, ProvisioningError> {
        self.probe
            .clear_breakpoint(self.yield_addr, BreakpointKind::Hardware)?;
        Ok(self.timings)
    }

    /// After the target halted: checks why, reads the mailbox header and output.
    fn read_turn(
        &mut self,
        request: &'static str,
        reason: HaltReason,
    ) -> Result<(mailbox::Header, Vec<u8>), ProvisioningError> {
        if reason != HaltReason::Trap {
            let pc = self.probe.read_registers().map(|r| r.pc).unwrap_or(0);
            return Err(TargetFault::UnexpectedHalt {
                request,
                reason,
                pc,
            }
            .into());
        }
        let link = Instant::now();
        let mut buf = [0u8; FIRST_READ];
        self.probe.read_memory(MAILBOX_ADDR, &mut buf)?;
        let header = mailbox::Header::decode(&buf).map_err(|code| TargetFault::Unverified {
            what: "mailbox",
            code,
        })?;
        let mut out = buf[mailbox::OUT_OFFSET..].to_vec();
        if header.out_len > out.len() {
            out.resize(header.out_len, 0);
            let rest_addr = MAILBOX_ADDR + FIRST_READ as u32;
            self.probe
                .read_memory(rest_addr, &mut out[FIRST_READ - mailbox::OUT_OFFSET..])?;
        }
        out.truncate(header.out_len);
        self.timings.link += link.elapsed();
        Ok((header, out))
    }
}

/// Reads the loader back: the parameter block states its digest, and the loader does not
/// measure itself, so a write that did not land (a flaky link, a probe that dropped a packet)
/// is caught here, before the loader runs ([`ErrorCode::LoaderMismatch`]).
fn verify_written<P: Probe + ?Sized>(
    probe: &mut P,
    loader: &LoaderImage,
) -> Result<(), ProvisioningError> {
    let mut back = vec![0u8; loader.bytes().len()];
    probe.read_memory(LOADER_BASE, &mut back)?;
    if back != loader.bytes() {
        return Err(TargetFault::Unverified {
            what: "loader image read back",
            code: ErrorCode::LoaderMismatch,
        }
        .into());
    }
    Ok(())
}

fn refusal(request: &'static str, header: &mailbox::Header) -> ProvisioningError {
    match (header.state, header.error) {
        (State::Error, Some(code)) => ProvisioningError::TargetRefused { request, code },
        (State::Error, None) => TargetFault::UnknownCode {
            request,
            raw: header.error_raw,
        }
        .into(),
        _ => TargetFault::Unverified {
            what: "mailbox state",
            code: ErrorCode::UnexpectedMessage,
        }
        .into(),
    }
}
