//! `flashgate update publish|status|list`: publish an uploaded OS or app release to devices
//! (encrypted once, one envelope per device) and follow where each device stands. Staged rollouts
//! (`update rollout|pause|resume|list|status ROLLOUT`) are `rollout.rs`. Pushing a package to one
//! device over its UART is `flashgate device update` (`device.rs`).

use clap::{ArgGroup, Subcommand};
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::{cell, Printer, TableRow, ToJson};
use crate::parse;
use crate::rollout::{self, Action, RolloutArgs};

#[derive(Subcommand)]
pub enum UpdateCmd {
    /// Publish an uploaded OS or app release to devices (encrypted once, one envelope per
    /// device). An app is installed with `flashgate device app-install`, an OS with
    /// `flashgate device update`.
    #[command(group(ArgGroup::new("targets").required(true).args(["serials", "order", "all"])))]
    Publish {
        /// Digest of the OS or app release (64 hex chars, see `flashgate release list`).
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
    /// Publish in waves: each opens once the one before confirmed; failures above the
    /// threshold pause it. Prints the rollout id.
    Rollout(RolloutArgs),
    /// Stop a rollout from issuing packages (devices of open waves too) until resumed.
    Pause {
        /// The rollout (as printed by `update rollout`).
        rollout: String,
    },
    /// Continue a paused rollout: the failures so far are accepted, later ones count again.
    Resume {
        /// The rollout (as printed by `update rollout`).
        rollout: String,
    },
    /// Rollouts, newest first: state and each wave's confirmed/targeted devices (and failures).
    List {
        /// Only this product's rollouts.
        #[arg(long)]
        product: Option<u32>,
        /// At most this many (the coordinator returns at most 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// A rollout's waves and state (with ROLLOUT), or where each targeted device stands (all
    /// products, or one order's devices).
    Status {
        /// Show this rollout's waves (targeted/confirmed/failed/pending) and state.
        #[arg(conflicts_with_all = ["order", "product", "campaign"])]
        rollout: Option<String>,
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

pub async fn run(cmd: UpdateCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    match cmd {
        UpdateCmd::Publish {
            release,
            serials,
            order,
            all,
        } => {
            let release_digest = parse::hex32(&release, "--release")?;
            let serials = serials
                .iter()
                .map(|s| parse::serial(s, "--serial").map(|s| s.to_vec()))
                .collect::<Result<Vec<_>, _>>()?;
            let r = clients
                .update()
                .publish_update(v1::PublishUpdateRequest {
                    release_digest,
                    serials,
                    order_id: order.unwrap_or_default(),
                    all_devices: all,
                })
                .await?
                .into_inner();
            out.done(
                &r,
                format_args!(
                    "campaign {} published: version {} to {} device(s)",
                    r.campaign_id, r.version, r.devices
                ),
            );
        }
        UpdateCmd::Rollout(args) => rollout::start(args, clients, out).await?,
        UpdateCmd::Pause { rollout } => rollout::act(Action::Pause, rollout, clients, out).await?,
        UpdateCmd::Resume { rollout } => {
            rollout::act(Action::Resume, rollout, clients, out).await?
        }
        UpdateCmd::List { product, limit } => {
            rollout::list(product.unwrap_or(0), limit, clients, out).await?
        }
        UpdateCmd::Status {
            rollout: Some(rollout),
            ..
        } => rollout::act(Action::Status, rollout, clients, out).await?,
        UpdateCmd::Status {
            rollout: None,
            order,
            product,
            campaign,
        } => {
            let list = status(clients, order, product, campaign.unwrap_or_default()).await?;
            out.list(&list);
        }
    }
    Ok(())
}

/// The update status of the devices of one order, one product, or every product.
async fn status(
    clients: &Clients,
    order: Option<String>,
    product: Option<u32>,
    campaign_id: String,
) -> Result<Vec<v1::DeviceUpdateStatus>, Failure> {
    let mut operator = clients.operator();
    // Which products, and (for --order) which serials.
    let mut only: Option<Vec<Vec<u8>>> = None;
    let products: Vec<u32> = match (order, product) {
        (Some(order_id), _) => {
            let status = operator
                .get_order_status(v1::GetOrderStatusRequest {
                    order_id: order_id.clone(),
                })
                .await?
                .into_inner();
            let devices = operator
                .list_devices(v1::ListDevicesRequest {
                    order_id,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .devices;
            only = Some(devices.into_iter().map(|d| d.serial).collect());
            vec![status.order.unwrap_or_default().product_id]
        }
        (None, Some(p)) => vec![p],
        (None, None) => operator
            .list_products(v1::ListProductsRequest {})
            .await?
            .into_inner()
            .products
            .iter()
            .map(|p| p.product_id)
            .collect(),
    };
    let mut updates = clients.update();
    let mut list = Vec::new();
    for product_id in products {
        let devices = updates
            .get_update_status(v1::GetUpdateStatusRequest {
                product_id,
                campaign_id: campaign_id.clone(),
            })
            .await?
            .into_inner()
            .devices;
        list.extend(
            devices
                .into_iter()
                .filter(|d| only.as_ref().is_none_or(|o| o.contains(&d.serial))),
        );
    }
    Ok(list)
}

impl ToJson for v1::PublishUpdateResponse {
    fn json(&self) -> Value {
        json!({"campaign_id": self.campaign_id, "devices": self.devices, "version": self.version})
    }
}

impl ToJson for v1::DeviceUpdateStatus {
    fn json(&self) -> Value {
        json!({"serial": hex::encode(&self.serial), "product_id": self.product_id,
            "campaign_id": self.campaign_id, "target_version": self.target_version, "state": self.state,
            "bootloader_version": self.bootloader_version, "os_version": self.os_version,
            "last_outcome": self.last_outcome, "last_seen_ms": self.last_seen_ms,
            "updated_at_ms": self.updated_at_ms, "rollback_floor": self.rollback_floor, "detail": self.detail,
            "app": {"campaign_id": self.app_campaign_id, "target_version": self.app_target_version,
                "state": self.app_state, "version": self.app_version, "floor": self.app_floor,
                "detail": self.app_detail, "installed_at_ms": self.app_installed_at_ms}})
    }
}

impl TableRow for v1::DeviceUpdateStatus {
    const COLUMNS: &'static [&'static str] = &[
        "SERIAL",
        "PRODUCT",
        "CAMPAIGN",
        "TARGET",
        "STATE",
        "OS",
        "LAST SEEN",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            hex::encode(&self.serial),
            self.product_id.to_string(),
            cell::text(&self.campaign_id),
            cell::version(self.target_version),
            self.state.clone(),
            cell::version(self.os_version),
            cell::time(self.last_seen_ms),
        ]
    }
}
