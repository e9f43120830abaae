//! The TCP check as a state machine over smoltcp sockets, one step per poll.

use flashgate_net::smoltcp::socket::tcp;
use flashgate_net::smoltcp::wire::{IpEndpoint, Ipv4Address};

use crate::pattern::Pattern;

/// Bytes each way.
pub const TRANSFER_LEN: u32 = 256 * 1024;
/// First bytes of the request.
pub const REQUEST_MAGIC: [u8; 4] = *b"FGNC";
/// Where the isolation probe goes: QEMU's host side, at the port the peer names.
pub const PROBE_HOST: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
/// How long the probe waits for an answer (SysTick ticks at 25 MHz: 3 s).
const PROBE_WAIT: u64 = 3 * 25_000_000;

/// Where the check is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Requesting,
    Downloading,
    Uploading,
    Draining,
    /// The transfer is over; the probe socket is to be opened towards [`Check::probe_target`].
    ProbeReady,
    Probing {
        since: u64,
    },
    Done,
    Failed(&'static str),
}

/// What a connection to a port nobody forwarded came to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    NotRun,
    /// Reset at once: QEMU's restricted user networking refuses it.
    Refused,
    /// No answer within the wait.
    Unanswered,
    /// Established: the guest reached a host port it was not given. Isolation is broken.
    Reached,
}

impl Probe {
    pub fn name(self) -> &'static str {
        match self {
            Probe::NotRun => "not-run",
            Probe::Refused => "refused",
            Probe::Unanswered => "unanswered",
            Probe::Reached => "reached",
        }
    }
}

/// What the check measured (SysTick ticks since start).
#[derive(Default)]
pub struct Transfer {
    pub connected_at: u64,
    pub first_byte_at: u64,
    pub downloaded_at: u64,
    pub uploaded_at: u64,
    pub received: u32,
    pub mismatches: u32,
    pub first_mismatch: Option<u32>,
    pub sent: u32,
}

pub struct Check {
    pub phase: Phase,
    pub seed: u32,
    pub xfer: Transfer,
    pub probe: Probe,
    /// The probe port, as the peer sends it in the first two bytes of its answer.
    probe_port: [u8; 2],
    header: usize,
    download: Pattern,
    upload: Pattern,
}

impl Check {
    pub fn new(seed: u32) -> Self {
        Self {
            phase: Phase::Connecting,
            seed,
            xfer: Transfer::default(),
            probe: Probe::NotRun,
            probe_port: [0; 2],
            header: 0,
            download: Pattern::new(seed),
            upload: Pattern::new(!seed),
        }
    }

    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Failed(_))
    }

    /// Where the isolation probe goes: QEMU's host side, at the port the peer named.
    pub fn probe_target(&self) -> IpEndpoint {
        IpEndpoint::new(PROBE_HOST.into(), u16::from_le_bytes(self.probe_port))
    }

    /// The probe socket was (`opened`) or could not be connected.
    pub fn probe_started(&mut self, opened: bool, now: u64) {
        self.phase = if opened {
            Phase::Probing { since: now }
        } else {
            Phase::Failed("probe connect")
        };
    }

    /// Watches the probe connection until it is refused, answered, or times out.
    pub fn probe_step(&mut self, probe: &mut tcp::Socket<'_>, now: u64) {
        let Phase::Probing { since } = self.phase else {
            return;
        };
        if probe.may_send() {
            self.probe = Probe::Reached;
            probe.abort();
        } else if !probe.is_active() {
            self.probe = Probe::Refused;
        } else if now - since > PROBE_WAIT {
            self.probe = Probe::Unanswered;
            probe.abort();
        }
        if self.probe != Probe::NotRun {
            self.phase = Phase::Done;
        }
    }

    /// Advances the transfer as far as `socket` allows.
    pub fn step(&mut self, socket: &mut tcp::Socket<'_>, now: u64) {
        self.phase = match self.phase {
            Phase::Connecting if socket.may_send() => {
                self.xfer.connected_at = now;
                Phase::Requesting
            }
            Phase::Connecting if !socket.is_active() => Phase::Failed("connection refused"),
            Phase::Requesting => {
                let mut request = [0u8; 12];
                request[..4].copy_from_slice(&REQUEST_MAGIC);
                request[4..8].copy_from_slice(&TRANSFER_LEN.to_le_bytes());
                request[8..].copy_from_slice(&self.seed.to_le_bytes());
                match socket.send_slice(&request) {
                    Ok(12) => Phase::Downloading,
                    Ok(_) => Phase::Failed("request not queued whole"),
                    Err(_) => Phase::Failed("send failed"),
                }
            }
            Phase::Downloading => self.download(socket, now),
            Phase::Uploading => self.upload(socket),
            Phase::Draining if socket.send_queue() == 0 => {
                self.xfer.uploaded_at = now;
                socket.close();
                Phase::ProbeReady
            }
            Phase::Draining if !socket.may_send() => Phase::Failed("peer closed during upload"),
            phase => phase,
        };
    }

    fn download(&mut self, socket: &mut tcp::Socket<'_>, now: u64) -> Phase {
        if socket.can_recv() {
            let (header, port) = (&mut self.header, &mut self.probe_port);
            let (pattern, xfer) = (&mut self.download, &mut self.xfer);
            let consumed = socket.recv(|bytes| {
                let mut used = 0;
                while *header < 2 && used < bytes.len() {
                    port[*header] = bytes[used];
                    *header += 1;
                    used += 1;
                }
                let want = (TRANSFER_LEN - xfer.received) as usize;
                let body = &bytes[used..];
                let n = body.len().min(want);
                for (i, &byte) in body[..n].iter().enumerate() {
                    if byte != pattern.next_byte() {
                        xfer.mismatches += 1;
                        xfer.first_mismatch.get_or_insert(xfer.received + i as u32);
                    }
                }
                if xfer.received == 0 && n > 0 {
                    xfer.first_byte_at = now;
                }
                xfer.received += n as u32;
                (used + n, ())
            });
            if consumed.is_err() {
                return Phase::Failed("receive failed");
            }
        }
        if self.xfer.received == TRANSFER_LEN {
            self.xfer.downloaded_at = now;
            Phase::Uploading
        } else if !socket.may_recv() {
            Phase::Failed("peer closed during download")
        } else {
            Phase::Downloading
        }
    }

    fn upload(&mut self, socket: &mut tcp::Socket<'_>) -> Phase {
        while self.xfer.sent < TRANSFER_LEN && socket.can_send() {
            let left = (TRANSFER_LEN - self.xfer.sent) as usize;
            let pattern = &mut self.upload;
            let queued = socket.send(|room| {
                let n = room.len().min(left);
                for byte in &mut room[..n] {
                    *byte = pattern.next_byte();
                }
                (n, n)
            });
            match queued {
                Ok(n) => self.xfer.sent += n as u32,
                Err(_) => return Phase::Failed("send failed"),
            }
        }
        if self.xfer.sent == TRANSFER_LEN {
            Phase::Draining
        } else {
            Phase::Uploading
        }
    }
}
