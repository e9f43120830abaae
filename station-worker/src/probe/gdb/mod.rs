//! [`Probe`] over the GDB remote serial protocol (QEMU's gdbstub, OpenOCD, probe gdb servers).
//!
//! What it relies on (checked against QEMU 7.2, see `shared/EMULATED-TARGET.md`):
//! - `qSupported` gives `PacketSize`; every packet sent, framing included, stays within it.
//! - Memory: `m` reads of up to `PacketSize / 2` bytes (QEMU: 2048; an `Exx` makes the client
//!   retry with smaller reads), `M` hex writes, or `X` binary writes when a 0-length `X` probe
//!   answers `OK` (QEMU 7.2 answers empty, so it gets `M`).
//! - Registers through `g`/`G` (QEMU answers empty to `p`), 32-bit little-endian hex. Without a
//!   target description read, QEMU 7.2 answers GDB's legacy ARM block (r0–r15, 8 FPA registers
//!   of 12 bytes, fps, xPSR: 168 bytes); with one, r0–r15 then xPSR. Both are recognised by
//!   length. `G` rewrites the whole `g` block so other registers keep their values.
//! - Breakpoints `Z0`/`Z1` with kind 2 (Thumb); run control `c`, `s`, `\x03`; stop replies
//!   `T`/`S`/`W`/`X`; reset through `qRcmd` (`monitor system_reset` on QEMU).
//! - All-stop only: while the target runs, the only thing sent is `\x03`, since QEMU would stop
//!   the target for any other packet. Operations that need a halted target say so.

mod link;
pub mod packet;
mod tap;

use std::{
    fmt::Write as _,
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

pub use link::Transport;
pub use tap::{Direction, LinkTap, TrafficRecorder};

use self::{
    link::Link,
    packet::{
        error_code, escape_into, hex_into, needs_escape, parse_hex_u64, unhex, unhex_into,
        FRAMING_LEN,
    },
};
use super::{BreakpointKind, CoreRegisters, HaltReason, Probe, ProbeError, ProbeResult};

/// `PacketSize` assumed when the server does not advertise one.
const DEFAULT_PACKET_SIZE: usize = 256;
/// Smallest `m` read tried after `Exx` answers before the error is reported.
const MIN_READ_CHUNK: usize = 4;
/// Hex characters of the core registers in a `g` reply (17 × 32 bit).
const CORE_REGS_HEX: usize = CoreRegisters::WORDS * 8;
/// Hex length of GDB's legacy ARM `g` block (no target description read): r0–r15, eight 96-bit
/// FPA registers, fps, then cpsr/xPSR. QEMU 7.2 answers this until `qXfer:features` is read.
const LEGACY_G_HEX: usize = (16 * 4 + 8 * 12 + 4 + 4) * 2;

/// Where xPSR sits in a `g` block of `len` hex characters: last word of the legacy layout, or
/// right after r15 in the M-profile target-description layout (`org.gnu.gdb.arm.m-profile`).
fn xpsr_offset(len: usize) -> Option<usize> {
    match len {
        LEGACY_G_HEX => Some(LEGACY_G_HEX - 8),
        n if n >= CORE_REGS_HEX && n % 2 == 0 => Some(16 * 8),
        _ => None,
    }
}

/// How to talk to the server.
#[derive(Clone)]
pub struct GdbProbeOptions {
    /// Time limit of each operation (connect, one request/answer, a step, a halt).
    pub timeout: Duration,
    /// Receives all traffic, byte for byte.
    pub tap: Option<Arc<dyn LinkTap>>,
    /// The server's own monitor command that resets the target and leaves it halted; it differs
    /// between servers (see [`ResetCommand`]).
    pub reset_command: ResetCommand,
}

/// How a GDB server spells "reset and halt" in its monitor (`qRcmd`) language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetCommand {
    /// QEMU's gdbstub: `system_reset`.
    Qemu,
    /// OpenOCD: `reset halt`.
    OpenOcd,
    /// SEGGER J-Link GDB Server: `reset` (it halts after reset by default).
    JLink,
    /// Black Magic Probe: `reset` is not a monitor command there; it resets on `vRun`/attach,
    /// so the station power-cycles or re-attaches instead. Configured explicitly.
    Custom(String),
}

impl ResetCommand {
    /// The monitor command text.
    pub fn command(&self) -> &str {
        match self {
            ResetCommand::Qemu => "system_reset",
            ResetCommand::OpenOcd => "reset halt",
            ResetCommand::JLink => "reset",
            ResetCommand::Custom(c) => c,
        }
    }
}

impl Default for GdbProbeOptions {
    fn default() -> Self {
        GdbProbeOptions {
            timeout: Duration::from_secs(5),
            tap: None,
            reset_command: ResetCommand::Qemu,
        }
    }
}

impl std::fmt::Debug for GdbProbeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdbProbeOptions")
            .field("timeout", &self.timeout)
            .field("tap", &self.tap.is_some())
            .finish()
    }
}

/// What the server said it supports in its `qSupported` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFeatures {
    /// Largest packet the server accepts (`PacketSize`, hex in the answer).
    pub packet_size: usize,
    /// `qXfer:features:read+`: a target description can be read.
    pub target_description: bool,
    /// `vContSupported+`.
    pub vcont: bool,
    /// `QStartNoAckMode+`.
    pub no_ack_mode: bool,
}

impl ServerFeatures {
    /// Parses a `qSupported` answer (`name=value;name+;name-;…`).
    pub fn parse(reply: &[u8]) -> Self {
        let mut features = ServerFeatures {
            packet_size: DEFAULT_PACKET_SIZE,
            target_description: false,
            vcont: false,
            no_ack_mode: false,
        };
        for item in reply.split(|&b| b == b';') {
            match item {
                b"qXfer:features:read+" => features.target_description = true,
                b"vContSupported+" => features.vcont = true,
                b"QStartNoAckMode+" => features.no_ack_mode = true,
                _ => {
                    if let Some(size) = item.strip_prefix(b"PacketSize=") {
                        if let Some(size) = parse_hex_u64(size) {
                            // Below a few dozen bytes nothing useful fits; cap absurd sizes too.
                            features.packet_size = (size as usize).clamp(64, 1 << 20);
                        }
                    }
                }
            }
        }
        features
    }
}

/// Parses a stop reply (`T05…`, `S05`, `W00`, `X09`).
pub fn parse_stop_reply(reply: &[u8]) -> Option<HaltReason> {
    let (&kind, rest) = reply.split_first()?;
    let number = u8::try_from(parse_hex_u64(rest.get(..2)?)?).ok()?;
    match kind {
        b'T' | b'S' => Some(match number {
            5 => HaltReason::Trap,
            2 => HaltReason::Interrupted,
            n => HaltReason::Signal(n),
        }),
        b'W' => Some(HaltReason::Exited(number)),
        b'X' => Some(HaltReason::Terminated(number)),
        _ => None,
    }
}

/// A debug probe reached through a GDB server.
pub struct GdbProbe<T: Transport = TcpStream> {
    link: Link<T>,
    features: ServerFeatures,
    timeout: Duration,
    /// `None` until the first write probes for `X` support.
    binary_writes: Option<bool>,
    read_chunk: usize,
    running: bool,
    last_halt: HaltReason,
    console: Vec<u8>,
    scratch: Vec<u8>,
    reset_command: ResetCommand,
}

impl<T: Transport> std::fmt::Debug for GdbProbe<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdbProbe")
            .field("server", &self.link.server())
            .field("features", &self.features)
            .field("binary_writes", &self.binary_writes)
            .field("running", &self.running)
            .finish()
    }
}

impl GdbProbe<TcpStream> {
    /// Connects to the GDB server at `addr` (TCP, `TCP_NODELAY`), with `timeout` for the connect
    /// and for every later operation.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> ProbeResult<Self> {
        Self::connect_with(
            addr,
            GdbProbeOptions {
                timeout,
                ..GdbProbeOptions::default()
            },
        )
    }

    /// Connects with options (a traffic tap, …).
    pub fn connect_with(addr: SocketAddr, options: GdbProbeOptions) -> ProbeResult<Self> {
        let server = addr.to_string();
        let connect_err = |source| ProbeError::Connect {
            server: server.clone(),
            source,
        };
        let stream = TcpStream::connect_timeout(&addr, options.timeout).map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        stream
            .set_write_timeout(Some(options.timeout))
            .map_err(connect_err)?;
        Self::over(stream, server, options)
    }
}

impl<T: Transport> GdbProbe<T> {
    /// Speaks the protocol over an already open stream (`server` names it in errors); does the
    /// `qSupported` handshake and asks why the target is halted.
    pub fn over(
        transport: T,
        server: impl Into<String>,
        options: GdbProbeOptions,
    ) -> ProbeResult<Self> {
        let mut probe = GdbProbe {
            reset_command: options.reset_command.clone(),
            link: Link::new(transport, server.into(), options.tap),
            features: ServerFeatures::parse(b""),
            timeout: options.timeout,
            binary_writes: None,
            read_chunk: DEFAULT_PACKET_SIZE / 2,
            running: false,
            last_halt: HaltReason::Interrupted,
            console: Vec::new(),
            scratch: Vec::with_capacity(8192),
        };
        let op = "negotiating features (qSupported)";
        let mut reply = probe.request(b"qSupported:swbreak+;hwbreak+;vContSupported+", op)?;
        // Attaching to a running target: QEMU halts it and sends a stop reply of its own
        // (`T02…`) that may arrive before the answer.
        let deadline = Instant::now() + probe.timeout;
        while parse_stop_reply(&reply).is_some() {
            reply = probe.link.recv_packet(deadline, probe.timeout, op)?;
        }
        probe.features = ServerFeatures::parse(&reply);
        probe.read_chunk = (probe.features.packet_size / 2) & !3;
        if probe.features.no_ack_mode {
            let reply = probe.request(b"QStartNoAckMode", "switching to no-ack mode")?;
            if reply == b"OK" {
                probe.link.set_no_ack(true);
            }
        }
        let op = "asking why the target is halted (?)";
        let reply = probe.request(b"?", op)?;
        probe.last_halt = parse_stop_reply(&reply).ok_or_else(|| probe.protocol(op, &reply))?;
        Ok(probe)
    }

    /// What the server supports.
    pub fn features(&self) -> &ServerFeatures {
        &self.features
    }

    /// The time limit of each operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the time limit of each operation.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// True after [`resume`](Probe::resume) until a halt is seen.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Whether memory writes use binary `X` packets (probes the server on first call).
    pub fn binary_writes(&mut self, addr: u32) -> ProbeResult<bool> {
        if let Some(known) = self.binary_writes {
            return Ok(known);
        }
        self.ensure_halted("probing for binary writes")?;
        let reply = self.request(
            format!("X{addr:x},0:").as_bytes(),
            "probing for binary writes (X)",
        )?;
        let supported = reply == b"OK";
        self.binary_writes = Some(supported);
        Ok(supported)
    }

    /// Takes the console output (`O` packets) the server sent so far.
    pub fn take_console_output(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.console)).into_owned()
    }

    /// Sends one raw packet payload and returns the answer (for diagnostics and tests).
    pub fn raw_request(&mut self, payload: &[u8]) -> ProbeResult<Vec<u8>> {
        self.ensure_halted("sending a raw packet")?;
        self.request(payload, "sending a raw packet")
    }

    fn request(&mut self, payload: &[u8], operation: &str) -> ProbeResult<Vec<u8>> {
        self.link.request(payload, operation, self.timeout)
    }

    fn protocol(&self, operation: &str, reply: &[u8]) -> ProbeError {
        let shown: String = String::from_utf8_lossy(&reply[..reply.len().min(80)]).into_owned();
        ProbeError::Protocol {
            server: self.link.server().into(),
            operation: operation.into(),
            detail: format!("answer {shown:?}"),
        }
    }

    fn refused(&self, operation: &str, code: u8) -> ProbeError {
        ProbeError::ErrorReply {
            server: self.link.server().into(),
            operation: operation.into(),
            code,
        }
    }

    /// Turns `OK` / `Exx` / empty into a result.
    fn expect_ok(&self, reply: &[u8], operation: &str) -> ProbeResult<()> {
        match reply {
            b"OK" => Ok(()),
            b"" => Err(ProbeError::Unsupported {
                operation: operation.into(),
            }),
            _ => Err(match error_code(reply) {
                Some(code) => self.refused(operation, code),
                None => self.protocol(operation, reply),
            }),
        }
    }

    fn ensure_halted(&self, operation: &str) -> ProbeResult<()> {
        if self.running {
            return Err(ProbeError::TargetRunning {
                operation: operation.into(),
            });
        }
        Ok(())
    }

    /// Waits for a stop reply; console output on the way is kept.
    fn wait_stop(&mut self, timeout: Duration, operation: &str) -> ProbeResult<HaltReason> {
        let deadline = Instant::now() + timeout;
        loop {
            let reply = self.link.recv_packet(deadline, timeout, operation)?;
            if reply.first() == Some(&b'O') && reply != b"OK" {
                if let Some(text) = unhex(&reply[1..]) {
                    self.console.extend_from_slice(&text);
                    continue;
                }
            }
            let reason =
                parse_stop_reply(&reply).ok_or_else(|| self.protocol(operation, &reply))?;
            self.running = false;
            self.last_halt = reason;
            return Ok(reason);
        }
    }

    fn read_g(&mut self, operation: &str) -> ProbeResult<Vec<u8>> {
        self.ensure_halted(operation)?;
        let reply = self.request(b"g", operation)?;
        if let Some(code) = error_code(&reply) {
            return Err(self.refused(operation, code));
        }
        if reply.len() < CORE_REGS_HEX || reply.len() % 2 != 0 {
            return Err(self.protocol(operation, &reply));
        }
        Ok(reply)
    }

    fn write_chunk(&mut self, addr: u32, data: &[u8], binary: bool) -> ProbeResult<usize> {
        let budget = self.features.packet_size - FRAMING_LEN;
        let kind = if binary { 'X' } else { 'M' };
        // Header length with the longest count that could fit.
        let header_max = format!("{kind}{addr:x},{:x}:", budget).len();
        let room = budget.saturating_sub(header_max);
        let count = if binary {
            let mut used = 0;
            let mut count = 0;
            for &b in data {
                let cost = if needs_escape(b) { 2 } else { 1 };
                if used + cost > room {
                    break;
                }
                used += cost;
                count += 1;
            }
            count
        } else {
            let fit = room / 2;
            let fit = if fit >= 8 { fit & !3 } else { fit };
            fit.min(data.len())
        };
        if count == 0 {
            return Err(ProbeError::Protocol {
                server: self.link.server().into(),
                operation: "writing memory".into(),
                detail: format!(
                    "PacketSize {} leaves no room for data",
                    self.features.packet_size
                ),
            });
        }
        let chunk = &data[..count];
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        let _ = write!(FmtBytes(&mut payload), "{kind}{addr:x},{count:x}:");
        if binary {
            escape_into(chunk, &mut payload);
        } else {
            hex_into(chunk, &mut payload);
        }
        let operation = format!("writing {count} bytes at {addr:#010x}");
        let reply = self.request(&payload, &operation);
        self.scratch = payload;
        let reply = reply?;
        self.expect_ok(&reply, &operation)?;
        Ok(count)
    }
}

/// `fmt::Write` into a byte vector (formats packet headers without an extra allocation).
struct FmtBytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for FmtBytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl<T: Transport> Probe for GdbProbe<T> {
    fn halt(&mut self) -> ProbeResult<HaltReason> {
        if !self.running {
            return Ok(self.last_halt);
        }
        let operation = "halting the target (interrupt)";
        self.link.send_raw(&[0x03], operation)?;
        self.wait_stop(self.timeout, operation)
    }

    fn resume(&mut self) -> ProbeResult<()> {
        if self.running {
            return Ok(());
        }
        self.link
            .send_packet(b"c", "resuming the target (c)", self.timeout)?;
        self.running = true;
        Ok(())
    }

    fn wait_for_halt(&mut self, timeout: Duration) -> ProbeResult<HaltReason> {
        if !self.running {
            return Ok(self.last_halt);
        }
        self.wait_stop(timeout, "waiting for the target to halt")
    }

    fn step(&mut self) -> ProbeResult<HaltReason> {
        let operation = "single-stepping (s)";
        self.ensure_halted(operation)?;
        self.link.send_packet(b"s", operation, self.timeout)?;
        self.running = true;
        self.wait_stop(self.timeout, operation)
    }

    fn reset(&mut self) -> ProbeResult<()> {
        self.ensure_halted("resetting the target")?;
        let command = self.reset_command.command().to_owned();
        self.monitor(&command).map(drop)
    }

    fn read_memory(&mut self, addr: u32, buf: &mut [u8]) -> ProbeResult<()> {
        self.ensure_halted("reading memory")?;
        let full_chunk = (self.features.packet_size / 2) & !3;
        let mut done = 0;
        let mut request = Vec::with_capacity(32);
        while done < buf.len() {
            let at = addr.wrapping_add(done as u32);
            let count = self.read_chunk.min(buf.len() - done);
            request.clear();
            let _ = write!(FmtBytes(&mut request), "m{at:x},{count:x}");
            let operation = || format!("reading {count} bytes at {at:#010x}");
            let reply = self.link.request(&request, &operation(), self.timeout)?;
            if let Some(code) = error_code(&reply) {
                if count > MIN_READ_CHUNK {
                    // QEMU refuses reads above 2048 bytes with E22: retry smaller.
                    // Largest power of two below `count`.
                    let smaller = 1usize << (usize::BITS - 1 - (count - 1).leading_zeros());
                    self.read_chunk = smaller.max(MIN_READ_CHUNK);
                    continue;
                }
                self.read_chunk = full_chunk;
                return Err(self.refused(&operation(), code));
            }
            let got = reply.len() / 2;
            if reply.is_empty() || reply.len() % 2 != 0 || got > count {
                return Err(self.protocol(&operation(), &reply));
            }
            if unhex_into(&reply, &mut buf[done..done + got]).is_none() {
                return Err(self.protocol(&operation(), &reply));
            }
            done += got;
        }
        Ok(())
    }

    fn write_memory(&mut self, addr: u32, data: &[u8]) -> ProbeResult<()> {
        self.ensure_halted("writing memory")?;
        if data.is_empty() {
            return Ok(());
        }
        let binary = self.binary_writes(addr)?;
        let mut done = 0;
        while done < data.len() {
            done += self.write_chunk(addr.wrapping_add(done as u32), &data[done..], binary)?;
        }
        Ok(())
    }

    fn read_registers(&mut self) -> ProbeResult<CoreRegisters> {
        let operation = "reading registers (g)";
        let g = self.read_g(operation)?;
        let xpsr_at = xpsr_offset(g.len()).ok_or_else(|| self.protocol(operation, &g))?;
        let mut words = [0u32; CoreRegisters::WORDS];
        for (i, word) in words.iter_mut().enumerate() {
            let at = if i < 16 { i * 8 } else { xpsr_at };
            let mut le = [0u8; 4];
            unhex_into(&g[at..at + 8], &mut le).ok_or_else(|| self.protocol(operation, &g))?;
            *word = u32::from_le_bytes(le);
        }
        Ok(CoreRegisters::from_words(&words))
    }

    fn write_registers(&mut self, regs: &CoreRegisters) -> ProbeResult<()> {
        let operation = "writing registers (G)";
        // Rewrite the whole `g` block so registers beyond the core ones keep their values.
        let g = self.read_g(operation)?;
        let xpsr_at = xpsr_offset(g.len()).ok_or_else(|| self.protocol(operation, &g))?;
        let mut block = g;
        let words = regs.to_words();
        for (i, word) in words.iter().enumerate() {
            let at = if i < 16 { i * 8 } else { xpsr_at };
            let mut hex = Vec::with_capacity(8);
            hex_into(&word.to_le_bytes(), &mut hex);
            block[at..at + 8].copy_from_slice(&hex);
        }
        let mut payload = Vec::with_capacity(1 + block.len());
        payload.push(b'G');
        payload.extend_from_slice(&block);
        let reply = self.request(&payload, operation)?;
        self.expect_ok(&reply, operation)
    }

    fn set_breakpoint(&mut self, addr: u32, kind: BreakpointKind) -> ProbeResult<()> {
        let (code, name) = breakpoint_code(kind);
        let operation = format!("setting a {name} breakpoint at {addr:#010x}");
        self.ensure_halted(&operation)?;
        let reply = self.request(format!("Z{code},{addr:x},2").as_bytes(), &operation)?;
        self.expect_ok(&reply, &operation)
    }

    fn clear_breakpoint(&mut self, addr: u32, kind: BreakpointKind) -> ProbeResult<()> {
        let (code, name) = breakpoint_code(kind);
        let operation = format!("removing a {name} breakpoint at {addr:#010x}");
        self.ensure_halted(&operation)?;
        let reply = self.request(format!("z{code},{addr:x},2").as_bytes(), &operation)?;
        self.expect_ok(&reply, &operation)
    }

    fn monitor(&mut self, command: &str) -> ProbeResult<String> {
        let operation = format!("running monitor command {command:?} (qRcmd)");
        self.ensure_halted(&operation)?;
        let mut payload = b"qRcmd,".to_vec();
        hex_into(command.as_bytes(), &mut payload);
        let deadline = Instant::now() + self.timeout;
        let mut reply = self.request(&payload, &operation)?;
        let mut output = Vec::new();
        loop {
            match reply.as_slice() {
                b"OK" => break,
                b"" => {
                    return Err(ProbeError::Unsupported {
                        operation: "monitor commands (qRcmd)".into(),
                    })
                }
                [b'O', hex @ ..] if unhex(hex).is_some() => {
                    output.extend(unhex(hex).unwrap_or_default());
                }
                other => {
                    if let Some(code) = error_code(other) {
                        return Err(self.refused(&operation, code));
                    }
                    // A final hex answer without `O` is output too.
                    let text = unhex(other).ok_or_else(|| self.protocol(&operation, other))?;
                    output.extend(text);
                    break;
                }
            }
            reply = self.link.recv_packet(deadline, self.timeout, &operation)?;
        }
        Ok(String::from_utf8_lossy(&output).into_owned())
    }
}

fn breakpoint_code(kind: BreakpointKind) -> (u8, &'static str) {
    match kind {
        BreakpointKind::Software => (0, "software"),
        BreakpointKind::Hardware => (1, "hardware"),
    }
}

#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;
