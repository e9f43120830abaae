//! One GDB remote-protocol connection: sends packets, waits for acks, receives packets, with a
//! deadline on every wait and an optional tap on all traffic.

use std::{
    io::{self, Read, Write},
    net::TcpStream,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    packet::{frame_into, Decoder, Event},
    tap::LinkTap,
};
use crate::probe::ProbeError;

/// A byte stream to a GDB server. Implemented for `TcpStream`; tests use in-memory streams.
pub trait Transport: Read + Write + Send {
    /// Sets how long one `read` may block (`None` = forever; never used here).
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

/// How often a damaged packet is sent again before giving up.
const MAX_RETRANSMITS: usize = 5;
const READ_BUFFER: usize = 64 * 1024;

pub(crate) struct Link<T: Transport> {
    io: T,
    server: String,
    tap: Option<Arc<dyn LinkTap>>,
    decoder: Decoder,
    read_buf: Box<[u8]>,
    out: Vec<u8>,
    no_ack: bool,
    read_timeout: Option<Duration>,
    /// Set once the server closed the link: later calls fail at once.
    closed: bool,
}

impl<T: Transport> Link<T> {
    pub(crate) fn new(io: T, server: String, tap: Option<Arc<dyn LinkTap>>) -> Self {
        Link {
            io,
            server,
            tap,
            decoder: Decoder::new(),
            read_buf: vec![0; READ_BUFFER].into_boxed_slice(),
            out: Vec::with_capacity(8192),
            no_ack: false,
            read_timeout: None,
            closed: false,
        }
    }

    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    pub(crate) fn set_no_ack(&mut self, no_ack: bool) {
        self.no_ack = no_ack;
    }

    pub(crate) fn closed_error(&self, operation: &str) -> ProbeError {
        ProbeError::Closed {
            server: self.server.clone(),
            operation: operation.into(),
        }
    }

    fn io_error(&mut self, source: io::Error, operation: &str) -> ProbeError {
        use io::ErrorKind::*;
        match source.kind() {
            BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof | NotConnected => {
                self.closed = true;
                self.closed_error(operation)
            }
            _ => ProbeError::Io {
                server: self.server.clone(),
                operation: operation.into(),
                source,
            },
        }
    }

    /// Writes raw bytes (one `write_all`, so one packet is one syscall).
    pub(crate) fn send_raw(&mut self, bytes: &[u8], operation: &str) -> Result<(), ProbeError> {
        if self.closed {
            return Err(self.closed_error(operation));
        }
        if let Some(tap) = &self.tap {
            tap.sent(bytes);
        }
        let result = self.io.write_all(bytes).and_then(|()| self.io.flush());
        result.map_err(|e| self.io_error(e, operation))
    }

    /// Sends a packet whose payload is already escaped, and waits for its ack (in ack mode).
    pub(crate) fn send_packet(
        &mut self,
        payload: &[u8],
        operation: &str,
        timeout: Duration,
    ) -> Result<(), ProbeError> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        frame_into(payload, &mut out);
        let result = self.send_framed(&out, operation, timeout);
        self.out = out;
        result
    }

    fn send_framed(
        &mut self,
        framed: &[u8],
        operation: &str,
        timeout: Duration,
    ) -> Result<(), ProbeError> {
        let deadline = Instant::now() + timeout;
        for _ in 0..=MAX_RETRANSMITS {
            self.send_raw(framed, operation)?;
            if self.no_ack {
                return Ok(());
            }
            match self.next_event(deadline, timeout, operation)? {
                Event::Ack => return Ok(()),
                Event::Nack => continue,
                // A packet before the ack: the server skipped the ack; keep the packet.
                event @ (Event::Packet(_) | Event::BadChecksum) => {
                    self.decoder.unread(event);
                    return Ok(());
                }
            }
        }
        Err(ProbeError::Protocol {
            server: self.server.clone(),
            operation: operation.into(),
            detail: format!(
                "packet refused (checksum) {} times — is the link noisy?",
                MAX_RETRANSMITS + 1
            ),
        })
    }

    /// Receives the next packet (acking it); stray acks are skipped.
    pub(crate) fn recv_packet(
        &mut self,
        deadline: Instant,
        timeout: Duration,
        operation: &str,
    ) -> Result<Vec<u8>, ProbeError> {
        let mut bad = 0;
        loop {
            match self.next_event(deadline, timeout, operation)? {
                Event::Packet(payload) => {
                    if !self.no_ack {
                        self.send_raw(b"+", operation)?;
                    }
                    return Ok(payload);
                }
                Event::BadChecksum => {
                    bad += 1;
                    if bad > MAX_RETRANSMITS {
                        return Err(ProbeError::Protocol {
                            server: self.server.clone(),
                            operation: operation.into(),
                            detail: "too many packets with a bad checksum".into(),
                        });
                    }
                    if !self.no_ack {
                        self.send_raw(b"-", operation)?;
                    }
                }
                Event::Ack | Event::Nack => {}
            }
        }
    }

    /// Sends a packet and returns the reply.
    pub(crate) fn request(
        &mut self,
        payload: &[u8],
        operation: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, ProbeError> {
        let deadline = Instant::now() + timeout;
        self.send_packet(payload, operation, timeout)?;
        self.recv_packet(deadline, timeout, operation)
    }

    fn next_event(
        &mut self,
        deadline: Instant,
        timeout: Duration,
        operation: &str,
    ) -> Result<Event, ProbeError> {
        loop {
            if let Some(event) = self.decoder.next_event() {
                return Ok(event);
            }
            if self.closed {
                return Err(self.closed_error(operation));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ProbeError::Timeout {
                    server: self.server.clone(),
                    operation: operation.into(),
                    after: timeout,
                });
            }
            // One setsockopt only when the remaining time shrank noticeably: the deadline is
            // then respected to within a few milliseconds, without a syscall per read.
            let remaining = (deadline - now).max(Duration::from_millis(1));
            let stale = match self.read_timeout {
                Some(current) => {
                    current > remaining + Duration::from_millis(5) || current * 2 < remaining
                }
                None => true,
            };
            if stale {
                let set = self.io.set_read_timeout(Some(remaining));
                set.map_err(|e| self.io_error(e, operation))?;
                self.read_timeout = Some(remaining);
            }
            match self.io.read(&mut self.read_buf) {
                Ok(0) => {
                    self.closed = true;
                    return Err(self.closed_error(operation));
                }
                Ok(n) => {
                    if let Some(tap) = &self.tap {
                        tap.received(&self.read_buf[..n]);
                    }
                    self.decoder.feed(&self.read_buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(self.io_error(e, operation)),
            }
        }
    }
}
