//! `flashgate device update --port …`: a field tool for one device on a serial link.
//!
//! 1. `hello` over the UART: the device's serial and product (not trusted yet);
//! 2. `GetUpdatePackage` from the coordinator: envelope + chunks + receipt challenge;
//! 3. push the package (`update::session`): begin (the answer says which chunk comes next, so
//!    an interrupted transfer resumes), chunks, finish, install;
//! 4. the device restarts into the new image; ask it for a status receipt with the
//!    coordinator's challenge and relay it (`ReportUpdate`), which the coordinator verifies
//!    with the device key.
//!
//! The tool handles only ciphertext and MACs: it never sees the image or a key.

use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::{anyhow, Context};
use flashgate_proto::v1;
use flashgate_protocol::hello::{self, CHALLENGE_LEN};
use flashgate_protocol::uart::host::{HelloReply, HostLink, LinkError, Port, RelayLimits, Relayed};
use flashgate_protocol::uart::{MsgType, Request};
use flashgate_protocol::update::receipt::{self, StatusReceipt};
use flashgate_protocol::ErrorCode;

use crate::grpc::UpdateClient;

/// How a device update run ends for the caller.
#[derive(Debug)]
pub struct UpdateReport {
    /// The device's serial (hex).
    pub serial: String,
    /// The version installed.
    pub version: u32,
    /// What the device said in its receipt (unverified copy; the coordinator verified it).
    pub receipt: StatusReceipt,
    /// The registry's view after the report.
    pub status: v1::DeviceUpdateStatus,
}

/// Options of one run.
#[derive(Clone, Debug)]
pub struct UpdateOptions {
    /// `tcp:HOST:PORT` or a serial device path.
    pub port: String,
    /// Stop sending after this many chunks (tests of resumed transfers).
    pub max_chunks: Option<usize>,
    /// Ask the bootloader to halt after this install step (power-cut tests).
    pub halt_after_step: Option<u32>,
    /// Per-reply timeout.
    pub timeout: Duration,
    /// Refuse to go on unless the device on the port answers with this serial.
    pub expected_serial: Option<[u8; 16]>,
}

impl UpdateOptions {
    /// Defaults for `port`.
    pub fn new(port: impl Into<String>) -> Self {
        Self {
            port: port.into(),
            max_chunks: None,
            halt_after_step: None,
            timeout: Duration::from_secs(30),
            expected_serial: None,
        }
    }
}

/// Why a run stopped early on purpose.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    /// `max_chunks` reached.
    #[error("stopped after {0} chunks as asked; run again to resume")]
    Truncated(usize),
    /// The bootloader halted at the requested step.
    #[error("the device halted after install step {0} as asked")]
    Halted(u32),
    /// The device refused the package (the code was reported to the coordinator).
    #[error("the device refused the update: {0}")]
    Refused(ErrorCode),
    /// The device refused the app package (the code was reported to the coordinator).
    #[error("the device refused the app package: {0}")]
    AppRefused(ErrorCode),
}

/// The host end of the UART (`flashgate_protocol::uart::host`), with refusals as
/// [`Stopped::Refused`].
pub struct Uart {
    link: HostLink<Port>,
}

/// An error frame becomes [`Stopped::Refused`] (so callers can report the code); everything
/// else keeps its message.
pub(crate) fn stopped(e: LinkError) -> anyhow::Error {
    match e {
        LinkError::Refused { code, .. } => Stopped::Refused(code).into(),
        other => other.into(),
    }
}

impl Uart {
    /// Opens `tcp:HOST:PORT` or a serial device path (a USB CDC-ACM port needs no baud rate;
    /// set other ports up with `stty` first).
    pub fn open(port: &str) -> anyhow::Result<Self> {
        let port_link = Port::open(port, Duration::from_secs(10))
            .with_context(|| format!("cannot open the device UART {port}"))?;
        Ok(Self {
            link: HostLink::new(port_link),
        })
    }

    /// The framed link itself (the app install's exchanges, `crate::device_app`).
    pub fn link(&mut self) -> &mut HostLink<Port> {
        &mut self.link
    }

    /// Sends one request.
    pub fn send(&mut self, request: &Request<'_>) -> anyhow::Result<()> {
        self.link.send(request).map_err(stopped)
    }

    /// Waits for a frame of type `want`, skipping banners and other unasked frames; an error
    /// frame becomes `Err(Stopped::Refused)`. Returns the payload.
    pub fn expect(&mut self, want: MsgType, timeout: Duration) -> anyhow::Result<Vec<u8>> {
        let got = self.link.expect(want, timeout).map_err(stopped)?;
        Ok(got.payload().to_vec())
    }

    /// `hello` with `challenge` (the coordinator's, for `device verify`): the claimed identity
    /// and the raw answer for the coordinator.
    pub fn hello(
        &mut self,
        challenge: [u8; CHALLENGE_LEN],
        timeout: Duration,
    ) -> anyhow::Result<HelloReply> {
        self.link.hello(challenge, timeout).map_err(stopped)
    }

    /// `hello` with a random challenge; the claimed identity (the coordinator checks keys).
    pub fn identify(&mut self, timeout: Duration) -> anyhow::Result<hello::HelloInfo> {
        let mut challenge = [0u8; CHALLENGE_LEN];
        getrandom(&mut challenge);
        Ok(self.hello(challenge, timeout)?.claimed)
    }

    /// Asks for a status receipt answering `challenge`.
    pub fn status(&mut self, challenge: &[u8], timeout: Duration) -> anyhow::Result<Vec<u8>> {
        let challenge = challenge.try_into().map_err(|_| {
            anyhow!(
                "the receipt challenge must be {} bytes",
                receipt::CHALLENGE_LEN
            )
        })?;
        let raw = self
            .link
            .status_receipt(challenge, timeout)
            .map_err(stopped)?;
        Ok(raw.to_vec())
    }
}

fn getrandom(buf: &mut [u8]) {
    use rand_core::RngCore;
    rand_core::OsRng.fill_bytes(buf);
}

/// Runs one device update end to end (see the module documentation). `client` carries the
/// operator's credentials ([`crate::grpc::Clients::update`]).
pub async fn run(
    client: &mut UpdateClient,
    options: &UpdateOptions,
) -> anyhow::Result<UpdateReport> {
    let timeout = options.timeout;
    let port = options.port.clone();
    let mut uart = tokio::task::block_in_place(|| Uart::open(&port))?;
    let info = tokio::task::block_in_place(|| -> anyhow::Result<_> {
        let info = uart.identify(timeout)?;
        if matches!(info.state, hello::DeviceState::OsRunning { .. }) {
            // The OS hands over to the bootloader, which serves the transfer.
            uart.link.enter_update(timeout).map_err(stopped)?;
            return uart.identify(timeout);
        }
        Ok(info)
    })?;
    check_serial(&info, &options.port, options.expected_serial)?;
    let serial = info.serial.to_vec();
    let package = client
        .get_update_package(v1::GetUpdatePackageRequest {
            product_id: info.product_id,
            serial: serial.clone(),
        })
        .await?
        .into_inner();
    let pushed = tokio::task::block_in_place(|| push(&mut uart, &package, options));
    if let Err(e) = &pushed {
        if let Some(Stopped::Refused(code)) = e.downcast_ref::<Stopped>() {
            client
                .report_update(v1::ReportUpdateRequest {
                    product_id: info.product_id,
                    serial: serial.clone(),
                    receipt: Vec::new(),
                    refused_code: *code as u32,
                })
                .await?;
        }
    }
    pushed?;
    // The new OS starts (banner) and confirms itself; then it answers the status request.
    let raw = tokio::task::block_in_place(|| uart.status(&package.challenge, timeout))?;
    let receipt = receipt::peek(&raw).map_err(|e| anyhow!("bad receipt: {e}"))?;
    let status = client
        .report_update(v1::ReportUpdateRequest {
            product_id: info.product_id,
            serial: serial.clone(),
            receipt: raw,
            refused_code: 0,
        })
        .await?
        .into_inner();
    Ok(UpdateReport {
        serial: hex::encode(serial),
        version: package.version,
        receipt,
        status,
    })
}

/// Refuses to go on unless the device on `port` claims the `expected` serial (when one is
/// given): nothing is sent to another board.
pub(crate) fn check_serial(
    info: &hello::HelloInfo,
    port: &str,
    expected: Option<[u8; 16]>,
) -> anyhow::Result<()> {
    match expected {
        Some(expected) if info.serial != expected => Err(anyhow!(
            "the device on {port} is {}, not {}: nothing sent",
            hex::encode(info.serial),
            hex::encode(expected)
        )),
        _ => Ok(()),
    }
}

fn push(
    uart: &mut Uart,
    package: &v1::UpdatePackage,
    options: &UpdateOptions,
) -> anyhow::Result<()> {
    let limits = RelayLimits {
        max_chunks: options.max_chunks,
        halt_after: options.halt_after_step.and_then(NonZeroU32::new),
    };
    let relayed = uart
        .link
        .relay_package(&package.envelope, &package.chunks, limits, options.timeout)
        .map_err(stopped)?;
    match relayed {
        Relayed::Installed { .. } => Ok(()),
        Relayed::Halted { step } => Err(Stopped::Halted(step).into()),
        Relayed::Truncated { sent } => Err(Stopped::Truncated(sent).into()),
    }
}
