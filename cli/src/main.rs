//! `flashgate`: the operator's command line, in the style of etcdctl/kubectl.
//!
//! Human tables by default, `-o json` for scripts. Configuration: `--endpoint` /
//! `FLASHGATE_ENDPOINT`, `--token` / `FLASHGATE_TOKEN`.
//!
//! Exit codes: 0 success; 2 bad command line; 3 coordinator unreachable or unavailable (retry);
//! 4 not found; 5 not authenticated or not allowed; 6 already exists; 7 refused as invalid or
//! not possible now (bad input, quota exhausted, failed precondition); 1 anything else.

mod data;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use flashgate_proto::v1::{self, operator_service_client::OperatorServiceClient};
use serde_json::{json, Value};
use tonic::transport::Channel;

#[derive(Parser)]
#[command(
    name = "flashgate",
    version,
    about = "Operate a flashgate coordinator",
    after_help = "Exit codes: 0 ok, 2 usage, 3 unreachable/unavailable, 4 not found, 5 unauthenticated/denied, 6 already exists, 7 invalid or refused, 1 other"
)]
struct Cli {
    /// Coordinator gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "FLASHGATE_ENDPOINT",
        default_value = "http://127.0.0.1:7400"
    )]
    endpoint: String,
    /// Operator bearer token.
    #[arg(
        long,
        global = true,
        env = "FLASHGATE_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    token: String,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Products (a kind of board and its vendor key).
    #[command(subcommand)]
    Product(ProductCmd),
    /// Vendor-signed images.
    #[command(subcommand)]
    Release(ReleaseCmd),
    /// Create an order.
    #[command(subcommand)]
    Order(OrderCmd),
    /// Where orders stand.
    #[command(subcommand)]
    Orders(OrdersCmd),
    /// Station enrolment and approval.
    #[command(subcommand)]
    Station(StationCmd),
    /// The device registry.
    #[command(subcommand)]
    Devices(DevicesCmd),
    /// Leases handed to stations.
    #[command(subcommand)]
    Leases(LeasesCmd),
    /// Verified device telemetry; relay a device's records to the coordinator.
    #[command(subcommand)]
    Data(data::DataCmd),
}

#[derive(Subcommand)]
enum ProductCmd {
    /// Create a product with its vendor's ed25519 public key.
    Create {
        #[arg(long)]
        id: u32,
        #[arg(long)]
        name: String,
        /// Vendor public key, 64 hex chars.
        #[arg(long, conflicts_with = "vendor_key_file")]
        vendor_key: Option<String>,
        /// File holding the vendor public key (64 hex chars).
        #[arg(long)]
        vendor_key_file: Option<PathBuf>,
    },
    List,
}

#[derive(Subcommand)]
enum ReleaseCmd {
    /// Upload a signed image (header + body); refused if the vendor signature is bad.
    Upload { file: PathBuf },
    List {
        #[arg(long, default_value_t = 0)]
        product: u32,
    },
}

#[derive(Subcommand)]
enum OrderCmd {
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
}

#[derive(Subcommand)]
enum OrdersCmd {
    /// Count, consumed, reserved and remaining slots of one or all orders.
    Status { order: Option<String> },
}

#[derive(Subcommand)]
enum StationCmd {
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

#[derive(Subcommand)]
enum DevicesCmd {
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
        /// Installed at or after (unix ms).
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// Installed before (unix ms).
        #[arg(long, default_value_t = 0)]
        until: i64,
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum LeasesCmd {
    List {
        #[arg(long, default_value = "")]
        order: String,
        #[arg(long, default_value = "")]
        station: String,
    },
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let (code, hint) = match status.code() {
            Code::Unavailable | Code::DeadlineExceeded => {
                (3, " (is the coordinator running at --endpoint?)")
            }
            Code::NotFound => (4, ""),
            Code::Unauthenticated => (5, " (set --token or FLASHGATE_TOKEN)"),
            Code::PermissionDenied => (5, ""),
            Code::AlreadyExists => (6, ""),
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::OutOfRange => (7, ""),
            _ => (1, ""),
        };
        Failure {
            code,
            message: format!("{:?}: {}{hint}", status.code(), status.message()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: format!("{error:#}"),
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

fn hex32(text: &str, what: &str) -> Result<Vec<u8>, Failure> {
    let bytes = hex::decode(text.trim()).map_err(|_| usage(format!("{what} must be hex")))?;
    if bytes.len() != 32 {
        return Err(usage(format!("{what} must be 32 bytes (64 hex chars)")));
    }
    Ok(bytes)
}

fn request<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if !token.is_empty() {
        if let Ok(value) = format!("Bearer {token}").parse() {
            request.metadata_mut().insert("authorization", value);
        }
    }
    request
}

fn ms(t: i64) -> String {
    if t == 0 {
        "-".into()
    } else {
        t.to_string()
    }
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn station_state(state: i32) -> &'static str {
    match v1::StationState::try_from(state) {
        Ok(v1::StationState::Pending) => "pending",
        Ok(v1::StationState::Approved) => "approved",
        Ok(v1::StationState::Revoked) => "revoked",
        _ => "unknown",
    }
}

fn image_kind(kind: i32) -> &'static str {
    match v1::ImageKind::try_from(kind) {
        Ok(v1::ImageKind::Bootloader) => "bootloader",
        Ok(v1::ImageKind::Os) => "os",
        Ok(v1::ImageKind::App) => "app",
        Ok(v1::ImageKind::TestApp) => "test-app",
        _ => "unknown",
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

fn lease_state(state: i32) -> &'static str {
    match v1::LeaseState::try_from(state) {
        Ok(v1::LeaseState::Active) => "active",
        Ok(v1::LeaseState::Returned) => "returned",
        Ok(v1::LeaseState::Expired) => "expired",
        _ => "unknown",
    }
}

fn product_json(p: &v1::Product) -> Value {
    json!({"product_id": p.product_id, "name": p.name, "vendor_public_key": hex::encode(&p.vendor_public_key), "created_at_ms": p.created_at_ms})
}
fn release_json(r: &v1::Release) -> Value {
    json!({"digest": hex::encode(&r.digest), "product_id": r.product_id, "kind": image_kind(r.kind), "version": r.version,
        "load_address": r.load_address, "body_size": r.body_size, "body_digest": hex::encode(&r.body_digest), "uploaded_at_ms": r.uploaded_at_ms})
}
fn order_json(o: &v1::Order) -> Value {
    json!({"order_id": o.order_id, "product_id": o.product_id, "bootloader_digest": hex::encode(&o.bootloader_digest),
        "test_app_digest": hex::encode(&o.test_app_digest), "station_ids": o.station_ids, "factory": o.factory, "count": o.count, "created_at_ms": o.created_at_ms})
}
fn status_json(s: &v1::OrderStatus) -> Value {
    json!({"order": s.order.as_ref().map(order_json), "remaining": s.remaining, "reserved": s.reserved, "consumed": s.consumed, "active_leases": s.active_leases})
}
fn station_json(s: &v1::Station) -> Value {
    json!({"station_id": s.station_id, "name": s.name, "factory": s.factory, "state": station_state(s.state),
        "ed25519_public_key": hex::encode(&s.ed25519_public_key), "x25519_public_key": hex::encode(&s.x25519_public_key),
        "enrolled_at_ms": s.enrolled_at_ms, "approved_at_ms": s.approved_at_ms})
}
fn device_json(d: &v1::Device) -> Value {
    json!({"serial": hex::encode(&d.serial), "product_id": d.product_id, "order_id": d.order_id, "lease_id": d.lease_id,
        "station_id": d.station_id, "installed_at_ms": d.installed_at_ms, "registered_at_ms": d.registered_at_ms,
        "bootloader_version": d.bootloader_version, "test_result": test_outcome(&d.test_result),
        "test_log": d.test_result.as_ref().map(|t| t.log.clone()).unwrap_or_default()})
}
fn lease_json(l: &v1::LeaseInfo) -> Value {
    json!({"lease_id": l.lease_id, "station_id": l.station_id, "order_id": l.order_id, "count": l.count, "used": l.used,
        "state": lease_state(l.state), "issued_at_ms": l.issued_at_ms, "not_after_ms": l.not_after_ms, "released": l.released})
}

fn emit_json(value: Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let channel = Channel::from_shared(cli.endpoint.clone())
        .map_err(|_| {
            usage(format!(
                "--endpoint {:?} is not a URL like http://host:7400",
                cli.endpoint
            ))
        })?
        .connect()
        .await
        .map_err(|e| Failure {
            code: 3,
            message: format!(
                "cannot reach the coordinator at {}: {e} (check --endpoint / FLASHGATE_ENDPOINT)",
                cli.endpoint
            ),
        })?;
    let token = cli.token.as_str();
    let command = match cli.command {
        Command::Data(cmd) => {
            return data::run(cmd, channel, token, cli.output == Output::Json).await;
        }
        other => other,
    };
    let mut client =
        OperatorServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let json = cli.output == Output::Json;
    match command {
        Command::Product(ProductCmd::Create {
            id,
            name,
            vendor_key,
            vendor_key_file,
        }) => {
            let text = match (vendor_key, vendor_key_file) {
                (Some(k), _) => k,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?,
                (None, None) => {
                    return Err(usage(
                        "give the vendor key with --vendor-key HEX or --vendor-key-file FILE",
                    ))
                }
            };
            let key = hex32(&text, "the vendor key")?;
            let p = client
                .create_product(request(
                    token,
                    v1::CreateProductRequest {
                        product_id: id,
                        name,
                        vendor_public_key: key,
                    },
                ))
                .await?
                .into_inner();
            if json {
                emit_json(product_json(&p))
            } else {
                println!("product {} ({}) created", p.product_id, p.name)
            }
        }
        Command::Product(ProductCmd::List) => {
            let list = client
                .list_products(request(token, v1::ListProductsRequest {}))
                .await?
                .into_inner()
                .products;
            if json {
                emit_json(Value::Array(list.iter().map(product_json).collect()))
            } else {
                print_table(
                    &["PRODUCT", "NAME", "VENDOR KEY"],
                    list.iter()
                        .map(|p| {
                            vec![
                                p.product_id.to_string(),
                                p.name.clone(),
                                hex::encode(&p.vendor_public_key),
                            ]
                        })
                        .collect(),
                );
            }
        }
        Command::Release(ReleaseCmd::Upload { file }) => {
            let image = std::fs::read(&file)
                .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            let r = client
                .upload_release(request(token, v1::UploadReleaseRequest { image }))
                .await?
                .into_inner();
            if json {
                emit_json(release_json(&r))
            } else {
                println!(
                    "release {} uploaded: product {} {} version {}",
                    hex::encode(&r.digest),
                    r.product_id,
                    image_kind(r.kind),
                    r.version
                )
            }
        }
        Command::Release(ReleaseCmd::List { product }) => {
            let list = client
                .list_releases(request(
                    token,
                    v1::ListReleasesRequest {
                        product_id: product,
                    },
                ))
                .await?
                .into_inner()
                .releases;
            if json {
                emit_json(Value::Array(list.iter().map(release_json).collect()))
            } else {
                print_table(
                    &["DIGEST", "PRODUCT", "KIND", "VERSION", "SIZE"],
                    list.iter()
                        .map(|r| {
                            vec![
                                hex::encode(&r.digest),
                                r.product_id.to_string(),
                                image_kind(r.kind).into(),
                                r.version.to_string(),
                                r.body_size.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        Command::Order(OrderCmd::Create {
            product,
            bootloader,
            test_app,
            stations,
            factory,
            count,
            id,
        }) => {
            let test_app_digest = match test_app {
                Some(t) => hex32(&t, "--test-app")?,
                None => vec![],
            };
            let o = client
                .create_order(request(
                    token,
                    v1::CreateOrderRequest {
                        product_id: product,
                        bootloader_digest: hex32(&bootloader, "--bootloader")?,
                        test_app_digest,
                        station_ids: stations,
                        factory,
                        count,
                        order_id: id,
                    },
                ))
                .await?
                .into_inner();
            if json {
                emit_json(order_json(&o))
            } else {
                println!(
                    "order {} created: {} devices of product {}",
                    o.order_id, o.count, o.product_id
                )
            }
        }
        Command::Orders(OrdersCmd::Status { order }) => {
            let list = match order {
                Some(order_id) => vec![client
                    .get_order_status(request(token, v1::GetOrderStatusRequest { order_id }))
                    .await?
                    .into_inner()],
                None => {
                    client
                        .list_orders(request(token, v1::ListOrdersRequest {}))
                        .await?
                        .into_inner()
                        .orders
                }
            };
            if json {
                emit_json(Value::Array(list.iter().map(status_json).collect()))
            } else {
                print_table(
                    &[
                        "ORDER",
                        "PRODUCT",
                        "COUNT",
                        "CONSUMED",
                        "RESERVED",
                        "REMAINING",
                        "LEASES",
                    ],
                    list.iter()
                        .map(|s| {
                            let o = s.order.clone().unwrap_or_default();
                            vec![
                                o.order_id,
                                o.product_id.to_string(),
                                o.count.to_string(),
                                s.consumed.to_string(),
                                s.reserved.to_string(),
                                s.remaining.to_string(),
                                s.active_leases.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        Command::Station(StationCmd::List { pending }) => {
            let state = if pending {
                v1::StationState::Pending as i32
            } else {
                0
            };
            let list = client
                .list_stations(request(token, v1::ListStationsRequest { state }))
                .await?
                .into_inner()
                .stations;
            if json {
                emit_json(Value::Array(list.iter().map(station_json).collect()))
            } else {
                print_table(
                    &["FINGERPRINT", "NAME", "FACTORY", "STATE", "ENROLLED"],
                    list.iter()
                        .map(|s| {
                            vec![
                                s.station_id.clone(),
                                s.name.clone(),
                                s.factory.clone(),
                                station_state(s.state).into(),
                                ms(s.enrolled_at_ms),
                            ]
                        })
                        .collect(),
                );
            }
        }
        Command::Station(StationCmd::Approve { fingerprint }) => {
            let s = client
                .approve_station(request(
                    token,
                    v1::ApproveStationRequest {
                        station_id: fingerprint,
                    },
                ))
                .await?
                .into_inner();
            if json {
                emit_json(station_json(&s))
            } else {
                println!("station {} ({}) approved", s.station_id, s.name)
            }
        }
        Command::Station(StationCmd::Revoke { fingerprint }) => {
            let s = client
                .revoke_station(request(
                    token,
                    v1::RevokeStationRequest {
                        station_id: fingerprint,
                    },
                ))
                .await?
                .into_inner();
            if json {
                emit_json(station_json(&s))
            } else {
                println!("station {} revoked", s.station_id)
            }
        }
        Command::Devices(DevicesCmd::List {
            product,
            order,
            station,
            serial,
            since,
            until,
            limit,
        }) => {
            let serial = match serial {
                Some(s) => flashgate_proto::serial::from_hex(&s)
                    .ok_or_else(|| usage("--serial must be 32 hex characters"))?
                    .to_vec(),
                None => vec![],
            };
            let list = client
                .list_devices(request(
                    token,
                    v1::ListDevicesRequest {
                        product_id: product,
                        order_id: order,
                        station_id: station,
                        from_ms: since,
                        to_ms: until,
                        serial,
                        limit,
                    },
                ))
                .await?
                .into_inner()
                .devices;
            if json {
                emit_json(Value::Array(list.iter().map(device_json).collect()))
            } else {
                print_table(
                    &[
                        "SERIAL",
                        "PRODUCT",
                        "ORDER",
                        "STATION",
                        "INSTALLED",
                        "BOOTLOADER",
                        "TEST",
                    ],
                    list.iter()
                        .map(|d| {
                            vec![
                                hex::encode(&d.serial),
                                d.product_id.to_string(),
                                d.order_id.clone(),
                                d.station_id.clone(),
                                ms(d.installed_at_ms),
                                d.bootloader_version.to_string(),
                                test_outcome(&d.test_result).into(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        Command::Data(_) => unreachable!("data commands return above"),
        Command::Leases(LeasesCmd::List { order, station }) => {
            let list = client
                .list_leases(request(
                    token,
                    v1::ListLeasesRequest {
                        order_id: order,
                        station_id: station,
                    },
                ))
                .await?
                .into_inner()
                .leases;
            if json {
                emit_json(Value::Array(list.iter().map(lease_json).collect()))
            } else {
                print_table(
                    &[
                        "LEASE",
                        "ORDER",
                        "STATION",
                        "COUNT",
                        "USED",
                        "STATE",
                        "NOT AFTER",
                    ],
                    list.iter()
                        .map(|l| {
                            vec![
                                l.lease_id.clone(),
                                l.order_id.clone(),
                                l.station_id.clone(),
                                l.count.to_string(),
                                l.used.to_string(),
                                lease_state(l.state).into(),
                                ms(l.not_after_ms),
                            ]
                        })
                        .collect(),
                );
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("flashgate: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
