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

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use flashgate_proto::v1;
use flashgate_protocol::hello::{self, CHALLENGE_LEN};
use flashgate_protocol::uart::{self, msg, FrameDecoder};
use flashgate_protocol::update::receipt::{self, StatusReceipt};
use flashgate_protocol::update::session::msg as update_msg;
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
}

enum Link {
    Tcp(TcpStream),
    Tty(std::fs::File),
}

/// The host end of the UART.
pub struct Uart {
    link: Link,
    decoder: Box<FrameDecoder>,
    pending: Vec<u8>,
}

impl Uart {
    /// Opens `tcp:HOST:PORT` or a serial device path (a USB CDC-ACM port needs no baud rate;
    /// set other ports up with `stty` first).
    pub fn open(port: &str) -> anyhow::Result<Self> {
        let link = if let Some(addr) = port.strip_prefix("tcp:") {
            let s =
                TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
            s.set_nodelay(true)?;
            Link::Tcp(s)
        } else {
            Link::Tty(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(port)
                    .with_context(|| format!("cannot open serial port {port}"))?,
            )
        };
        Ok(Self {
            link,
            decoder: Box::new(FrameDecoder::new()),
            pending: Vec::new(),
        })
    }

    /// Sends one frame.
    pub fn send(&mut self, ty: u8, payload: &[u8]) -> anyhow::Result<()> {
        let frame = uart::frame_to_vec(ty, payload).map_err(|e| anyhow!("frame: {e}"))?;
        match &mut self.link {
            Link::Tcp(s) => s.write_all(&frame)?,
            Link::Tty(f) => f.write_all(&frame)?,
        }
        Ok(())
    }

    /// Waits for a frame of type `want`, skipping banners and other unasked frames; an error
    /// frame becomes `Err(Stopped::Refused)`.
    pub fn expect(&mut self, want: u8, timeout: Duration) -> anyhow::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            while !self.pending.is_empty() {
                let b = self.pending.remove(0);
                if let Some(Ok(ty)) = self.decoder.push(b) {
                    let p = self.decoder.payload().to_vec();
                    if ty == want {
                        return Ok(p);
                    }
                    if ty == msg::ERROR {
                        let code = p
                            .get(..4)
                            .and_then(|b| {
                                ErrorCode::from_u32(u32::from_le_bytes(b.try_into().ok()?))
                            })
                            .unwrap_or(ErrorCode::UnknownMessage);
                        return Err(Stopped::Refused(code).into());
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no answer (frame type {want:#04x}) from the device within {timeout:?}");
            }
            let mut buf = [0u8; 1024];
            let n = match &mut self.link {
                Link::Tcp(s) => {
                    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                    s.read(&mut buf)
                }
                Link::Tty(f) => f.read(&mut buf),
            };
            match n {
                Ok(0) => bail!("the device closed the link"),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `hello` with a random challenge; the claimed identity (the coordinator checks keys).
    pub fn identify(&mut self, timeout: Duration) -> anyhow::Result<hello::HelloInfo> {
        let mut challenge = [0u8; CHALLENGE_LEN];
        getrandom(&mut challenge);
        self.send(msg::HELLO_REQUEST, &challenge)?;
        let raw = self.expect(msg::HELLO_RESPONSE, timeout)?;
        hello::peek_identity(&raw).map_err(|e| anyhow!("bad hello: {e}"))
    }

    /// Asks for a status receipt answering `challenge`.
    pub fn status(&mut self, challenge: &[u8], timeout: Duration) -> anyhow::Result<Vec<u8>> {
        self.send(update_msg::STATUS, challenge)?;
        self.expect(update_msg::RECEIPT, timeout)
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
            uart.send(update_msg::ENTER_UPDATE, &[])?;
            uart.expect(update_msg::UPDATE_MODE, timeout)?;
            return uart.identify(timeout);
        }
        Ok(info)
    })?;
    if let Some(expected) = options.expected_serial {
        if info.serial != expected {
            return Err(anyhow!(
                "the device on {} is {}, not {}: nothing sent",
                options.port,
                hex::encode(info.serial),
                hex::encode(expected)
            ));
        }
    }
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

fn push(
    uart: &mut Uart,
    package: &v1::UpdatePackage,
    options: &UpdateOptions,
) -> anyhow::Result<()> {
    let t = options.timeout;
    uart.send(update_msg::BEGIN, &package.envelope)?;
    let ready = uart.expect(update_msg::READY, t)?;
    let next = u32::from_le_bytes(ready.get(..4).context("short ready")?.try_into()?) as usize;
    for (sent, (i, chunk)) in package.chunks.iter().enumerate().skip(next).enumerate() {
        if options.max_chunks == Some(sent) {
            return Err(Stopped::Truncated(sent).into());
        }
        let mut frame = (i as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(chunk);
        uart.send(update_msg::CHUNK, &frame)?;
        uart.expect(update_msg::ACK, t)?;
    }
    uart.send(update_msg::FINISH, &[])?;
    uart.expect(update_msg::STAGED, t)?;
    uart.send(
        update_msg::INSTALL,
        &options.halt_after_step.unwrap_or(0).to_le_bytes(),
    )?;
    if options.halt_after_step.is_some() {
        // Either the install finishes before that step (INSTALLED) or the device halts.
        let halted = uart.expect(update_msg::HALTED, t)?;
        let step = u32::from_le_bytes(halted.get(..4).context("short halted")?.try_into()?);
        return Err(Stopped::Halted(step).into());
    }
    uart.expect(update_msg::INSTALLED, t)?;
    Ok(())
}
