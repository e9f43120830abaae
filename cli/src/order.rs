//! `flashgate order create`: allow stations (or a factory) to make a number of devices. Where
//! orders stand is `flashgate orders status` (`orders.rs`).

use clap::Subcommand;
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::{Printer, ToJson};
use crate::parse::hex32;

#[derive(Subcommand)]
pub enum OrderCmd {
    /// Allow stations (or a factory) to make COUNT devices of a product.
    Create {
        #[arg(long)]
        product: u32,
        /// Bootloader release digest (hex).
        #[arg(long)]
        bootloader: String,
        /// Test app release digest (hex).
        #[arg(long)]
        test_app: Option<String>,
        /// OS release digest (hex): every board leaves the factory running it. The station
        /// installs it from per-device packages and never holds it in clear.
        #[arg(long)]
        os: Option<String>,
        /// Station fingerprint allowed to work on the order. Repeatable.
        #[arg(long = "station")]
        stations: Vec<String>,
        /// Factory whose approved stations may work on the order.
        #[arg(long, default_value = "")]
        factory: String,
        #[arg(long)]
        count: u64,
        /// Order id (generated when omitted).
        #[arg(long, default_value = "")]
        id: String,
    },
    /// End an order: no new lease; unreserved slots are taken away (the orders role; audited).
    Cancel { order_id: String },
}

pub async fn run(cmd: OrderCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let (product, bootloader, test_app, os, stations, factory, count, id) = match cmd {
        OrderCmd::Create {
            product,
            bootloader,
            test_app,
            os,
            stations,
            factory,
            count,
            id,
        } => (
            product, bootloader, test_app, os, stations, factory, count, id,
        ),
        OrderCmd::Cancel { order_id } => {
            let status = clients
                .operator()
                .cancel_order(v1::CancelOrderRequest {
                    order_id: order_id.clone(),
                })
                .await?
                .into_inner();
            out.done(
                &json!({"order_id": order_id, "remaining": status.remaining,
                    "reserved": status.reserved, "consumed": status.consumed}),
                format_args!(
                    "order {order_id} cancelled: {} consumed, {} still reserved by active leases",
                    status.consumed, status.reserved
                ),
            );
            return Ok(());
        }
    };
    let optional = |digest: Option<String>, flag| digest.map_or(Ok(vec![]), |d| hex32(&d, flag));
    let test_app_digest = optional(test_app, "--test-app")?;
    let os_release_digest = optional(os, "--os")?;
    let o = clients
        .operator()
        .create_order(v1::CreateOrderRequest {
            product_id: product,
            bootloader_digest: hex32(&bootloader, "--bootloader")?,
            test_app_digest,
            station_ids: stations,
            factory,
            count,
            order_id: id,
            os_release_digest,
        })
        .await?
        .into_inner();
    out.done(
        &o,
        format_args!(
            "order {} created: {} devices of product {}{}",
            o.order_id,
            o.count,
            o.product_id,
            match o.os_version {
                0 => String::new(),
                v => format!(", leaving with OS version {v}"),
            }
        ),
    );
    Ok(())
}

impl ToJson for v1::Order {
    fn json(&self) -> Value {
        json!({"order_id": self.order_id, "product_id": self.product_id,
            "bootloader_digest": hex::encode(&self.bootloader_digest),
            "test_app_digest": hex::encode(&self.test_app_digest),
            "os_release_digest": hex::encode(&self.os_release_digest), "os_version": self.os_version,
            "station_ids": self.station_ids,
            "factory": self.factory, "count": self.count, "created_at_ms": self.created_at_ms})
    }
}
