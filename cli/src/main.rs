//! `flashgate`: the operator's command line, in the style of etcdctl/kubectl.
//!
//! Human tables by default, `-o json` for scripts. Configuration: `--endpoint` /
//! `FLASHGATE_ENDPOINT`, `--token` / `FLASHGATE_TOKEN`, or a named context
//! (`flashgate config set-context`, `--context` / `FLASHGATE_CONTEXT`); flag > env > context.
//!
//! Exit codes: 0 success; 2 bad command line; 3 coordinator unreachable or unavailable (retry);
//! 4 not found; 5 not authenticated or not allowed; 6 already exists; 7 refused as invalid or
//! not possible now (bad input, quota exhausted, failed precondition); 1 anything else.

mod data;
mod update_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use flashgate_cli::context::{self, Config};
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
    /// Coordinator gRPC endpoint [default: the context's, else http://127.0.0.1:7400].
    #[arg(long, global = true, env = "FLASHGATE_ENDPOINT")]
    endpoint: Option<String>,
    /// Operator bearer token [default: read from the context's token file].
    #[arg(long, global = true, env = "FLASHGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Use this context of the config file instead of the current one.
    #[arg(long, global = true, env = "FLASHGATE_CONTEXT")]
    context: Option<String>,
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
    /// Publish OS updates to devices and follow them.
    #[command(subcommand)]
    Update(update_cmd::UpdateCmd),
    /// One device on a serial port (field tool).
    #[command(subcommand)]
    Device(update_cmd::DeviceCmd),
    /// Named contexts (endpoint + token file), like kubectl's.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print a shell completion script, e.g. `source <(flashgate completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Create or update a context: `set-context NAME --endpoint URL [--token-file FILE]`.
    SetContext {
        name: String,
        /// File holding the operator token (the token itself is never written to the config).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Make NAME the current context.
    UseContext { name: String },
    /// List the contexts (the current one is marked with *).
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
    /// Remove a context.
    DeleteContext { name: String },
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

fn install_outcome(outcome: i32) -> &'static str {
    match v1::InstallOutcome::try_from(outcome) {
        Ok(v1::InstallOutcome::Provisioned) => "provisioned",
        Ok(v1::InstallOutcome::Failed) => "failed",
        _ if outcome == 2 => "rejected",
        _ => "unknown",
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
    json!({"order": s.order.as_ref().map(order_json), "remaining": s.remaining, "reserved": s.reserved, "consumed": s.consumed,
        "failed": s.failed, "active_leases": s.active_leases})
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
        "outcome": install_outcome(d.outcome),
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

fn config_failure(e: anyhow::Error) -> Failure {
    Failure {
        code: 2,
        message: format!("{e:#}"),
    }
}

/// `flashgate config …`: works on the config file only, never contacts the coordinator.
fn run_config(cmd: ConfigCmd, endpoint_flag: Option<String>, json: bool) -> Result<(), Failure> {
    let path = context::config_path().map_err(config_failure)?;
    let mut config = Config::load(&path).map_err(config_failure)?;
    let not_found = |name: &str| Failure {
        code: 4,
        message: format!("no context {name:?} in {}", path.display()),
    };
    match cmd {
        ConfigCmd::SetContext { name, token_file } => {
            if name.trim().is_empty() {
                return Err(usage("a context needs a name"));
            }
            let existing = config.contexts.get(&name).cloned();
            let endpoint = match (endpoint_flag, &existing) {
                (Some(e), _) => e,
                (None, Some(c)) => c.endpoint.clone(),
                (None, None) => {
                    return Err(usage(format!(
                        "a new context needs --endpoint: flashgate config set-context {name} --endpoint http://host:7400"
                    )))
                }
            };
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(usage(format!(
                    "--endpoint {endpoint:?} is not a URL like http://host:7400"
                )));
            }
            let token_file = match token_file {
                Some(f) => Some(
                    std::path::absolute(&f)
                        .map_err(|e| usage(format!("--token-file {}: {e}", f.display())))?,
                ),
                None => existing.and_then(|c| c.token_file),
            };
            config.contexts.insert(
                name.clone(),
                context::Context {
                    endpoint,
                    token_file,
                },
            );
            config.save(&path).map_err(Failure::from)?;
            if !json {
                println!("context {name} set in {}", path.display());
            }
        }
        ConfigCmd::UseContext { name } => {
            if !config.contexts.contains_key(&name) {
                return Err(not_found(&name));
            }
            config.current_context = Some(name.clone());
            config.save(&path).map_err(Failure::from)?;
            if !json {
                println!("switched to context {name}");
            }
        }
        ConfigCmd::DeleteContext { name } => {
            if config.contexts.remove(&name).is_none() {
                return Err(not_found(&name));
            }
            if config.current_context.as_deref() == Some(name.as_str()) {
                config.current_context = None;
            }
            config.save(&path).map_err(Failure::from)?;
            if !json {
                println!("context {name} deleted");
            }
        }
        ConfigCmd::CurrentContext => match &config.current_context {
            Some(name) if json => emit_json(json!({ "current_context": name })),
            Some(name) => println!("{name}"),
            None => {
                return Err(Failure {
                    code: 4,
                    message: "no current context (flashgate config use-context NAME)".into(),
                })
            }
        },
        ConfigCmd::GetContexts => {
            let current = config.current_context.as_deref();
            if json {
                emit_json(Value::Array(
                    config
                        .contexts
                        .iter()
                        .map(|(name, c)| {
                            json!({"name": name, "current": current == Some(name.as_str()), "endpoint": c.endpoint,
                                "token_file": c.token_file.as_ref().map(|p| p.display().to_string())})
                        })
                        .collect(),
                ))
            } else {
                print_table(
                    &["CURRENT", "NAME", "ENDPOINT", "TOKEN FILE"],
                    config
                        .contexts
                        .iter()
                        .map(|(name, c)| {
                            vec![
                                if current == Some(name.as_str()) {
                                    "*"
                                } else {
                                    ""
                                }
                                .into(),
                                name.clone(),
                                c.endpoint.clone(),
                                c.token_file
                                    .as_ref()
                                    .map(|p| p.display().to_string())
                                    .unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect(),
                );
            }
        }
    }
    Ok(())
}

fn print_order_status(list: &[v1::OrderStatus], json: bool, watch: bool) {
    if json && watch {
        // One document per refresh, one line each (for `jq`/log pipelines).
        let value = Value::Array(list.iter().map(status_json).collect());
        println!("{}", serde_json::to_string(&value).unwrap_or_default());
        return;
    }
    if json {
        return emit_json(Value::Array(list.iter().map(status_json).collect()));
    }
    print_table(
        &[
            "ORDER",
            "PRODUCT",
            "COUNT",
            "CONSUMED",
            "FAILED",
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
                    s.failed.to_string(),
                    s.reserved.to_string(),
                    s.remaining.to_string(),
                    s.active_leases.to_string(),
                ]
            })
            .collect(),
    );
}

async fn run(cli: Cli, endpoint_flag: Option<String>) -> Result<(), Failure> {
    let json = cli.output == Output::Json;
    let command = match cli.command {
        Command::Config(cmd) => return run_config(cmd, endpoint_flag, json),
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "flashgate",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        other => other,
    };
    let config = context::config_path()
        .and_then(|path| Config::load(&path))
        .map_err(config_failure)?;
    let resolved = context::resolve(&config, cli.context.as_deref(), cli.endpoint, cli.token)
        .map_err(config_failure)?;
    let endpoint = resolved.endpoint.clone();
    let channel = Channel::from_shared(endpoint.clone())
        .map_err(|_| usage(format!("--endpoint {endpoint:?} is not a URL like http://host:7400")))?
        .connect()
        .await
        .map_err(|e| Failure {
            code: 3,
            message: format!(
                "cannot reach the coordinator at {endpoint}: {e} (check --endpoint / FLASHGATE_ENDPOINT{})",
                resolved
                    .context
                    .as_ref()
                    .map(|c| format!(" / context {c}"))
                    .unwrap_or_default()
            ),
        })?;
    let token = resolved.token.as_str();
    let command = match command {
        Command::Data(cmd) => return data::run(cmd, channel, token, json).await,
        Command::Update(cmd) => return update_cmd::run_update(cmd, channel, token, json).await,
        Command::Device(cmd) => return update_cmd::run_device(cmd, channel, token, json).await,
        Command::Devices(DevicesCmd::Show { serial, product }) => {
            return update_cmd::show_device(channel, token, json, &serial, product).await
        }
        other => other,
    };
    let mut client =
        OperatorServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
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
        Command::Orders(OrdersCmd::Status {
            order,
            watch,
            interval,
            watch_count,
        }) => {
            let mut shown = 0u64;
            loop {
                let list = match &order {
                    Some(order_id) => vec![client
                        .get_order_status(request(
                            token,
                            v1::GetOrderStatusRequest {
                                order_id: order_id.clone(),
                            },
                        ))
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
                if watch && !json {
                    use std::io::IsTerminal;
                    if std::io::stdout().is_terminal() {
                        print!("\x1b[2J\x1b[H");
                    } else if shown > 0 {
                        println!();
                    }
                    println!("every {interval}s: flashgate orders status (Ctrl-C to stop)");
                }
                print_order_status(&list, json, watch);
                shown += 1;
                if !watch || watch_count.is_some_and(|n| shown >= n) {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(interval)).await;
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
        Command::Data(_)
        | Command::Update(_)
        | Command::Device(_)
        | Command::Devices(DevicesCmd::Show { .. })
        | Command::Config(_)
        | Command::Completion { .. } => unreachable!("handled above"),
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
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // `config set-context` takes --endpoint from the command line only, never from the env.
    let endpoint_flag = (matches.value_source("endpoint") == Some(ValueSource::CommandLine))
        .then(|| cli.endpoint.clone())
        .flatten();
    match run(cli, endpoint_flag).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("flashgate: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
