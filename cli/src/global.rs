//! The flags every command takes and the client set-up, once (etcdctl's `global.go`).

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use flashgate_cli::context::{self, Config};
use flashgate_cli::grpc::{Clients, ConnectError};

use crate::exit::{Exit, Failure};
use crate::output::{Format, Printer};

/// Global flags (valid before or after the subcommand).
#[derive(Args)]
pub struct GlobalArgs {
    /// Coordinator gRPC endpoint [default: the context's, else http://127.0.0.1:7400].
    #[arg(long, global = true, env = "FLASHGATE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Operator bearer token [default: read from the context's token file].
    #[arg(long, global = true, env = "FLASHGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Use this context of the config file instead of the current one.
    #[arg(long, global = true, env = "FLASHGATE_CONTEXT")]
    pub context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// A config file that cannot be found, read or parsed, or names what does not exist.
pub fn config_failure(error: anyhow::Error) -> Failure {
    Failure::new(Exit::Usage, format_args!("{error:#}"))
}

impl GlobalArgs {
    /// The printer for `-o`.
    pub fn printer(&self) -> Printer {
        Printer::new(self.output)
    }

    /// `--endpoint` if it was typed on the command line (not taken from the environment):
    /// `config set-context` stores only what the operator typed.
    pub fn endpoint_typed(&self, matches: &ArgMatches) -> Option<String> {
        (matches.value_source("endpoint") == Some(ValueSource::CommandLine))
            .then(|| self.endpoint.clone())
            .flatten()
    }

    /// Resolves endpoint and token (flag > env > context > default) and connects.
    pub async fn connect(self) -> Result<Clients, Failure> {
        let config = context::config_path()
            .and_then(|path| Config::load(&path))
            .map_err(config_failure)?;
        let resolved =
            context::resolve(&config, self.context.as_deref(), self.endpoint, self.token)
                .map_err(config_failure)?;
        Clients::connect(&resolved.endpoint, &resolved.token)
            .await
            .map_err(|error| {
                let code = match error {
                    ConnectError::Unreachable { .. } => Exit::Unavailable,
                    ConnectError::BadEndpoint(_) | ConnectError::Token(_) => Exit::Usage,
                };
                let hint = match (&error, &resolved.context) {
                    (ConnectError::Unreachable { .. }, Some(c)) => {
                        format!(" (check --endpoint / FLASHGATE_ENDPOINT / context {c})")
                    }
                    (ConnectError::Unreachable { .. }, None) => {
                        " (check --endpoint / FLASHGATE_ENDPOINT)".to_owned()
                    }
                    _ => String::new(),
                };
                Failure::new(code, format_args!("{}{hint}", causes(&error)))
            })
    }
}

/// An error and its sources, `: `-separated, each said once (hyper repeats its own).
fn causes(error: &dyn std::error::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let text = cause.to_string();
        if said.last() != Some(&text) {
            said.push(text);
        }
        next = cause.source();
    }
    said.join(": ")
}
