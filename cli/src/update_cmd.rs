//! `flashgate update …` (publish a release to devices, see where they stand), `flashgate device
//! update` (the field tool: push a device's package over its UART, relay its receipt) and
//! `flashgate devices show SERIAL` (registry + update status of one device).

use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};
use flashgate_cli::device_update::{self, UpdateOptions};
use flashgate_proto::v1::{
    self, operator_service_client::OperatorServiceClient,
    update_service_client::UpdateServiceClient,
};
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::{device_json, emit_json, ms, print_table, request, test_outcome, usage, Failure};

#[derive(Subcommand)]
pub enum UpdateCmd {
    /// Publish an uploaded OS release to devices (encrypted once, one envelope per device).
    #[command(group(ArgGroup::new("targets").required(true).args(["serials", "order", "all"])))]
    Publish {
        /// Digest of the OS release (64 hex chars, see `flashgate release list`).
        #[arg(long)]
        release: String,
        /// Target this device (32 hex chars). Repeatable.
        #[arg(long = "serial")]
        serials: Vec<String>,
        /// Target every device registered under this order (a rollout group).
        #[arg(long)]
        order: Option<String>,
        /// Target every registered device of the release's product.
        #[arg(long)]
        all: bool,
    },
    /// Where each targeted device stands (all products, or one order's devices).
    Status {
        /// Only the devices of this order.
        #[arg(long)]
        order: Option<String>,
        /// Only this product.
        #[arg(long)]
        product: Option<u32>,
        /// Only this campaign (as printed by `update publish`).
        #[arg(long)]
        campaign: Option<String>,
    },
}

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

fn serial_arg(text: &str) -> Result<[u8; 16], Failure> {
    flashgate_proto::serial::from_hex(text.trim())
        .ok_or_else(|| usage(format!("serial {text:?} must be 32 hex characters")))
}

fn update_json(s: &v1::DeviceUpdateStatus) -> Value {
    json!({"serial": hex::encode(&s.serial), "product_id": s.product_id, "campaign_id": s.campaign_id,
        "target_version": s.target_version, "state": s.state, "bootloader_version": s.bootloader_version,
        "os_version": s.os_version, "last_outcome": s.last_outcome, "last_seen_ms": s.last_seen_ms,
        "updated_at_ms": s.updated_at_ms, "rollback_floor": s.rollback_floor, "detail": s.detail})
}

fn version(v: u32) -> String {
    if v == 0 {
        "-".into()
    } else {
        v.to_string()
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

pub async fn run_update(
    cmd: UpdateCmd,
    channel: Channel,
    token: &str,
    json: bool,
) -> Result<(), Failure> {
    let mut updates = UpdateServiceClient::new(channel.clone());
    let mut operator = OperatorServiceClient::new(channel);
    match cmd {
        UpdateCmd::Publish {
            release,
            serials,
            order,
            all,
        } => {
            let release_digest = super::hex32(&release, "--release")?;
            let serials = serials
                .iter()
                .map(|s| serial_arg(s).map(|s| s.to_vec()))
                .collect::<Result<Vec<_>, _>>()?;
            let r = updates
                .publish_update(request(
                    token,
                    v1::PublishUpdateRequest {
                        release_digest,
                        serials,
                        order_id: order.unwrap_or_default(),
                        all_devices: all,
                    },
                ))
                .await?
                .into_inner();
            if json {
                emit_json(
                    json!({"campaign_id": r.campaign_id, "devices": r.devices, "version": r.version}),
                )
            } else {
                println!(
                    "campaign {} published: version {} to {} device(s)",
                    r.campaign_id, r.version, r.devices
                )
            }
        }
        UpdateCmd::Status {
            order,
            product,
            campaign,
        } => {
            // Which products, and (for --order) which serials.
            let mut only: Option<Vec<Vec<u8>>> = None;
            let products: Vec<u32> = match (&order, product) {
                (Some(order_id), _) => {
                    let status = operator
                        .get_order_status(request(
                            token,
                            v1::GetOrderStatusRequest {
                                order_id: order_id.clone(),
                            },
                        ))
                        .await?
                        .into_inner();
                    let devices = operator
                        .list_devices(request(
                            token,
                            v1::ListDevicesRequest {
                                order_id: order_id.clone(),
                                ..Default::default()
                            },
                        ))
                        .await?
                        .into_inner()
                        .devices;
                    only = Some(devices.into_iter().map(|d| d.serial).collect());
                    vec![status.order.unwrap_or_default().product_id]
                }
                (None, Some(p)) => vec![p],
                (None, None) => operator
                    .list_products(request(token, v1::ListProductsRequest {}))
                    .await?
                    .into_inner()
                    .products
                    .iter()
                    .map(|p| p.product_id)
                    .collect(),
            };
            let mut list = Vec::new();
            for product_id in products {
                list.extend(
                    updates
                        .get_update_status(request(
                            token,
                            v1::GetUpdateStatusRequest {
                                product_id,
                                campaign_id: campaign.clone().unwrap_or_default(),
                            },
                        ))
                        .await?
                        .into_inner()
                        .devices
                        .into_iter()
                        .filter(|d| only.as_ref().is_none_or(|o| o.contains(&d.serial))),
                );
            }
            if json {
                emit_json(Value::Array(list.iter().map(update_json).collect()))
            } else {
                print_table(
                    &[
                        "SERIAL",
                        "PRODUCT",
                        "CAMPAIGN",
                        "TARGET",
                        "STATE",
                        "OS",
                        "LAST SEEN",
                    ],
                    list.iter()
                        .map(|s| {
                            vec![
                                hex::encode(&s.serial),
                                s.product_id.to_string(),
                                or_dash(&s.campaign_id),
                                version(s.target_version),
                                s.state.clone(),
                                version(s.os_version),
                                ms(s.last_seen_ms),
                            ]
                        })
                        .collect(),
                );
            }
        }
    }
    Ok(())
}

pub async fn run_device(
    cmd: DeviceCmd,
    channel: Channel,
    token: &str,
    json: bool,
) -> Result<(), Failure> {
    let DeviceCmd::Update(args) = cmd;
    let mut options = UpdateOptions::new(args.port);
    options.expected_serial = Some(serial_arg(&args.serial)?);
    options.timeout = Duration::from_secs(args.timeout.max(1));
    let mut client = UpdateServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let report = device_update::run(&mut client, token, &options)
        .await
        .map_err(|e| match e.downcast::<tonic::Status>() {
            Ok(status) => Failure::from(status),
            Err(e) => Failure::from(e),
        })?;
    if json {
        emit_json(
            json!({"serial": report.serial, "version": report.version, "status": update_json(&report.status)}),
        )
    } else {
        println!(
            "device {} updated to version {}: {} (OS {}, last outcome {})",
            report.serial,
            report.version,
            report.status.state,
            version(report.status.os_version),
            or_dash(&report.status.last_outcome)
        )
    }
    Ok(())
}

/// `devices show SERIAL`: the registry entry and the update status of one device.
pub async fn show_device(
    channel: Channel,
    token: &str,
    json: bool,
    serial: &str,
    product: Option<u32>,
) -> Result<(), Failure> {
    let serial = serial_arg(serial)?;
    let mut operator = OperatorServiceClient::new(channel.clone());
    let devices = operator
        .list_devices(request(
            token,
            v1::ListDevicesRequest {
                product_id: product.unwrap_or(0),
                serial: serial.to_vec(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .devices;
    let device = match devices.as_slice() {
        [] => {
            return Err(Failure {
                code: 4,
                message: format!(
                    "no device {} is registered{}",
                    hex::encode(serial),
                    product
                        .map(|p| format!(" for product {p}"))
                        .unwrap_or_default()
                ),
            })
        }
        [one] => one.clone(),
        _ => {
            return Err(usage(format!(
                "serial {} is registered for several products; add --product",
                hex::encode(serial)
            )))
        }
    };
    let status = UpdateServiceClient::new(channel)
        .get_device_status(request(
            token,
            v1::GetDeviceStatusRequest {
                product_id: device.product_id,
                serial: serial.to_vec(),
            },
        ))
        .await?
        .into_inner();
    if json {
        let mut value = device_json(&device);
        value["update"] = update_json(&status);
        emit_json(value);
        return Ok(());
    }
    let bootloader = if status.bootloader_version != 0 {
        status.bootloader_version
    } else {
        device.bootloader_version
    };
    let rows = [
        ("serial", hex::encode(&device.serial)),
        ("product", device.product_id.to_string()),
        ("order", device.order_id.clone()),
        ("station", device.station_id.clone()),
        ("installed", ms(device.installed_at_ms)),
        ("bootloader version", version(bootloader)),
        ("os version", version(status.os_version)),
        ("test result", test_outcome(&device.test_result).to_owned()),
        ("update state", or_dash(&status.state)),
        ("update campaign", or_dash(&status.campaign_id)),
        ("update target", version(status.target_version)),
        ("last update outcome", or_dash(&status.last_outcome)),
        ("last seen", ms(status.last_seen_ms)),
        ("rollback floor", version(status.rollback_floor)),
    ];
    for (key, value) in rows {
        println!("{:<20} {value}", format!("{key}:"));
    }
    Ok(())
}
