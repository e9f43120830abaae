//! `flashgate device app-install --port …`: installs the app published to one device from its
//! per-device package, over the UART, while its OS runs (no reset).
//!
//! 1. `hello` over the UART: the device's serial and product (not trusted yet); its OS must be
//!    running (the OS installs apps, the bootloader does not);
//! 2. `GetAppPackage` from the coordinator: envelope + chunks + app receipt challenge;
//! 3. relay the package (`app::install`): begin, every chunk, commit; a refusal is reported
//!    to the coordinator (`ReportAppInstall` with the code) and ends the run;
//! 4. ask the device for an app receipt with the coordinator's challenge and relay it
//!    (`ReportAppInstall`), which the coordinator verifies with the device key;
//! 5. with `start`, call the app (`AppStart`) and collect what it logs.
//!
//! The tool handles only ciphertext and MACs: it never sees the app or a key.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use flashgate_proto::v1;
use flashgate_protocol::app::receipt::{self, AppReceipt};
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::uart::{DeviceMessage, MsgType, Request};

use crate::device_update::{check_serial, stopped, Stopped, Uart};
use crate::grpc::UpdateClient;

/// Options of one run.
#[derive(Clone, Debug)]
pub struct AppInstallOptions {
    /// `tcp:HOST:PORT` or a serial device path.
    pub port: String,
    /// Per-reply timeout.
    pub timeout: Duration,
    /// Refuse to go on unless the device on the port answers with this serial.
    pub expected_serial: Option<[u8; 16]>,
    /// Start the app once it is installed.
    pub start: bool,
}

impl AppInstallOptions {
    /// Defaults for `port`.
    pub fn new(port: impl Into<String>) -> Self {
        Self {
            port: port.into(),
            timeout: Duration::from_secs(30),
            expected_serial: None,
            start: false,
        }
    }
}

/// What a started app did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRun {
    /// The lines it logged.
    pub log: Vec<String>,
    /// What its entry returned (0 = ok).
    pub status: u32,
}

/// How an app install run ends for the caller.
#[derive(Debug)]
pub struct AppInstallReport {
    /// The device's serial (hex).
    pub serial: String,
    /// The version installed (as the device acknowledged it).
    pub version: u32,
    /// What the device said in its app receipt (unverified copy; the coordinator verified it).
    pub receipt: AppReceipt,
    /// The registry's view after the report.
    pub status: v1::DeviceUpdateStatus,
    /// The app's run, when asked to start it.
    pub run: Option<AppRun>,
}

/// Runs one app install end to end (see the module documentation). `client` carries the
/// operator's credentials ([`crate::grpc::Clients::update`]).
pub async fn run(
    client: &mut UpdateClient,
    options: &AppInstallOptions,
) -> anyhow::Result<AppInstallReport> {
    let timeout = options.timeout;
    let port = options.port.clone();
    let (mut uart, info) = tokio::task::block_in_place(|| -> anyhow::Result<_> {
        let mut uart = Uart::open(&port)?;
        let info = uart.identify(timeout)?;
        Ok((uart, info))
    })?;
    if let DeviceState::NoValidImage { reason } = info.state {
        return Err(anyhow!(
            "the device on {} runs no OS ({reason}): apps are installed by the OS; \
             update it first (`flashgate device update`)",
            options.port
        ));
    }
    check_serial(&info, &options.port, options.expected_serial)?;
    let serial = info.serial.to_vec();
    let package = client
        .get_app_package(v1::GetUpdatePackageRequest {
            product_id: info.product_id,
            serial: serial.clone(),
        })
        .await?
        .into_inner();
    let challenge: [u8; receipt::CHALLENGE_LEN] =
        package.challenge.as_slice().try_into().map_err(|_| {
            anyhow!(
                "the coordinator's app receipt challenge is not {} bytes",
                receipt::CHALLENGE_LEN
            )
        })?;
    let relayed = tokio::task::block_in_place(|| {
        uart.link()
            .relay_app_package(&package.envelope, &package.chunks, timeout)
            .map_err(stopped)
    });
    let version = match relayed {
        Ok(version) => version,
        Err(e) => {
            let Some(Stopped::Refused(code)) = e.downcast_ref::<Stopped>() else {
                return Err(e);
            };
            let code = *code;
            client
                .report_app_install(v1::ReportUpdateRequest {
                    product_id: info.product_id,
                    serial: serial.clone(),
                    receipt: Vec::new(),
                    refused_code: code as u32,
                })
                .await?;
            return Err(Stopped::AppRefused(code).into());
        }
    };
    let raw = tokio::task::block_in_place(|| {
        uart.link().app_receipt(challenge, timeout).map_err(stopped)
    })?;
    let receipt = receipt::peek(&raw).map_err(|e| anyhow!("bad app receipt: {e}"))?;
    let status = client
        .report_app_install(v1::ReportUpdateRequest {
            product_id: info.product_id,
            serial: serial.clone(),
            receipt: raw.to_vec(),
            refused_code: 0,
        })
        .await?
        .into_inner();
    let run = if options.start {
        Some(tokio::task::block_in_place(|| start(&mut uart, timeout))?)
    } else {
        None
    };
    Ok(AppInstallReport {
        serial: hex::encode(serial),
        version,
        receipt,
        status,
        run,
    })
}

/// Starts the installed app (the OS verifies it again first) and collects its log lines until
/// the OS acknowledges its return.
fn start(uart: &mut Uart, timeout: Duration) -> anyhow::Result<AppRun> {
    uart.send(&Request::AppStart)?;
    let deadline = Instant::now() + timeout;
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = uart.link().receive(left).map_err(stopped)?;
        match got.message() {
            Ok(DeviceMessage::AppLog(text)) => {
                log.push(String::from_utf8_lossy(text).trim_end().to_owned());
            }
            Ok(DeviceMessage::AppAck {
                step: MsgType::AppStart,
                value,
            }) => return Ok(AppRun { log, status: value }),
            Ok(DeviceMessage::Error(code)) => return Err(Stopped::Refused(code).into()),
            Ok(DeviceMessage::BootBanner(_)) => {
                return Err(anyhow!("the device reset while its app ran"))
            }
            _ => {}
        }
    }
}
