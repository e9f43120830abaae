//! `flashgate device update --port … --serial …`: the field tool for one device on a serial
//! link. The flow itself (hello, package, transfer, receipt) is the library's
//! [`flashgate_cli::device_update`], which the end-to-end tests drive too.

use std::time::Duration;

use clap::{Args, Subcommand};
use flashgate_cli::device_update::{self, UpdateOptions, UpdateReport};
use flashgate_cli::grpc::Clients;
use serde_json::{json, Value};

use crate::exit::{Exit, Failure};
use crate::output::{cell, Printer, ToJson};
use crate::parse;

#[derive(Subcommand)]
pub enum DeviceCmd {
    /// Update one device on a serial port with the release published to it.
    Update(DeviceUpdateArgs),
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

pub async fn run(cmd: DeviceCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let DeviceCmd::Update(args) = cmd;
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

/// A port that cannot be opened, or a link that breaks, is unavailable (3) like an unreachable
/// coordinator: run again (the transfer resumes where it stopped).
fn link_failure(error: anyhow::Error) -> Failure {
    if error.chain().any(|cause| cause.is::<std::io::Error>()) {
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
