//! `flashgate-station`: the factory station.
//!
//! ```text
//! flashgate-station identity --state-dir DIR            # prints the fingerprint
//! flashgate-station enrol --bundle FILE --state-dir DIR [--insecure-plaintext]
//! flashgate-station run --emulate 4 [--order ID] [--json] [--max-devices N]
//!     [--otlp-endpoint URL] [--metrics-listen ADDR]
//! flashgate-station doctor [--config FILE] [--coordinator URL] [--kek-file FILE]
//! ```
//! The identity is sealed under the station KEK: `$FLASHGATE_STATION_KEK` (64 hex) or
//! `--kek-file` (a systemd encrypted credential, e.g. `$CREDENTIALS_DIRECTORY/station-kek`).
//! What the station trusts (coordinator endpoint and CA, lease-signing key, vendor keys) comes
//! only from the operator's enrolment bundle, kept in `<state-dir>/trust.json` by `enrol`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use flashgate_proto::bundle::EnrolmentBundle;
use flashgate_station::config::StationConfig;
use flashgate_station::coordinator_client::CoordinatorClient;
use flashgate_station::enrolment::{enrol_with_bundle, StationTrust};
use flashgate_station::events::{EventFormat, EventSink};
use flashgate_station::identity::{StationIdentity, StationKek};
use flashgate_station::station::{enrol, run_station, StationOptions};

#[derive(Parser)]
#[command(
    name = "flashgate-station",
    about = "flashgate factory station",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// TOML configuration (coordinator, state dir, probes…).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Coordinator endpoint [default: the enrolment bundle's].
    #[arg(long, env = "FLASHGATE_COORDINATOR")]
    coordinator: Option<String>,
    /// Identity, journal, cached releases.
    #[arg(long, env = "FLASHGATE_STATION_STATE")]
    state_dir: Option<PathBuf>,
    /// File holding the station KEK (hex); default: $FLASHGATE_STATION_KEK.
    #[arg(long)]
    kek_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Provision targets until the quota is spent.
    Run {
        #[command(flatten)]
        common: Common,
        /// Launch N emulated QEMU targets.
        #[arg(long, default_value_t = 0)]
        emulate: usize,
        /// Order to work on (default: the first assigned).
        #[arg(long)]
        order: Option<String>,
        /// One JSON event per line on stdout (for a factory MES).
        #[arg(long)]
        json: bool,
        /// Stop after N devices.
        #[arg(long)]
        max_devices: Option<u32>,
        /// The flash loader (default target/firmware/loader.bin).
        #[arg(long)]
        loader: Option<PathBuf>,
        /// Optional pin of the product's vendor ed25519 public key, hex: the key comes in the
        /// signed lease; a lease naming another key is refused.
        #[arg(long)]
        vendor_key: Option<String>,
        /// Devices per lease (default 2 per probe).
        #[arg(long)]
        lease_size: Option<u32>,
        /// Export traces over OTLP/gRPC to this collector, e.g. http://127.0.0.1:4317 (off by
        /// default).
        #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
        otlp_endpoint: Option<String>,
        /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9465 (off by default).
        #[arg(long, env = "FLASHGATE_METRICS_LISTEN")]
        metrics_listen: Option<String>,
    },
    /// Check probes, coordinator, clock and key files; non-zero exit when something fails.
    Doctor {
        #[command(flatten)]
        common: Common,
        /// Seconds allowed per network check.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Enrol with the operator's bundle (`flashgate station bundle`): trust its CA and keys,
    /// register this station's public keys, approved by the bundle's one-time token. Without
    /// --bundle: enrol again with the trust kept from the first time (shows the state).
    Enrol {
        #[command(flatten)]
        common: Common,
        /// The enrolment bundle file.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Accept a bundle without a CA (a coordinator served with --insecure-plaintext).
        #[arg(long)]
        insecure_plaintext: bool,
    },
    /// Print this station's fingerprint (making the identity on first use).
    Identity {
        #[command(flatten)]
        common: Common,
    },
    /// List the USB debug probes attached (probe-rs), with the selector a `[[probes]]` entry
    /// takes; exit 1 when one cannot be opened by this user.
    Probes {
        /// One JSON object per probe.
        #[arg(long)]
        json: bool,
    },
}

struct Resolved {
    config: StationConfig,
    coordinator: String,
    state_dir: PathBuf,
    kek: StationKek,
}

fn resolve(common: &Common) -> anyhow::Result<Resolved> {
    let config = match &common.config {
        Some(path) => StationConfig::load(path)?,
        None => StationConfig::default(),
    };
    let coordinator = common
        .coordinator
        .clone()
        .or(config.coordinator.clone())
        .unwrap_or_default();
    let state_dir = common
        .state_dir
        .clone()
        .or(config.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from(".flashgate/station"));
    let kek = StationKek::load(common.kek_file.as_deref())?;
    Ok(Resolved {
        config,
        coordinator,
        state_dir,
        kek,
    })
}

fn main() -> ExitCode {
    use tracing_subscriber::prelude::*;
    let cli = Cli::parse();
    let telemetry = match &cli.command {
        Command::Run {
            otlp_endpoint,
            metrics_listen,
            ..
        } => flashgate_telemetry::Telemetry::start(&flashgate_telemetry::TelemetryOptions::new(
            "flashgate-station",
            otlp_endpoint.clone(),
            metrics_listen.clone(),
        )),
        _ => Ok(flashgate_telemetry::Telemetry::disabled()),
    };
    let telemetry = match telemetry {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: telemetry: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // RUST_LOG filters the log lines only; the OpenTelemetry layer (when on) has its own filter.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(telemetry.layer())
        .init();
    if let Some(addr) = telemetry.metrics_addr() {
        let _ = flashgate_station::metrics::get();
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    }
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    drop(telemetry); // exports the last spans
    code
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor {
            common,
            timeout_secs,
        } => {
            let config = match &common.config {
                Some(path) => StationConfig::load(path)?,
                None => StationConfig::default(),
            };
            let input = flashgate_station::doctor::DoctorInput {
                coordinator: common
                    .coordinator
                    .clone()
                    .or(config.coordinator.clone())
                    .unwrap_or_default(),
                state_dir: common
                    .state_dir
                    .clone()
                    .or(config.state_dir.clone())
                    .unwrap_or_else(|| PathBuf::from(".flashgate/station")),
                kek_file: common.kek_file.clone(),
                probes: config.probes.clone(),
                timeout: Duration::from_secs(timeout_secs.max(1)),
            };
            let checks = flashgate_station::doctor::run_checks(&input);
            print!("{}", flashgate_station::doctor::render(&checks));
            let failed = checks
                .iter()
                .any(|c| c.status == flashgate_station::doctor::Status::Fail);
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Probes { json } => list_probes(json),
        Command::Identity { common } => {
            let r = resolve(&common)?;
            let identity = StationIdentity::load_or_create(&r.state_dir, &r.kek)?;
            println!("{}", identity.station_id());
            Ok(ExitCode::SUCCESS)
        }
        Command::Enrol {
            common,
            bundle,
            insecure_plaintext,
        } => {
            let r = resolve(&common)?;
            let identity = StationIdentity::load_or_create(&r.state_dir, &r.kek)?;
            let name = r.config.name.clone().unwrap_or_else(|| "station".into());
            let factory = r.config.factory.clone().unwrap_or_default();
            let endpoint = (!r.coordinator.is_empty()).then_some(r.coordinator.as_str());
            let bundle = match &bundle {
                Some(path) => {
                    let text =
                        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                            anyhow::anyhow!("reading the bundle {}: {e}", path.display())
                        })?);
                    let bundle = EnrolmentBundle::parse(&text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                    if bundle.vendor_public_keys.is_empty() && r.config.vendor_public_key.is_none()
                    {
                        eprintln!(
                            "note: the bundle {} pins no vendor key: `run` refuses until one is pinned \
                             (ask for a bundle made with `flashgate station bundle --vendor-key HEX`, \
                             or set vendor_public_key in the configuration)",
                            path.display()
                        );
                    }
                    if bundle.ca_pem.is_empty() && !insecure_plaintext {
                        anyhow::bail!(
                            "the bundle {} names no CA (a plain-text coordinator): refused without --insecure-plaintext; {}",
                            path.display(),
                            flashgate_proto::transport::TLS_SETUP
                        );
                    }
                    Some(bundle)
                }
                None => None,
            };
            // The client's channel spawns onto the runtime it is made in: make it inside.
            let response = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    match &bundle {
                        Some(bundle) => Ok(enrol_with_bundle(
                            &identity,
                            &r.state_dir,
                            bundle,
                            endpoint,
                            &name,
                            &factory,
                        )
                        .await?),
                        None => {
                            let trust = StationTrust::load(&r.state_dir)?;
                            let endpoint = endpoint.unwrap_or(&trust.endpoint).to_owned();
                            let client = CoordinatorClient::new(
                                &endpoint,
                                &trust.security(),
                                identity.signer(),
                            )?;
                            enrol(&client, &identity, &name, &factory)
                                .await
                                .map_err(|e| {
                                    anyhow::anyhow!(
                                        "enrolment at {endpoint} failed: {} ({:?})",
                                        e.message(),
                                        e.code()
                                    )
                                })
                        }
                    }
                })?;
            let state = flashgate_proto::v1::StationState::try_from(response.state)
                .unwrap_or(flashgate_proto::v1::StationState::Unspecified);
            println!(
                "station {} enrolled ({}){}",
                response.station_id,
                state
                    .as_str_name()
                    .trim_start_matches("STATION_STATE_")
                    .to_lowercase(),
                if state == flashgate_proto::v1::StationState::Approved {
                    ""
                } else {
                    "; the operator approves it with `flashgate station approve <id>`"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            common,
            emulate,
            order,
            json,
            max_devices,
            loader,
            vendor_key,
            lease_size,
            ..
        } => {
            let r = resolve(&common)?;
            let vendor_public = match vendor_key.or(r.config.vendor_public_key.clone()) {
                Some(vendor_hex) => {
                    let mut key = [0u8; 32];
                    hex::decode_to_slice(vendor_hex.trim(), &mut key)
                        .map_err(|_| anyhow::anyhow!("--vendor-key must be 64 hex characters"))?;
                    Some(key)
                }
                None => None,
            };
            let loader = loader
                .or(r.config.loader.clone())
                .unwrap_or_else(|| PathBuf::from("target/firmware/loader.bin"));
            let mut options = StationOptions::new(r.coordinator, r.state_dir, r.kek, loader);
            options.vendor_public = vendor_public;
            options.events = EventSink::new(if json {
                EventFormat::Json
            } else {
                EventFormat::Human
            });
            options.order = order;
            options.emulate = emulate;
            options.probes = r.config.probes.clone();
            options.max_devices = max_devices;
            options.lease_size = lease_size;
            options.step_timeout = Duration::from_secs(30);
            if let Some(name) = r.config.name {
                options.name = name;
            }
            options.factory = r.config.factory.unwrap_or_default();
            let summary = run_station(options)?;
            Ok(if summary.failed == 0 && summary.unreported == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}

/// `probes`: what probe-rs sees on USB, like `probe-rs list`.
#[cfg(feature = "probe-rs")]
fn list_probes(json: bool) -> anyhow::Result<ExitCode> {
    let listed = flashgate_station::probe::list_probes();
    for probe in &listed {
        if json {
            let line = serde_json::json!({
                "identifier": probe.identifier,
                "usb": probe.selector().to_string(),
                "accessible": probe.accessible,
            });
            println!("{line}");
        } else {
            println!("{probe}");
        }
    }
    if listed.is_empty() && !json {
        eprintln!("no USB debug probes found (check the cable and `lsusb`)");
    }
    Ok(if listed.iter().all(|p| p.accessible) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `probes` in a build without USB probe support: says how to get it.
#[cfg(not(feature = "probe-rs"))]
fn list_probes(_json: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "this flashgate-station was built without USB probe support: rebuild it with \
         `cargo build --release -p flashgate-station --features probe-rs` \
         (GDB-server probes are configured in station.toml, see docs/probes.md)"
    )
}
