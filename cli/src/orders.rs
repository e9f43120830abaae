//! `flashgate orders status [ORDER] [--watch]`: count, consumed, failed, reserved and remaining
//! slots of one or all orders. Creating one is `flashgate order create` (`order.rs`).

use std::time::Duration;

use clap::Subcommand;
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::{Printer, TableRow, ToJson};

#[derive(Subcommand)]
pub enum OrdersCmd {
    /// Count, consumed, failed, reserved and remaining slots of one or all orders.
    Status {
        order: Option<String>,
        /// Keep printing the status every --interval seconds (Ctrl-C to stop).
        #[arg(short, long)]
        watch: bool,
        /// Seconds between refreshes with --watch.
        #[arg(long, default_value_t = 2, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        /// Stop after this many refreshes (scripts, tests).
        #[arg(long, hide = true, requires = "watch")]
        watch_count: Option<u64>,
    },
}

pub async fn run(cmd: OrdersCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let OrdersCmd::Status {
        order,
        watch,
        interval,
        watch_count,
    } = cmd;
    let mut operator = clients.operator();
    let mut refresh = 0u64;
    loop {
        let list = match &order {
            Some(order_id) => vec![operator
                .get_order_status(v1::GetOrderStatusRequest {
                    order_id: order_id.clone(),
                })
                .await?
                .into_inner()],
            None => {
                operator
                    .list_orders(v1::ListOrdersRequest {})
                    .await?
                    .into_inner()
                    .orders
            }
        };
        if !watch {
            out.list(&list);
            return Ok(());
        }
        out.refresh(
            &list,
            format_args!("every {interval}s: flashgate orders status (Ctrl-C to stop)"),
            refresh,
        );
        refresh += 1;
        if watch_count.is_some_and(|n| refresh >= n) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
    }
}

impl ToJson for v1::OrderStatus {
    fn json(&self) -> Value {
        json!({"order": self.order.as_ref().map(ToJson::json), "remaining": self.remaining,
            "reserved": self.reserved, "consumed": self.consumed, "failed": self.failed,
            "active_leases": self.active_leases})
    }
}

impl TableRow for v1::OrderStatus {
    const COLUMNS: &'static [&'static str] = &[
        "ORDER",
        "PRODUCT",
        "COUNT",
        "CONSUMED",
        "FAILED",
        "RESERVED",
        "REMAINING",
        "LEASES",
    ];
    fn cells(&self) -> Vec<String> {
        let o = self.order.clone().unwrap_or_default();
        vec![
            o.order_id,
            o.product_id.to_string(),
            o.count.to_string(),
            self.consumed.to_string(),
            self.failed.to_string(),
            self.reserved.to_string(),
            self.remaining.to_string(),
            self.active_leases.to_string(),
        ]
    }
}
