//! `flashgate`: the operator's command line, in the style of etcdctl/kubectl.
//!
//! Human tables by default, `-o json` for scripts. Configuration: `--endpoint` /
//! `FLASHGATE_ENDPOINT`, `--token` / `FLASHGATE_TOKEN`, or a named context
//! (`flashgate config set-context`, `--context` / `FLASHGATE_CONTEXT`); flag > env > context.
//!
//! One file per command group, named after it: `product.rs`, `release.rs`, `order.rs`
//! (`order create`), `orders.rs` (`orders status`), `station.rs`, `devices.rs`, `leases.rs`,
//! `update.rs` (`update publish|status`), `rollout.rs` (`update rollout|pause|resume`), `device.rs` (`device update|verify`, the field tool),
//! `data.rs`, `config.rs` (contexts), `image.rs` (`image keygen|sign|verify|inspect`, files
//! only), `completion.rs`. Each holds its arguments, its handler and
//! how its results look (`output::ToJson`, `output::TableRow`). Shared by all of them: the global
//! flags and client set-up (`global.rs`), exit codes (`exit.rs`), printing (`output/`, one
//! printer per format) and argument values (`parse.rs`). The gRPC clients and their credentials
//! interceptor are the library's (`flashgate_cli::grpc`).
//!
//! Exit codes: 0 success; 2 bad command line; 3 coordinator unreachable or unavailable (retry);
//! 4 not found; 5 not authenticated or not allowed; 6 already exists; 7 refused as invalid or
//! not possible now (bad input, quota exhausted, failed precondition); `device verify` only:
//! 8 the board is unregistered, 9 a clone is suspected; 1 anything else.

mod audit;
mod completion;
mod config;
mod data;
mod device;
mod device_message;
mod devices;
mod exit;
mod global;
mod image;
mod leases;
mod operator;
mod order;
mod orders;
mod output;
mod parse;
mod product;
mod release;
mod rollout;
mod station;
mod update;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::exit::Failure;
use crate::global::GlobalArgs;

#[derive(Parser)]
#[command(
    name = "flashgate",
    version,
    about = "Operate a flashgate coordinator",
    after_help = exit::SUMMARY
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Coordinator(CoordinatorCommand),
    /// Named contexts (endpoint + token file), like kubectl's.
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Vendor image tool: signing keys, sign, verify and inspect images (files only).
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Print a shell completion script, e.g. `source <(flashgate completion bash)`.
    Completion(completion::CompletionArgs),
}

/// The groups that talk to the coordinator.
#[derive(Subcommand)]
enum CoordinatorCommand {
    /// Products (a kind of board and its vendor key).
    #[command(subcommand)]
    Product(product::ProductCmd),
    /// Vendor-signed images.
    #[command(subcommand)]
    Release(release::ReleaseCmd),
    /// Create an order.
    #[command(subcommand)]
    Order(order::OrderCmd),
    /// Where orders stand.
    #[command(subcommand)]
    Orders(orders::OrdersCmd),
    /// Station enrolment bundles and approval.
    #[command(subcommand)]
    Station(station::StationCmd),
    /// Operator credentials and their roles.
    #[command(subcommand)]
    Operator(operator::OperatorCmd),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// The device registry.
    #[command(subcommand)]
    Devices(devices::DevicesCmd),
    /// Leases handed to stations.
    #[command(subcommand)]
    Leases(leases::LeasesCmd),
    /// Verified device telemetry; relay a device's records to the coordinator.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// Publish OS updates to devices and follow them.
    #[command(subcommand)]
    Update(update::UpdateCmd),
    /// One device on a serial port (field tool).
    #[command(subcommand)]
    Device(device::DeviceCmd),
}

async fn dispatch(cli: Cli, endpoint_typed: Option<String>) -> Result<(), Failure> {
    let out = cli.global.printer();
    let command = match cli.command {
        Command::Config(cmd) => {
            let typed = config::Typed {
                endpoint: endpoint_typed,
                token_file: cli.global.token_file.clone(),
                ca_file: cli.global.ca_file.clone(),
                insecure_plaintext: cli.global.insecure_plaintext,
            };
            return config::run(cmd, typed, &out);
        }
        Command::Image(cmd) => return image::run(cmd, &out),
        Command::Completion(args) => {
            completion::run(args, Cli::command());
            return Ok(());
        }
        Command::Coordinator(command) => command,
    };
    let clients = cli.global.connect().await?;
    let c = &clients;
    match command {
        CoordinatorCommand::Product(cmd) => product::run(cmd, c, &out).await,
        CoordinatorCommand::Release(cmd) => release::run(cmd, c, &out).await,
        CoordinatorCommand::Order(cmd) => order::run(cmd, c, &out).await,
        CoordinatorCommand::Orders(cmd) => orders::run(cmd, c, &out).await,
        CoordinatorCommand::Station(cmd) => station::run(cmd, c, &out).await,
        CoordinatorCommand::Operator(cmd) => operator::run(cmd, c, &out).await,
        CoordinatorCommand::Audit(cmd) => audit::run(cmd, c, &out).await,
        CoordinatorCommand::Devices(cmd) => devices::run(cmd, c, &out).await,
        CoordinatorCommand::Leases(cmd) => leases::run(cmd, c, &out).await,
        CoordinatorCommand::Data(cmd) => data::run(cmd, c, &out).await,
        CoordinatorCommand::Update(cmd) => update::run(cmd, c, &out).await,
        CoordinatorCommand::Device(cmd) => device::run(cmd, c, &out).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let endpoint_typed = cli.global.endpoint_typed(&matches);
    cli.global.warn_token_flag(&matches);
    match dispatch(cli, endpoint_typed).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("flashgate: {}", failure.message);
            ExitCode::from(failure.code as u8)
        }
    }
}
