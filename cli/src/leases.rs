//! `flashgate leases list`: the slots handed to stations, by order and station.

use clap::Subcommand;
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::{cell, Printer, TableRow, ToJson};

#[derive(Subcommand)]
pub enum LeasesCmd {
    List {
        #[arg(long, default_value = "")]
        order: String,
        #[arg(long, default_value = "")]
        station: String,
    },
}

pub async fn run(cmd: LeasesCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let LeasesCmd::List { order, station } = cmd;
    let list = clients
        .operator()
        .list_leases(v1::ListLeasesRequest {
            order_id: order,
            station_id: station,
        })
        .await?
        .into_inner();
    out.list(&list.leases);
    Ok(())
}

fn lease_state(state: i32) -> &'static str {
    match v1::LeaseState::try_from(state) {
        Ok(v1::LeaseState::Active) => "active",
        Ok(v1::LeaseState::Returned) => "returned",
        Ok(v1::LeaseState::Expired) => "expired",
        _ => "unknown",
    }
}

impl ToJson for v1::LeaseInfo {
    fn json(&self) -> Value {
        json!({"lease_id": self.lease_id, "station_id": self.station_id, "order_id": self.order_id,
            "count": self.count, "used": self.used, "state": lease_state(self.state),
            "issued_at_ms": self.issued_at_ms, "not_after_ms": self.not_after_ms, "released": self.released})
    }
}

impl TableRow for v1::LeaseInfo {
    const COLUMNS: &'static [&'static str] = &[
        "LEASE",
        "ORDER",
        "STATION",
        "COUNT",
        "USED",
        "STATE",
        "NOT AFTER",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.lease_id.clone(),
            self.order_id.clone(),
            self.station_id.clone(),
            self.count.to_string(),
            self.used.to_string(),
            lease_state(self.state).into(),
            cell::time(self.not_after_ms),
        ]
    }
}
