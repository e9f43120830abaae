//! `flashgate device update --port … --serial …`, `flashgate device app-install --port …
//! --serial …` and `flashgate device verify --port …`: the field tool for one device on a
//! serial link. The flows themselves are the library's
//! ([`flashgate_cli::device_update`]: hello, package, transfer, receipt;
//! [`flashgate_cli::device_app`]: hello, app package, transfer, app receipt;
//! [`flashgate_cli::device_verify`]: challenge, hello, verdict).

use std::time::Duration;

use clap::{Args, Subcommand};
use flashgate_cli::device_app::{self, AppInstallOptions, AppInstallReport};
use flashgate_cli::device_update::{self, UpdateOptions, UpdateReport};
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use flashgate_protocol::uart::host::LinkError;
use serde_json::{json, Value};

use crate::exit::{Exit, Failure};
use crate::output::{cell, Printer, ToJson};
use crate::parse;

#[derive(Subcommand)]
pub enum DeviceCmd {
    /// Update one device on a serial port with the release published to it.
    Update(DeviceUpdateArgs),
    /// Install the app published to one device on a serial port, while its OS runs (no reset).
    AppInstall(DeviceAppInstallArgs),
    /// Check that the board on a serial port is genuine: exit 0 genuine, 8 unregistered,
    /// 9 clone suspected.
    Verify(DeviceVerifyArgs),
    /// Send one sealed message down to a device (over the data connection it keeps open):
    /// --text, --interval or --check-update. Needs the field role; audited.
    Send(crate::device_message::DeviceSendArgs),
    /// A device's down messages and their delivery (queued, delivered, acked, refused).
    Messages(crate::device_message::DeviceMessagesArgs),
}

#[derive(Args)]
pub struct DeviceVerifyArgs {
    /// `tcp:HOST:PORT` or a serial device such as /dev/ttyUSB0.
    #[arg(long)]
    port: String,
    /// Seconds to wait for the board's answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

#[derive(Args)]
pub struct DeviceUpdateArgs {
    /// `tcp:HOST:PORT` or a serial device such as /dev/ttyUSB0.
    #[arg(long)]
    port: String,
    /// The serial the device must answer with (32 hex chars): nothing is sent to another one.
    #[arg(long)]
    serial: String,
    /// Seconds to wait for each reply of the device.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

#[derive(Args)]
pub struct DeviceAppInstallArgs {
    /// The port, the serial and the timeout, as for `device update`.
    #[command(flatten)]
    device: DeviceUpdateArgs,
    /// Start the app once installed and print what it logs.
    #[arg(long)]
    start: bool,
}

pub async fn run(cmd: DeviceCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    match cmd {
        DeviceCmd::Update(args) => update(args, clients, out).await,
        DeviceCmd::AppInstall(args) => app_install(args, clients, out).await,
        DeviceCmd::Verify(args) => verify(args, clients, out).await,
        DeviceCmd::Send(args) => crate::device_message::send(args, clients, out).await,
        DeviceCmd::Messages(args) => crate::device_message::messages(args, clients, out).await,
    }
}

async fn update(args: DeviceUpdateArgs, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let mut options = UpdateOptions::new(args.port);
    options.expected_serial = Some(parse::serial(&args.serial, "--serial")?);
    options.timeout = Duration::from_secs(args.timeout.max(1));
    let report = device_update::run(&mut clients.update(), &options)
        .await
        .map_err(link_failure)?;
    out.done(
        &report,
        format_args!(
            "device {} updated to version {}: {} (OS {}, last outcome {})",
            report.serial,
            report.version,
            report.status.state,
            cell::version(report.status.os_version),
            cell::text(&report.status.last_outcome)
        ),
    );
    Ok(())
}

async fn app_install(
    args: DeviceAppInstallArgs,
    clients: &Clients,
    out: &Printer,
) -> Result<(), Failure> {
    let mut options = AppInstallOptions::new(args.device.port);
    options.expected_serial = Some(parse::serial(&args.device.serial, "--serial")?);
    options.timeout = Duration::from_secs(args.device.timeout.max(1));
    options.start = args.start;
    let report = device_app::run(&mut clients.update(), &options)
        .await
        .map_err(link_failure)?;
    let mut sentence = format!(
        "device {}: app version {} installed: {} (app floor {})",
        report.serial,
        report.version,
        cell::text(&report.status.app_state),
        cell::version(report.status.app_floor),
    );
    if let Some(run) = &report.run {
        for line in &run.log {
            sentence.push_str(&format!("\n  app: {line}"));
        }
        sentence.push_str(&format!("\n  app returned {}", run.status));
    }
    out.done(&report, sentence);
    Ok(())
}

/// Prints the verdict (with its reasons) on stdout; a board that is not genuine ends the
/// command with its own exit code.
async fn verify(args: DeviceVerifyArgs, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let verdict = flashgate_cli::device_verify::run(&mut clients.operator(), &args.port, timeout)
        .await
        .map_err(link_failure)?;
    let (word, exit) = match verdict.verdict() {
        v1::Genuineness::Genuine => ("genuine", None),
        v1::Genuineness::Unregistered => ("unregistered", Some(Exit::Unregistered)),
        v1::Genuineness::CloneSuspected => ("clone suspected", Some(Exit::CloneSuspected)),
        v1::Genuineness::Unspecified => {
            return Err(Failure::new(
                Exit::Other,
                "the coordinator returned no verdict (is it older than this flashgate?)",
            ))
        }
    };
    let mut sentence = format!(
        "device {} (product {}, chip {}): {word}",
        hex::encode(&verdict.serial),
        verdict.product_id,
        hex::encode(&verdict.chip_uid)
    );
    for reason in &verdict.reasons {
        sentence.push_str(&format!("\n  - {reason}"));
    }
    if let Some(device) = verdict
        .device
        .as_ref()
        .filter(|d| !d.clone_evidence.is_empty())
    {
        sentence.push_str(&format!(
            "\n  clone evidence on record for this identity: {} (see `flashgate devices show {}`)",
            device.clone_evidence.len(),
            hex::encode(&device.serial)
        ));
    }
    out.done(&verdict, sentence);
    match exit {
        None => Ok(()),
        Some(code) => Err(Failure::new(
            code,
            format_args!("device verify: {word} (exit {})", code as u8),
        )),
    }
}

impl ToJson for v1::DeviceVerdict {
    fn json(&self) -> Value {
        let verdict = match self.verdict() {
            v1::Genuineness::Genuine => "genuine",
            v1::Genuineness::Unregistered => "unregistered",
            v1::Genuineness::CloneSuspected => "clone_suspected",
            v1::Genuineness::Unspecified => "unspecified",
        };
        json!({"verdict": verdict, "reasons": self.reasons,
            "serial": hex::encode(&self.serial), "chip_uid": hex::encode(&self.chip_uid),
            "product_id": self.product_id,
            "clone_evidence": self.device.as_ref().map(|d| d.clone_evidence.clone()).unwrap_or_default()})
    }
}

/// A port that cannot be opened, a link that breaks or a device that does not answer is
/// unavailable (3) like an unreachable coordinator: run again (a transfer resumes where it
/// stopped).
fn link_failure(error: anyhow::Error) -> Failure {
    let link_down = |cause: &(dyn std::error::Error + 'static)| {
        cause.is::<std::io::Error>()
            || matches!(
                cause.downcast_ref::<LinkError>(),
                Some(LinkError::Io(_) | LinkError::Timeout { .. } | LinkError::Closed)
            )
    };
    if error.chain().any(link_down) {
        Failure::new(Exit::Unavailable, format_args!("{error:#}"))
    } else {
        error.into()
    }
}

impl ToJson for UpdateReport {
    fn json(&self) -> Value {
        json!({"serial": self.serial, "version": self.version, "status": self.status.json()})
    }
}

impl ToJson for AppInstallReport {
    fn json(&self) -> Value {
        json!({"serial": self.serial, "version": self.version, "status": self.status.json(),
            "run": self.run.as_ref().map(|r| json!({"log": r.log, "status": r.status}))})
    }
}
