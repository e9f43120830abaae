//! The host end of a device's UART, the only one: the station (hello after provisioning), the
//! CLI (`device update`, `device app-install`, `data relay`), the end-to-end tests and the benches all use
//! [`HostLink`].
//!
//! A [`HostLink`] wraps any [`Transport`] (`Read + Write`; a TCP socket for an emulated board,
//! a serial port), reads in blocks into one buffer and feeds the [`FrameDecoder`] from it (no
//! per-byte shifting), skips frames with a bad checksum or an unknown type, and offers one
//! request/response helper per exchange. Every wait has a deadline; an error frame from the
//! device is [`LinkError::Refused`] with its code.

use std::boxed::Box;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::num::NonZeroU32;
use std::string::String;
use std::time::{Duration, Instant};
use std::vec::Vec;
use std::{fmt, format};

use crate::app::receipt as app_receipt;
use crate::codec::Codec;
use crate::hello::{self, HelloInfo, CHALLENGE_LEN};
use crate::update::receipt;
use crate::update::session::Ready;
use crate::ErrorCode;

use super::frame::{frame_to_vec, FrameDecoder, UartMessage};
use super::message::{DeviceMessage, Request};
use super::msg_type::MsgType;

/// A byte stream to a device's UART.
pub trait Transport: Read + Write {
    /// Bounds how long the next reads may block. The default does nothing: reads block until
    /// bytes arrive (a serial port opened as a plain file), so deadlines are then only checked
    /// between reads.
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let _ = timeout;
        Ok(())
    }
}

impl Transport for TcpStream {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self, Some(timeout))
    }
}

impl Transport for File {}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
}

/// A UART named on a command line: `tcp:HOST:PORT` (an emulated board's serial port) or the
/// path of a serial device (a USB CDC-ACM port needs no baud rate; set others up with `stty`).
pub enum Port {
    /// An emulated board's serial port.
    Tcp(TcpStream),
    /// A serial device.
    Serial(File),
}

impl Port {
    /// Opens `spec`; `timeout` bounds the TCP connect.
    pub fn open(spec: &str, timeout: Duration) -> io::Result<Self> {
        match spec.strip_prefix("tcp:") {
            Some(addr) => {
                let addrs: Vec<_> = addr.to_socket_addrs()?.collect();
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                for a in addrs {
                    match TcpStream::connect_timeout(&a, timeout) {
                        Ok(s) => {
                            s.set_nodelay(true)?;
                            return Ok(Self::Tcp(s));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            None => Ok(Self::Serial(
                File::options().read(true).write(true).open(spec)?,
            )),
        }
    }
}

impl Read for Port {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Serial(f) => f.read(buf),
        }
    }
}

impl Write for Port {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Serial(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.flush(),
            Self::Serial(f) => f.flush(),
        }
    }
}

impl Transport for Port {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        match self {
            Self::Tcp(s) => Transport::set_read_timeout(s, timeout),
            Self::Serial(f) => Transport::set_read_timeout(f, timeout),
        }
    }
}

/// Why an exchange with a device failed.
#[derive(Debug)]
pub enum LinkError {
    /// Reading or writing the transport failed.
    Io(io::Error),
    /// The device end closed the link.
    Closed,
    /// The frame awaited did not arrive in time.
    Timeout {
        /// What was awaited (`None`: any frame).
        awaiting: Option<MsgType>,
        /// How long.
        after: Duration,
    },
    /// The device answered with an error frame.
    Refused {
        /// The request refused (the last one sent).
        request: Option<MsgType>,
        /// The device's reason.
        code: ErrorCode,
    },
    /// A frame of a known type does not decode (or a request could not be encoded).
    Malformed {
        /// Its type.
        msg_type: MsgType,
        /// Why.
        code: ErrorCode,
    },
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "device link failed: {e}"),
            Self::Closed => f.write_str("the device closed the link"),
            Self::Timeout { awaiting, after } => {
                let what = awaiting.map_or_else(|| "a frame".into(), |t| format!("{t:?}"));
                write!(
                    f,
                    "no {what} from the device within {after:?}: is it powered and running its firmware?"
                )
            }
            Self::Refused {
                request: Some(request),
                code,
            } => write!(f, "the device refused {request:?}: {code}"),
            Self::Refused {
                request: None,
                code,
            } => write!(f, "the device refused: {code}"),
            Self::Malformed { msg_type, code } => {
                write!(f, "malformed {msg_type:?} frame: {code}")
            }
        }
    }
}

impl std::error::Error for LinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// A frame received from the device (checksum good, type known, payload well formed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    msg_type: MsgType,
    /// `type | len | payload`, as [`DeviceMessage`]'s `Codec` reads it.
    body: Vec<u8>,
}

impl Received {
    /// Its type.
    pub fn msg_type(&self) -> MsgType {
        self.msg_type
    }

    /// Its payload.
    pub fn payload(&self) -> &[u8] {
        &self.body[3..]
    }

    /// The message (decoded once on arrival already, so this does not fail for frames from
    /// [`HostLink::receive`]).
    pub fn message(&self) -> Result<DeviceMessage<'_>, ErrorCode> {
        DeviceMessage::read_bytes(&self.body)
    }
}

/// How an install request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallOutcome {
    /// Installed; the bootloader starts it (its banner follows).
    Installed {
        /// Its version.
        version: u32,
    },
    /// The bootloader stopped after `step`, as asked (cut the power now).
    Halted {
        /// Install steps done.
        step: u32,
    },
}

/// How far [`HostLink::relay_package`] goes (the defaults: the whole package, installed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayLimits {
    /// Stop after sending this many chunks (tests of resumed transfers).
    pub max_chunks: Option<usize>,
    /// Ask the bootloader to halt after this install step (power-cut tests).
    pub halt_after: Option<NonZeroU32>,
}

/// How a relayed package ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relayed {
    /// Staged, verified and installed; the bootloader starts it (its banner follows).
    Installed {
        /// Its version.
        version: u32,
        /// The chunk the device asked for first (past 0: a transfer resumed).
        resumed_at: u32,
    },
    /// The bootloader stopped after `step`, as [`RelayLimits::halt_after`] asked.
    Halted {
        /// Install steps done.
        step: u32,
    },
    /// [`RelayLimits::max_chunks`] chunks were sent; relaying the same envelope again resumes.
    Truncated {
        /// Chunks sent in this call.
        sent: usize,
    },
}

/// A `hello` answer: the identity as claimed (not verified: the host finds the device's key by
/// its serial first) and the raw response for [`hello::verify_response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloReply {
    /// What the device claims.
    pub claimed: HelloInfo,
    /// The response as received.
    pub raw: [u8; hello::RESPONSE_LEN],
}

const READ_CHUNK: usize = 4096;

/// A framed connection to one device (see the module documentation).
pub struct HostLink<T> {
    transport: T,
    decoder: Box<FrameDecoder>,
    /// Bytes read, `rx[pos..end]` not yet fed to the decoder (a read can carry several frames).
    rx: Box<[u8; READ_CHUNK]>,
    pos: usize,
    end: usize,
    last_request: Option<MsgType>,
}

impl<T: Transport> HostLink<T> {
    /// Wraps an open transport.
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            decoder: Box::new(FrameDecoder::new()),
            rx: Box::new([0; READ_CHUNK]),
            pos: 0,
            end: 0,
            last_request: None,
        }
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Sends one request.
    pub fn send(&mut self, request: &Request<'_>) -> Result<(), LinkError> {
        let msg_type = request.msg_type();
        let frame =
            frame_to_vec(request).map_err(|code| LinkError::Malformed { msg_type, code })?;
        self.last_request = Some(msg_type);
        self.transport.write_all(&frame)?;
        Ok(self.transport.flush()?)
    }

    /// The next frame from the device. Frames with a bad checksum or an unknown type are
    /// skipped (line noise; a newer device's unasked frames).
    pub fn receive(&mut self, timeout: Duration) -> Result<Received, LinkError> {
        self.receive_by(Instant::now() + timeout, None, timeout)
    }

    fn receive_by(
        &mut self,
        deadline: Instant,
        awaiting: Option<MsgType>,
        timeout: Duration,
    ) -> Result<Received, LinkError> {
        loop {
            while self.pos < self.end {
                let byte = self.rx[self.pos];
                self.pos += 1;
                let Some(Ok(frame)) = self.decoder.push(byte) else {
                    continue;
                };
                let Ok(msg_type) = frame.msg_type() else {
                    continue;
                };
                let body = frame.body().to_vec();
                if let Err(code) = DeviceMessage::read_bytes(&body) {
                    return Err(LinkError::Malformed { msg_type, code });
                }
                return Ok(Received { msg_type, body });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LinkError::Timeout {
                    awaiting,
                    after: timeout,
                });
            }
            self.transport
                .set_read_timeout(left.max(Duration::from_millis(1)))?;
            match self.transport.read(&mut self.rx[..]) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => {
                    self.pos = 0;
                    self.end = n;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits for a frame of type `want`, skipping unasked frames (banners, data records, app
    /// logs); an error frame is [`LinkError::Refused`].
    pub fn expect(&mut self, want: MsgType, timeout: Duration) -> Result<Received, LinkError> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.receive_by(deadline, Some(want), timeout)?;
            if got.msg_type == want {
                return Ok(got);
            }
            if let Ok(DeviceMessage::Error(code)) = got.message() {
                return Err(LinkError::Refused {
                    request: self.last_request,
                    code,
                });
            }
        }
    }

    /// Sends `request` and waits for its answer of type `want`.
    pub fn request(
        &mut self,
        request: &Request<'_>,
        want: MsgType,
        timeout: Duration,
    ) -> Result<Received, LinkError> {
        self.send(request)?;
        self.expect(want, timeout)
    }

    /// Sends `request` and decodes its answer of type `want` with `pick`.
    fn exchange<R>(
        &mut self,
        request: &Request<'_>,
        want: MsgType,
        timeout: Duration,
        pick: impl FnOnce(DeviceMessage<'_>) -> Option<R>,
    ) -> Result<R, LinkError> {
        self.send(request)?;
        let got = self.expect(want, timeout)?;
        got.message()
            .ok()
            .and_then(pick)
            .ok_or(LinkError::Malformed {
                msg_type: want,
                code: ErrorCode::BadLength,
            })
    }

    /// `hello` with `challenge` (fresh per request: the caller's randomness).
    pub fn hello(
        &mut self,
        challenge: [u8; CHALLENGE_LEN],
        timeout: Duration,
    ) -> Result<HelloReply, LinkError> {
        let raw = self.exchange(
            &Request::Hello { challenge },
            MsgType::HelloResponse,
            timeout,
            |m| match m {
                DeviceMessage::HelloResponse(raw) => Some(*raw),
                _ => None,
            },
        )?;
        let claimed = hello::peek_identity(&raw).map_err(|code| LinkError::Malformed {
            msg_type: MsgType::HelloResponse,
            code,
        })?;
        Ok(HelloReply { claimed, raw })
    }

    /// A status receipt for the coordinator's `challenge` (relayed as is: the coordinator
    /// verifies it).
    pub fn status_receipt(
        &mut self,
        challenge: [u8; receipt::CHALLENGE_LEN],
        timeout: Duration,
    ) -> Result<[u8; receipt::RECEIPT_LEN], LinkError> {
        self.exchange(
            &Request::Status { challenge },
            MsgType::StatusReceipt,
            timeout,
            |m| match m {
                DeviceMessage::StatusReceipt(raw) => Some(*raw),
                _ => None,
            },
        )
    }

    /// Asks the OS to hand over to the bootloader's update service (a bootloader answers at
    /// once).
    pub fn enter_update(&mut self, timeout: Duration) -> Result<(), LinkError> {
        self.request(&Request::EnterUpdate, MsgType::UpdateMode, timeout)
            .map(drop)
    }

    /// Begins (or resumes) a transfer: the answer says which chunk comes next.
    pub fn begin_update(&mut self, envelope: &[u8], timeout: Duration) -> Result<Ready, LinkError> {
        self.exchange(
            &Request::UpdateBegin { envelope },
            MsgType::UpdateReady,
            timeout,
            |m| match m {
                DeviceMessage::UpdateReady { next, count } => Some(Ready { next, count }),
                _ => None,
            },
        )
    }

    /// Sends chunk `index`; returns the next chunk the device needs.
    pub fn send_chunk(
        &mut self,
        index: u32,
        sealed: &[u8],
        timeout: Duration,
    ) -> Result<u32, LinkError> {
        self.exchange(
            &Request::UpdateChunk { index, sealed },
            MsgType::ChunkAck,
            timeout,
            |m| match m {
                DeviceMessage::ChunkAck { next } => Some(next),
                _ => None,
            },
        )
    }

    /// Every chunk sent; returns the staged version.
    pub fn finish_update(&mut self, timeout: Duration) -> Result<u32, LinkError> {
        self.exchange(
            &Request::UpdateFinish,
            MsgType::UpdateStaged,
            timeout,
            |m| match m {
                DeviceMessage::UpdateStaged { version } => Some(version),
                _ => None,
            },
        )
    }

    /// Installs the staged image; with `halt_after`, the bootloader stops after that step.
    pub fn install(
        &mut self,
        halt_after: Option<NonZeroU32>,
        timeout: Duration,
    ) -> Result<InstallOutcome, LinkError> {
        // With a halt, `InstallHalted` is the answer awaited: an `UpdateInstalled` sent before
        // it (a halt during the first boot's steps) is skipped like any unasked frame.
        let want = match halt_after {
            Some(_) => MsgType::InstallHalted,
            None => MsgType::UpdateInstalled,
        };
        self.exchange(
            &Request::UpdateInstall { halt_after },
            want,
            timeout,
            |m| match m {
                DeviceMessage::UpdateInstalled { version } => {
                    Some(InstallOutcome::Installed { version })
                }
                DeviceMessage::InstallHalted { step } => Some(InstallOutcome::Halted { step }),
                _ => None,
            },
        )
    }

    /// Relays an update package (`update::package`: `envelope` and the ciphertext `chunks`) to
    /// the bootloader's update service: begin, the chunks it still needs (begin says which: a
    /// transfer cut by a lost link or a power cut resumes), finish, install. The one relay of
    /// the field tool and the factory station; it handles ciphertext only.
    pub fn relay_package(
        &mut self,
        envelope: &[u8],
        chunks: &[Vec<u8>],
        limits: RelayLimits,
        timeout: Duration,
    ) -> Result<Relayed, LinkError> {
        let ready = self.begin_update(envelope, timeout)?;
        let pending = chunks.iter().enumerate().skip(ready.next as usize);
        for (sent, (index, chunk)) in pending.enumerate() {
            if limits.max_chunks == Some(sent) {
                return Ok(Relayed::Truncated { sent });
            }
            let index = u32::try_from(index).map_err(|_| LinkError::Malformed {
                msg_type: MsgType::UpdateChunk,
                code: ErrorCode::BadOffset,
            })?;
            self.send_chunk(index, chunk, timeout)?;
        }
        self.finish_update(timeout)?;
        Ok(match self.install(limits.halt_after, timeout)? {
            InstallOutcome::Installed { version } => Relayed::Installed {
                version,
                resumed_at: ready.next,
            },
            InstallOutcome::Halted { step } => Relayed::Halted { step },
        })
    }

    /// Sends one app request and returns the value of its `AppAck` (see [`DeviceMessage::AppAck`]).
    pub fn app_step(&mut self, request: &Request<'_>, timeout: Duration) -> Result<u32, LinkError> {
        let step = request.msg_type();
        self.exchange(request, MsgType::AppAck, timeout, |m| match m {
            DeviceMessage::AppAck { step: s, value } if s == step => Some(value),
            _ => None,
        })
    }

    /// Relays an app package (`update::package`, an app image inside: `envelope` and the
    /// ciphertext `chunks`) to the OS: begin, every chunk, commit (`app::install`). Returns the
    /// installed version. Ciphertext only, like [`Self::relay_package`]; no reset follows.
    pub fn relay_app_package(
        &mut self,
        envelope: &[u8],
        chunks: &[Vec<u8>],
        timeout: Duration,
    ) -> Result<u32, LinkError> {
        let count = self.app_step(&Request::AppPackageBegin { envelope }, timeout)?;
        if count as usize != chunks.len() {
            return Err(LinkError::Malformed {
                msg_type: MsgType::AppAck,
                code: ErrorCode::BadLength,
            });
        }
        for (index, sealed) in (0u32..).zip(chunks) {
            self.app_step(&Request::AppPackageChunk { index, sealed }, timeout)?;
        }
        self.app_step(&Request::AppCommit, timeout)
    }

    /// An app receipt for the coordinator's `challenge` (relayed as is: the coordinator
    /// verifies it).
    pub fn app_receipt(
        &mut self,
        challenge: [u8; app_receipt::CHALLENGE_LEN],
        timeout: Duration,
    ) -> Result<[u8; app_receipt::APP_RECEIPT_LEN], LinkError> {
        self.exchange(
            &Request::AppStatus { challenge },
            MsgType::AppReceipt,
            timeout,
            |m| match m {
                DeviceMessage::AppReceipt(raw) => Some(*raw),
                _ => None,
            },
        )
    }

    /// Waits for the OS's boot banner; returns its text.
    pub fn wait_for_banner(&mut self, timeout: Duration) -> Result<String, LinkError> {
        let got = self.expect(MsgType::BootBanner, timeout)?;
        Ok(String::from_utf8_lossy(got.payload()).into_owned())
    }

    /// Waits for the next sealed data record (skipping every other frame, errors included:
    /// a relay asks nothing).
    pub fn next_data_record(&mut self, timeout: Duration) -> Result<Vec<u8>, LinkError> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.receive_by(deadline, Some(MsgType::DataRecord), timeout)?;
            if got.msg_type == MsgType::DataRecord {
                return Ok(got.payload().to_vec());
            }
        }
    }
}

#[cfg(test)]
mod tests;
