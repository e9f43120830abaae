//! The host end of a device's UART (a serial port, or `tcp:HOST:PORT` for an emulated board):
//! frames from `flashgate_protocol::uart`, a `hello` with a fresh challenge, boot banners.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use flashgate_protocol::hello::{self, HelloInfo, CHALLENGE_LEN};
use flashgate_protocol::uart::{self, msg, FrameDecoder};
use flashgate_protocol::ErrorCode;
use rand::RngCore;

/// Why talking to a device over its UART failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceLinkError {
    /// The link could not be opened or broke.
    #[error("device link {endpoint}: {source}")]
    Io {
        /// Where.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// No complete frame arrived in time.
    #[error("device did not answer {what} within {timeout:?}: is it powered and running its bootloader?")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        timeout: Duration,
    },
    /// The device answered with an error frame.
    #[error("device refused {what}: {code}")]
    Refused {
        /// The request.
        what: &'static str,
        /// The device's reason.
        code: ErrorCode,
    },
    /// The device's answer does not verify or is malformed.
    #[error("device answer to {what} is invalid: {code}")]
    Invalid {
        /// The request.
        what: &'static str,
        /// Why.
        code: ErrorCode,
    },
}

/// A hello answer: the identity (unverified until [`HelloAnswer::verify`]) and the raw bytes.
#[derive(Clone, Debug)]
pub struct HelloAnswer {
    /// The challenge that was sent.
    pub challenge: [u8; CHALLENGE_LEN],
    /// What the device claims.
    pub claimed: HelloInfo,
    /// The response as received.
    pub raw: Vec<u8>,
}

impl HelloAnswer {
    /// Checks the proof under the device's key.
    pub fn verify(&self, device_key: &[u8; 32]) -> Result<HelloInfo, DeviceLinkError> {
        hello::verify_response(device_key, &self.challenge, &self.raw).map_err(|code| {
            DeviceLinkError::Invalid {
                what: "hello",
                code,
            }
        })
    }
}

/// A framed connection to one device.
pub struct DeviceLink<S: Read + Write> {
    stream: S,
    endpoint: String,
    decoder: Box<FrameDecoder>,
    /// Bytes read but not yet fed to the decoder (a read can carry more than one frame).
    rx: Vec<u8>,
}

impl DeviceLink<TcpStream> {
    /// Connects to an emulated board's UART.
    pub fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<Self, DeviceLinkError> {
        let endpoint = format!("tcp:{addr}");
        let stream =
            TcpStream::connect_timeout(&addr, timeout).map_err(|source| DeviceLinkError::Io {
                endpoint: endpoint.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(Self::over(stream, endpoint))
    }
}

/// Something whose read timeout can be set (sockets, serial ports).
pub trait ReadTimeout {
    /// Sets the timeout of the next reads.
    fn set_read_timeout(&mut self, timeout: Duration) -> std::io::Result<()>;
}

impl ReadTimeout for TcpStream {
    fn set_read_timeout(&mut self, timeout: Duration) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, Some(timeout))
    }
}

impl<S: Read + Write + ReadTimeout> DeviceLink<S> {
    /// Wraps an open stream; `endpoint` names it in errors.
    pub fn over(stream: S, endpoint: String) -> Self {
        Self {
            stream,
            endpoint,
            decoder: Box::new(FrameDecoder::new()),
            rx: Vec::new(),
        }
    }

    fn io(&self, source: std::io::Error) -> DeviceLinkError {
        DeviceLinkError::Io {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    /// Sends one frame.
    pub fn send(&mut self, msg_type: u8, payload: &[u8]) -> Result<(), DeviceLinkError> {
        let frame =
            uart::frame_to_vec(msg_type, payload).map_err(|code| DeviceLinkError::Invalid {
                what: "request",
                code,
            })?;
        self.stream.write_all(&frame).map_err(|e| self.io(e))
    }

    /// Waits for the next good frame (frames with a bad checksum are skipped).
    pub fn receive(
        &mut self,
        what: &'static str,
        timeout: Duration,
    ) -> Result<(u8, Vec<u8>), DeviceLinkError> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 512];
        loop {
            while !self.rx.is_empty() {
                let byte = self.rx.remove(0);
                if let Some(Ok(msg_type)) = self.decoder.push(byte) {
                    return Ok((msg_type, self.decoder.payload().to_vec()));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DeviceLinkError::Timeout { what, timeout });
            }
            self.stream
                .set_read_timeout(left.max(Duration::from_millis(1)))
                .map_err(|e| self.io(e))?;
            let n = match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(self.io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the device closed the link",
                    )))
                }
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(self.io(e)),
            };
            self.rx.extend_from_slice(&buf[..n]);
        }
    }

    /// Waits for a frame of `want` type, skipping banners and other unasked frames.
    fn expect(
        &mut self,
        what: &'static str,
        want: u8,
        timeout: Duration,
    ) -> Result<Vec<u8>, DeviceLinkError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (ty, payload) = self.receive(what, left)?;
            if ty == want {
                return Ok(payload);
            }
            if ty == msg::ERROR {
                let code = payload
                    .get(..4)
                    .and_then(|b| ErrorCode::from_u32(u32::from_le_bytes(b.try_into().ok()?)))
                    .unwrap_or(ErrorCode::UnknownMessage);
                return Err(DeviceLinkError::Refused { what, code });
            }
        }
    }

    /// Waits for the OS's boot banner and returns its text.
    pub fn wait_for_banner(&mut self, timeout: Duration) -> Result<String, DeviceLinkError> {
        let payload = self.expect("boot banner", msg::BOOT_BANNER, timeout)?;
        Ok(String::from_utf8_lossy(&payload).into_owned())
    }

    /// Sends `hello` with a fresh random challenge and returns the (unverified) answer.
    pub fn hello(&mut self, timeout: Duration) -> Result<HelloAnswer, DeviceLinkError> {
        let mut challenge = [0u8; CHALLENGE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        self.send(msg::HELLO_REQUEST, &challenge)?;
        let raw = self.expect("hello", msg::HELLO_RESPONSE, timeout)?;
        let claimed = hello::peek_identity(&raw).map_err(|code| DeviceLinkError::Invalid {
            what: "hello",
            code,
        })?;
        Ok(HelloAnswer {
            challenge,
            claimed,
            raw,
        })
    }
}
