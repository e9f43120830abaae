//! `flashgate station list|approve|revoke`: factory stations enrol themselves (pending); the
//! operator approves them by the fingerprint they printed, or revokes them.

use clap::Subcommand;
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::{cell, Printer, TableRow, ToJson};

#[derive(Subcommand)]
pub enum StationCmd {
    List {
        /// Only stations waiting for approval.
        #[arg(long)]
        pending: bool,
    },
    /// Approve a station by the fingerprint it printed at enrolment.
    Approve {
        fingerprint: String,
    },
    Revoke {
        fingerprint: String,
    },
}

pub async fn run(cmd: StationCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let mut operator = clients.operator();
    match cmd {
        StationCmd::List { pending } => {
            let state = if pending {
                v1::StationState::Pending as i32
            } else {
                0
            };
            let list = operator
                .list_stations(v1::ListStationsRequest { state })
                .await?
                .into_inner();
            out.list(&list.stations);
        }
        StationCmd::Approve { fingerprint } => {
            let s = operator
                .approve_station(v1::ApproveStationRequest {
                    station_id: fingerprint,
                })
                .await?
                .into_inner();
            out.done(
                &s,
                format_args!("station {} ({}) approved", s.station_id, s.name),
            );
        }
        StationCmd::Revoke { fingerprint } => {
            let s = operator
                .revoke_station(v1::RevokeStationRequest {
                    station_id: fingerprint,
                })
                .await?
                .into_inner();
            out.done(&s, format_args!("station {} revoked", s.station_id));
        }
    }
    Ok(())
}

fn station_state(state: i32) -> &'static str {
    match v1::StationState::try_from(state) {
        Ok(v1::StationState::Pending) => "pending",
        Ok(v1::StationState::Approved) => "approved",
        Ok(v1::StationState::Revoked) => "revoked",
        _ => "unknown",
    }
}

impl ToJson for v1::Station {
    fn json(&self) -> Value {
        json!({"station_id": self.station_id, "name": self.name, "factory": self.factory,
            "state": station_state(self.state), "ed25519_public_key": hex::encode(&self.ed25519_public_key),
            "x25519_public_key": hex::encode(&self.x25519_public_key),
            "enrolled_at_ms": self.enrolled_at_ms, "approved_at_ms": self.approved_at_ms})
    }
}

impl TableRow for v1::Station {
    const COLUMNS: &'static [&'static str] =
        &["FINGERPRINT", "NAME", "FACTORY", "STATE", "ENROLLED"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.station_id.clone(),
            self.name.clone(),
            self.factory.clone(),
            station_state(self.state).into(),
            cell::time(self.enrolled_at_ms),
        ]
    }
}
