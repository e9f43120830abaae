//! The station's end of a device's UART (a serial port, or `tcp:HOST:PORT` for an emulated
//! board): the protocol crate's one host link (`flashgate_protocol::uart::host::HostLink`),
//! with the endpoint named in errors, a fresh random challenge per `hello`, boot banners, and
//! the update path a factory OS install relays its package through.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use flashgate_protocol::hello::{self, HelloInfo, CHALLENGE_LEN};
use flashgate_protocol::uart::host::{HostLink, LinkError, RelayLimits, Relayed, Transport};
use flashgate_protocol::uart::{MsgType, Request};
use flashgate_protocol::update::receipt;
use flashgate_protocol::ErrorCode;
use rand::RngCore;

/// Why talking to a device over its UART failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceLinkError {
    /// The link could not be opened.
    #[error("device link {endpoint}: {source}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// An exchange failed: I/O, timeout, a refusal or a malformed frame.
    #[error("device link {endpoint} ({what}): {source}")]
    Link {
        /// Where.
        endpoint: String,
        /// What was being done.
        what: &'static str,
        /// Why.
        source: LinkError,
    },
    /// The device's answer does not verify.
    #[error("device answer to {what} is invalid: {code}")]
    Invalid {
        /// The request.
        what: &'static str,
        /// Why.
        code: ErrorCode,
    },
}

impl DeviceLinkError {
    /// True when the link itself failed (closed, I/O, no answer in time): a board that lost its
    /// power, or a cable pulled. The device refused nothing.
    pub fn link_lost(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Link {
                    source: LinkError::Io(_) | LinkError::Closed | LinkError::Timeout { .. },
                    ..
                }
        )
    }

    /// The request the device refused and its code, when it answered with an error frame.
    pub fn refusal(&self) -> Option<(Option<MsgType>, ErrorCode)> {
        match self {
            Self::Link {
                source: LinkError::Refused { request, code },
                ..
            } => Some((*request, *code)),
            _ => None,
        }
    }
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
    link: HostLink<S>,
    endpoint: String,
}

impl DeviceLink<TcpStream> {
    /// Connects to an emulated board's UART.
    pub fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<Self, DeviceLinkError> {
        let endpoint = format!("tcp:{addr}");
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .and_then(|s| s.set_nodelay(true).map(|()| s))
            .map_err(|source| DeviceLinkError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        Ok(Self::over(stream, endpoint))
    }
}

impl<S: Transport> DeviceLink<S> {
    /// Wraps an open stream; `endpoint` names it in errors.
    pub fn over(stream: S, endpoint: String) -> Self {
        Self {
            link: HostLink::new(stream),
            endpoint,
        }
    }

    fn failed(&self, what: &'static str) -> impl Fn(LinkError) -> DeviceLinkError + '_ {
        move |source| DeviceLinkError::Link {
            endpoint: self.endpoint.clone(),
            what,
            source,
        }
    }

    /// Sends one request.
    pub fn send(&mut self, request: &Request<'_>) -> Result<(), DeviceLinkError> {
        let sent = self.link.send(request);
        sent.map_err(self.failed("request"))
    }

    /// Waits for the next good frame (frames with a bad checksum or an unknown type are
    /// skipped); `what` names the wait in errors.
    pub fn receive(
        &mut self,
        what: &'static str,
        timeout: Duration,
    ) -> Result<(MsgType, Vec<u8>), DeviceLinkError> {
        let got = self.link.receive(timeout);
        let got = got.map_err(self.failed(what))?;
        Ok((got.msg_type(), got.payload().to_vec()))
    }

    /// Waits for the OS's boot banner and returns its text.
    pub fn wait_for_banner(&mut self, timeout: Duration) -> Result<String, DeviceLinkError> {
        let banner = self.link.wait_for_banner(timeout);
        banner.map_err(self.failed("boot banner"))
    }

    /// Sends `hello` with a fresh random challenge and returns the (unverified) answer.
    pub fn hello(&mut self, timeout: Duration) -> Result<HelloAnswer, DeviceLinkError> {
        let mut challenge = [0u8; CHALLENGE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        self.hello_with(challenge, timeout)
    }

    /// Sends `hello` with `challenge` (the coordinator's, which verifies the answer) and
    /// returns the (unverified) answer.
    pub fn hello_with(
        &mut self,
        challenge: [u8; CHALLENGE_LEN],
        timeout: Duration,
    ) -> Result<HelloAnswer, DeviceLinkError> {
        let reply = self.link.hello(challenge, timeout);
        let reply = reply.map_err(self.failed("hello"))?;
        Ok(HelloAnswer {
            challenge,
            claimed: reply.claimed,
            raw: reply.raw.to_vec(),
        })
    }

    /// Asks a running OS to hand over to the bootloader's update service.
    pub fn enter_update(&mut self, timeout: Duration) -> Result<(), DeviceLinkError> {
        let entered = self.link.enter_update(timeout);
        entered.map_err(self.failed("enter update"))
    }

    /// Relays an update package (envelope and ciphertext chunks) through the bootloader's
    /// update path, resuming a transfer the device holds for the same envelope.
    pub fn relay_package(
        &mut self,
        envelope: &[u8],
        chunks: &[Vec<u8>],
        timeout: Duration,
    ) -> Result<Relayed, DeviceLinkError> {
        let relayed = self
            .link
            .relay_package(envelope, chunks, RelayLimits::default(), timeout);
        relayed.map_err(self.failed("update package"))
    }

    /// The device's status receipt answering `challenge` (the coordinator's; it verifies it).
    pub fn status_receipt(
        &mut self,
        challenge: [u8; receipt::CHALLENGE_LEN],
        timeout: Duration,
    ) -> Result<[u8; receipt::RECEIPT_LEN], DeviceLinkError> {
        let raw = self.link.status_receipt(challenge, timeout);
        raw.map_err(self.failed("status receipt"))
    }
}
