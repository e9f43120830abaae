//! `flashgate devices list|show`: the device registry (what stations reported as provisioned),
//! and for one device its update status too.

use clap::Subcommand;
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::{cell, Printer, TableRow, ToJson};
use crate::parse;

#[derive(Subcommand)]
pub enum DevicesCmd {
    /// One device: registry entry, bootloader/OS versions, test result, last update, last seen.
    Show {
        /// 32 hex chars.
        serial: String,
        /// The product, when the serial is registered for several.
        #[arg(long)]
        product: Option<u32>,
    },
    /// Registered devices, filtered.
    List {
        #[arg(long, default_value_t = 0)]
        product: u32,
        #[arg(long, default_value = "")]
        order: String,
        #[arg(long, default_value = "")]
        station: String,
        /// 32 hex chars.
        #[arg(long)]
        serial: Option<String>,
        #[command(flatten)]
        window: parse::Window,
    },
}

pub async fn run(cmd: DevicesCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    match cmd {
        DevicesCmd::Show { serial, product } => show(clients, out, &serial, product).await,
        DevicesCmd::List {
            product,
            order,
            station,
            serial,
            window,
        } => {
            let serial = match serial {
                Some(s) => parse::serial(&s, "--serial")?.to_vec(),
                None => vec![],
            };
            let list = clients
                .operator()
                .list_devices(v1::ListDevicesRequest {
                    product_id: product,
                    order_id: order,
                    station_id: station,
                    from_ms: window.since,
                    to_ms: window.until,
                    serial,
                    limit: window.limit,
                })
                .await?
                .into_inner();
            out.list(&list.devices);
            Ok(())
        }
    }
}

/// The registry entry and the update status of one device.
async fn show(
    clients: &Clients,
    out: &Printer,
    serial: &str,
    product: Option<u32>,
) -> Result<(), Failure> {
    let serial = parse::serial(serial, "serial")?;
    let devices = clients
        .operator()
        .list_devices(v1::ListDevicesRequest {
            product_id: product.unwrap_or(0),
            serial: serial.to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .devices;
    let device = match devices.as_slice() {
        [] => {
            return Err(Failure::not_found(format_args!(
                "no device {} is registered{}",
                hex::encode(serial),
                product
                    .map(|p| format!(" for product {p}"))
                    .unwrap_or_default()
            )))
        }
        [one] => one,
        _ => {
            return Err(Failure::usage(format_args!(
                "serial {} is registered for several products; add --product",
                hex::encode(serial)
            )))
        }
    };
    let update = clients
        .update()
        .get_device_status(v1::GetDeviceStatusRequest {
            product_id: device.product_id,
            serial: serial.to_vec(),
        })
        .await?
        .into_inner();
    // The device's own report (a receipt) is newer than what the station registered.
    let newer = |reported: u32, registered: u32| if reported == 0 { registered } else { reported };
    let bootloader = newer(update.bootloader_version, device.bootloader_version);
    let os = newer(update.os_version, device.os_version);
    let mut fields = vec![
        ("serial", hex::encode(&device.serial)),
        ("product", device.product_id.to_string()),
        ("order", device.order_id.clone()),
        ("station", device.station_id.clone()),
        ("installed", cell::time(device.installed_at_ms)),
        ("bootloader version", cell::version(bootloader)),
        ("os version", cell::version(os)),
        ("factory os version", cell::version(device.os_version)),
        ("test result", test_outcome(&device.test_result).to_owned()),
        ("update state", cell::text(&update.state)),
        ("update campaign", cell::text(&update.campaign_id)),
        ("update target", cell::version(update.target_version)),
        ("last update outcome", cell::text(&update.last_outcome)),
        ("last seen", cell::time(update.last_seen_ms)),
        ("rollback floor", cell::version(update.rollback_floor)),
        ("app version", cell::version(update.app_version)),
        ("app state", cell::text(&update.app_state)),
        ("app campaign", cell::text(&update.app_campaign_id)),
        ("app target", cell::version(update.app_target_version)),
        ("app floor", cell::version(update.app_floor)),
    ];
    if !update.app_detail.is_empty() {
        fields.push(("app detail", update.app_detail.clone()));
    }
    if device.clone_evidence.is_empty() {
        fields.push(("clone evidence", "none".to_owned()));
    }
    for evidence in &device.clone_evidence {
        fields.push(("clone evidence", evidence.clone()));
    }
    out.details(
        &Details {
            device,
            update: &update,
        },
        &fields,
    );
    Ok(())
}

/// `devices show -o json`: the registry entry with its update status under `update`.
struct Details<'a> {
    device: &'a v1::Device,
    update: &'a v1::DeviceUpdateStatus,
}

impl ToJson for Details<'_> {
    fn json(&self) -> Value {
        let mut value = self.device.json();
        value["update"] = self.update.json();
        value
    }
}

fn test_outcome(result: &Option<v1::TestResult>) -> &'static str {
    match result
        .as_ref()
        .map(|r| v1::TestOutcome::try_from(r.outcome))
    {
        Some(Ok(v1::TestOutcome::Pass)) => "pass",
        Some(Ok(v1::TestOutcome::Fail)) => "fail",
        Some(Ok(v1::TestOutcome::None)) => "none",
        _ => "-",
    }
}

fn install_outcome(outcome: i32) -> &'static str {
    match v1::InstallOutcome::try_from(outcome) {
        Ok(v1::InstallOutcome::Provisioned) => "provisioned",
        Ok(v1::InstallOutcome::Failed) => "failed",
        // Retired value, still found in old records.
        _ if outcome == 2 => "rejected",
        _ => "unknown",
    }
}

impl ToJson for v1::Device {
    fn json(&self) -> Value {
        json!({"serial": hex::encode(&self.serial), "product_id": self.product_id,
            "order_id": self.order_id, "lease_id": self.lease_id, "station_id": self.station_id,
            "installed_at_ms": self.installed_at_ms, "registered_at_ms": self.registered_at_ms,
            "bootloader_version": self.bootloader_version, "os_version": self.os_version,
            "test_result": test_outcome(&self.test_result),
            "outcome": install_outcome(self.outcome), "clone_evidence": self.clone_evidence,
            "test_log": self.test_result.as_ref().map(|t| t.log.clone()).unwrap_or_default()})
    }
}

impl TableRow for v1::Device {
    const COLUMNS: &'static [&'static str] = &[
        "SERIAL",
        "PRODUCT",
        "ORDER",
        "STATION",
        "INSTALLED",
        "BOOTLOADER",
        "OS",
        "TEST",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            hex::encode(&self.serial),
            self.product_id.to_string(),
            self.order_id.clone(),
            self.station_id.clone(),
            cell::time(self.installed_at_ms),
            self.bootloader_version.to_string(),
            cell::version(self.os_version),
            test_outcome(&self.test_result).into(),
        ]
    }
}
