//! `flashgate station list|approve|revoke|bundle`: a station enrols with an operator's
//! enrolment bundle (`bundle`: endpoint, CA, lease-signing key, pinned vendor keys and a
//! one-time token that approves it), carried to the station out of band; stations enrolled
//! without one wait (pending) for `approve`, by the fingerprint they printed.

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
    /// Make an enrolment bundle for a new station (`flashgate-station enrol --bundle FILE`).
    Bundle {
        /// The new file to write (mode 0600: the token in it approves a station).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Seconds the token may be used (at most 7 days).
        #[arg(long, default_value_t = 86_400)]
        valid_secs: u32,
        /// What it is for (kept in the audit log), e.g. the station's name.
        #[arg(long, default_value = "")]
        note: String,
        /// Vendor public key (64 hex) the station must pin: required (a station without a pin
        /// refuses to run). Repeatable.
        #[arg(long = "vendor-key", required = true)]
        vendor_keys: Vec<String>,
        /// The endpoint the station uses, if not the one this CLI reaches.
        #[arg(long)]
        station_endpoint: Option<String>,
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
        StationCmd::Bundle {
            out: path,
            valid_secs,
            note,
            vendor_keys,
            station_endpoint,
        } => {
            for key in &vendor_keys {
                if hex::decode(key.trim()).map(|k| k.len()) != Ok(32) {
                    return Err(Failure::usage(format_args!(
                        "--vendor-key {key:?} is not 64 hex characters"
                    )));
                }
            }
            if path.exists() {
                return Err(Failure::usage(format_args!(
                    "{} exists already: pick a new file for the bundle",
                    path.display()
                )));
            }
            let made = clients
                .access()
                .create_enrolment_token(v1::CreateEnrolmentTokenRequest {
                    valid_seconds: valid_secs,
                    note,
                })
                .await?
                .into_inner();
            let bundle = flashgate_proto::bundle::EnrolmentBundle {
                format: flashgate_proto::bundle::FORMAT,
                endpoint: station_endpoint.unwrap_or_else(|| clients.endpoint().to_owned()),
                ca_pem: String::from_utf8_lossy(clients.ca_pem()).into_owned(),
                lease_signing_public_key: hex::encode(&made.lease_signing_public_key),
                vendor_public_keys: vendor_keys
                    .iter()
                    .map(|k| k.trim().to_lowercase())
                    .collect(),
                enrolment_token: made.token,
                expires_at_ms: made.expires_at_ms,
            };
            crate::operator::write_secret(&path, &bundle.to_json())?;
            out.done(
                &json!({"bundle": path.display().to_string(), "endpoint": bundle.endpoint,
                    "expires_at_ms": bundle.expires_at_ms}),
                format_args!(
                    "enrolment bundle written to {} (one use, until {}); on the station: flashgate-station enrol --bundle FILE",
                    path.display(),
                    cell::time(bundle.expires_at_ms)
                ),
            );
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
