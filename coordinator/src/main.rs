//! `flashgate-coordinator`: serve the coordinator, make keys, rotate the KEK.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ed25519_dalek::SigningKey;
use flashgate_coordinator::console::{self, ConsoleApi, ConsoleOptions};
use flashgate_coordinator::device_gateway::GatewayOptions;
use flashgate_coordinator::keys::{parse_hex_key, read_hex_key_file, Kek, KekRing};
use flashgate_coordinator::server::Transport;
use flashgate_coordinator::store::{embedded::EmbeddedStore, etcd::EtcdStore, KvStore};
use flashgate_coordinator::tls::ServerTls;
use flashgate_coordinator::{Coordinator, CoordinatorConfig};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "flashgate-coordinator",
    version,
    about = "flashgate coordinator: orders, quotas, leases, device registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API (operator, station, update and data services) on one port.
    Serve(Box<ServeArgs>),
    /// Write a fresh random 32-byte key (KEK or lease signing key) as hex to a new file (mode 0600).
    GenKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-seal every stored secret under the current KEK (rotation step 3).
    Rewrap(StoreArgs),
    /// TLS certificates for one machine.
    #[command(subcommand)]
    Tls(TlsCommand),
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Make a self-signed CA and a server certificate signed by it: DIR/ca.pem (give it to
    /// clients), DIR/ca.key (keep offline), DIR/server.pem and DIR/server.key (serve with them).
    Init {
        /// Directory to write into (made if missing; existing files are never overwritten).
        #[arg(long)]
        dir: PathBuf,
        /// Names and addresses clients reach the coordinator by, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
        san: Vec<String>,
        /// Validity of both certificates, in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

#[derive(Args)]
struct StoreArgs {
    /// `embedded:DIR` (single machine) or `etcd:http://HOST:PORT[,http://…]`.
    #[arg(
        long,
        env = "FLASHGATE_STORE",
        default_value = "embedded:./flashgate-data"
    )]
    store: String,
    /// Key prefix in etcd.
    #[arg(long, env = "FLASHGATE_ETCD_NAMESPACE", default_value = "/flashgate/")]
    etcd_namespace: String,
    /// File holding the current KEK (64 hex chars). Alternatively set FLASHGATE_KEK.
    #[arg(long)]
    kek_file: Option<PathBuf>,
    /// KEK files still accepted for opening (during a rotation). Repeatable.
    #[arg(long)]
    previous_kek_file: Vec<PathBuf>,
    /// File holding the ed25519 lease signing key seed (64 hex chars).
    #[arg(long, env = "FLASHGATE_SIGNING_KEY_FILE")]
    signing_key_file: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address of the gRPC port (operator, station, update, data services).
    #[arg(long, env = "FLASHGATE_LISTEN", default_value_t = format!("127.0.0.1:{}", flashgate_proto::DEFAULT_PORT))]
    listen: String,
    /// Also accept sealed data records as UDP datagrams on this address (e.g. 0.0.0.0:7401).
    #[arg(long, env = "FLASHGATE_DATA_UDP")]
    data_udp: Option<String>,
    /// Also accept sealed data records as a TCP stream of UART frames on this address (devices
    /// with networking, e.g. the demo OS's `net` build behind an emulator's guest forward).
    #[arg(long, env = "FLASHGATE_DATA_TCP")]
    data_tcp: Option<String>,
    /// File holding the bootstrap admin's token (kept in memory only, as its hash): use it to
    /// make per-person credentials (`flashgate operator create`), then keep it offline.
    #[arg(long, env = "FLASHGATE_OPERATOR_TOKEN_FILE")]
    operator_token_file: Option<PathBuf>,
    /// The server certificate chain (PEM), e.g. from `tls init` or cert-manager.
    #[arg(long, env = "FLASHGATE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM).
    #[arg(long, env = "FLASHGATE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain text instead of TLS: everything on the port becomes readable and station
    /// connections are not bound to station keys. For a test bench only.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    insecure_plaintext: bool,
    /// Seconds a station has after a lease's not-after to report installs made before it.
    #[arg(long, default_value_t = 3600)]
    report_grace_secs: u64,
    /// Seconds between leader sweeps (lease expiry, replay cache).
    #[arg(long, default_value_t = 2)]
    sweep_secs: u64,
    /// Sealed data records per second one source address may send (sustained; bursts of two
    /// seconds' worth); more are refused unread. Devices behind one NAT address share it.
    #[arg(long, default_value_t = flashgate_coordinator::config::DEFAULT_DATA_SOURCE_RATE,
          value_parser = clap::value_parser!(u32).range(1..))]
    data_source_rate: u32,
    /// This replica's name in the housekeeping leader election (default: random).
    #[arg(long, env = "FLASHGATE_NODE_ID")]
    node_id: Option<String>,
    /// Export traces over OTLP/gRPC to this collector, e.g. http://127.0.0.1:4317 (off by default).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 0.0.0.0:9464 (off by default).
    #[arg(long, env = "FLASHGATE_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Serve the operations console (web pages over the operator API) at https://ADDR/,
    /// e.g. 0.0.0.0:7480 (off by default), with the --tls-cert certificate (plain HTTP only
    /// with --insecure-plaintext).
    #[arg(long, env = "FLASHGATE_CONSOLE_LISTEN")]
    console_listen: Option<String>,
    /// Serve the device gateway at ADDR, e.g. 0.0.0.0:7402 (off by default): devices whose
    /// bootloader has networking connect here to fetch their update themselves. It hands out
    /// only what the device's own key opens and counts only receipts MACed by that key.
    #[arg(long, env = "FLASHGATE_DEVICE_GATEWAY_LISTEN")]
    device_gateway_listen: Option<String>,
}

async fn open_store(args: &StoreArgs) -> anyhow::Result<Arc<dyn KvStore>> {
    if let Some(dir) = args.store.strip_prefix("embedded:") {
        Ok(Arc::new(EmbeddedStore::open(dir).with_context(|| {
            format!("opening embedded store {dir}")
        })?))
    } else if let Some(urls) = args.store.strip_prefix("etcd:") {
        let endpoints: Vec<String> = urls.split(',').map(str::to_owned).collect();
        Ok(Arc::new(
            EtcdStore::connect(&endpoints, &args.etcd_namespace)
                .await
                .with_context(|| format!("connecting to etcd at {urls}"))?,
        ))
    } else {
        anyhow::bail!(
            "--store must be embedded:DIR or etcd:URL[,URL…]; got {:?}",
            args.store
        )
    }
}

fn load_keys(args: &StoreArgs) -> anyhow::Result<(KekRing, SigningKey)> {
    let current = match (&args.kek_file, std::env::var("FLASHGATE_KEK")) {
        (Some(path), _) => read_hex_key_file(path, "the KEK")?,
        (None, Ok(text)) => parse_hex_key(&Zeroizing::new(text), "FLASHGATE_KEK")?,
        (None, Err(_)) => anyhow::bail!(
            "no key-encryption key: pass --kek-file FILE or set FLASHGATE_KEK (make one with `flashgate-coordinator gen-key --out FILE`)"
        ),
    };
    let previous = args
        .previous_kek_file
        .iter()
        .map(|p| read_hex_key_file(p, "a previous KEK").map(Kek::new))
        .collect::<Result<Vec<_>, _>>()?;
    let seed = read_hex_key_file(&args.signing_key_file, "the lease signing key")?;
    Ok((
        KekRing::new(Kek::new(current), previous),
        SigningKey::from_bytes(&seed),
    ))
}

fn init_logging(json: bool, telemetry: &flashgate_telemetry::Telemetry) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = if json {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    // RUST_LOG filters the log lines only; the OpenTelemetry layer (when on) has its own filter.
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(telemetry.layer())
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::GenKey { out } => {
            let mut key = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(&mut key[..]);
            let text = Zeroizing::new(hex::encode(*key) + "\n");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            use std::io::Write;
            options
                .open(&out)
                .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?
                .write_all(text.as_bytes())?;
            println!("wrote a new key to {}", out.display());
            Ok(())
        }
        Command::Rewrap(args) => {
            init_logging(args.log_json, &flashgate_telemetry::Telemetry::disabled());
            let store = open_store(&args).await?;
            let (kek, signing_key) = load_keys(&args)?;
            let coordinator =
                Coordinator::new(store, kek, signing_key, "", CoordinatorConfig::default());
            let report = coordinator.rewrap_all().await?;
            println!(
                "re-sealed {} authority keys, {} device keys, {} update content keys, {} release images and {} audit keys under the current KEK",
                report.authority_keys, report.devices, report.campaigns, report.images, report.audit_keys
            );
            Ok(())
        }
        Command::Tls(TlsCommand::Init { dir, san, days }) => {
            flashgate_coordinator::tls::init(&dir, &san, days)?;
            println!(
                "wrote {d}/ca.pem, {d}/ca.key, {d}/server.pem and {d}/server.key for {}\n\
                 serve with: --tls-cert {d}/server.pem --tls-key {d}/server.key\n\
                 clients trust {d}/ca.pem; keep {d}/ca.key offline",
                san.join(", "),
                d = dir.display()
            );
            Ok(())
        }
        Command::Serve(args) => {
            let transport = match (&args.tls_cert, &args.tls_key, args.insecure_plaintext) {
                (Some(cert), Some(key), false) => Transport::Tls(
                    ServerTls::from_files(cert, key).context("loading the TLS certificate")?,
                ),
                (None, None, true) => Transport::InsecurePlaintext,
                _ => anyhow::bail!(
                    "no TLS certificate: {}",
                    flashgate_proto::transport::TLS_SETUP
                ),
            };
            let bootstrap = match &args.operator_token_file {
                Some(path) => {
                    let text =
                        Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                            format!("reading the operator token file {}", path.display())
                        })?);
                    let token = text.trim().to_owned();
                    anyhow::ensure!(
                        !token.is_empty(),
                        "the operator token file {} is empty",
                        path.display()
                    );
                    Zeroizing::new(token)
                }
                None => Zeroizing::new(String::new()),
            };
            let telemetry = flashgate_telemetry::Telemetry::start(
                &flashgate_telemetry::TelemetryOptions::new(
                    "flashgate-coordinator",
                    args.otlp_endpoint.clone(),
                    args.metrics_listen.clone(),
                ),
            )?;
            init_logging(args.store.log_json, &telemetry);
            if let Some(addr) = telemetry.metrics_addr() {
                let _ = flashgate_coordinator::metrics::get();
                tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            }
            let store = open_store(&args.store).await?;
            let (kek, signing_key) = load_keys(&args.store)?;
            tracing::info!(kek_id = %kek.current_id(), "keys loaded");
            let defaults = CoordinatorConfig::default();
            let config = CoordinatorConfig {
                report_grace: std::time::Duration::from_secs(args.report_grace_secs),
                sweep_interval: std::time::Duration::from_secs(args.sweep_secs.max(1)),
                node_id: args.node_id.clone().unwrap_or(defaults.node_id.clone()),
                station_mtls: !args.insecure_plaintext,
                data_source_rate: args.data_source_rate,
                ..defaults
            };
            let coordinator = Arc::new(Coordinator::new(
                store,
                kek,
                signing_key,
                &bootstrap,
                config,
            ));
            let upgraded = coordinator
                .upgrade_store()
                .await
                .context("bringing the store up to this version")?;
            if upgraded > 0 {
                tracing::info!(devices = upgraded, "data-stream handle index backfilled");
            }
            let listener = tokio::net::TcpListener::bind(&args.listen)
                .await
                .with_context(|| format!("listening on {}", args.listen))?;
            let data = Arc::new(coordinator.data_ingest());
            if let Some(addr) = &args.data_udp {
                let socket = std::net::UdpSocket::bind(addr)
                    .with_context(|| format!("binding the data UDP port {addr}"))?;
                flashgate_coordinator::data_stream::serve_udp_on_own_thread(data.clone(), socket)
                    .context("starting the data UDP ingest")?;
            }
            if let Some(addr) = &args.data_tcp {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr} for data records over TCP"))?;
                // The OS's status receipts on its data connection (after a network update)
                // are reported like the gateway's.
                tokio::spawn(flashgate_coordinator::data_stream::serve_tcp_with_receipts(
                    data.clone(),
                    Some(coordinator.updates().clone()),
                    listener,
                ));
            }
            if let Some(addr) = &args.console_listen {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr} for the console"))?;
                let scheme = match transport {
                    Transport::Tls(_) => "https",
                    Transport::InsecurePlaintext => "http (--insecure-plaintext)",
                };
                tracing::info!(addr = %listener.local_addr()?, scheme, "serving the console");
                let api = ConsoleApi::new(coordinator.clone(), data.clone());
                let transport = transport.clone();
                tokio::spawn(async move {
                    let shutdown = async {
                        let _ = tokio::signal::ctrl_c().await;
                    };
                    if let Err(error) = console::serve(
                        api,
                        ConsoleOptions::default(),
                        listener,
                        &transport,
                        shutdown,
                    )
                    .await
                    {
                        tracing::error!(%error, "the console stopped");
                    }
                });
            }
            if let Some(addr) = &args.device_gateway_listen {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr} for the device gateway"))?;
                let gateway = coordinator.device_gateway(GatewayOptions::default());
                tokio::spawn(async move {
                    let shutdown = async {
                        let _ = tokio::signal::ctrl_c().await;
                    };
                    if let Err(error) = gateway.serve(listener, shutdown).await {
                        tracing::error!(%error, "the device gateway stopped");
                    }
                });
            }
            let served = flashgate_coordinator::server::serve_with_data(
                coordinator,
                data,
                listener,
                transport,
                async {
                    let _ = tokio::signal::ctrl_c().await;
                    tracing::info!("shutting down");
                },
            )
            .await;
            drop(telemetry); // exports the last spans
            served
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flashgate-coordinator: {error:#}");
            ExitCode::FAILURE
        }
    }
}
