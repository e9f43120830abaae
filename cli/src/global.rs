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
    /// Coordinator gRPC endpoint [default: the context's, else https://127.0.0.1:7400].
    #[arg(long, global = true, env = "FLASHGATE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// File holding the operator's token [default: the context's token file].
    #[arg(long, global = true, env = "FLASHGATE_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Deprecated: a token on the command line is visible to every user of the machine; use
    /// --token-file. (FLASHGATE_TOKEN still works without a warning.)
    #[arg(
        long,
        global = true,
        env = "FLASHGATE_TOKEN",
        hide = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The coordinator's CA certificate (PEM) [default: the context's ca-file].
    #[arg(long, global = true, env = "FLASHGATE_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Plain text, to a coordinator served with --insecure-plaintext (a test bench only).
    #[arg(long, global = true)]
    pub insecure_plaintext: bool,
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

    /// Warns once when `--token` was typed on the command line.
    pub fn warn_token_flag(&self, matches: &ArgMatches) {
        if matches.value_source("token") == Some(ValueSource::CommandLine) {
            eprintln!(
                "warning: --token is deprecated (other users can read command lines): use --token-file FILE or FLASHGATE_TOKEN_FILE"
            );
        }
    }

    /// Resolves endpoint, token and TLS (flag > env > context > default) and connects.
    pub async fn connect(self) -> Result<Clients, Failure> {
        let config = context::config_path()
            .and_then(|path| Config::load(&path))
            .map_err(config_failure)?;
        let token = match (&self.token_file, self.token) {
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| {
                        Failure::new(
                            Exit::Usage,
                            format_args!("cannot read the token file {}: {e}", path.display()),
                        )
                    })?,
            ),
            (None, token) => token,
        };
        let resolved = context::resolve(&config, self.context.as_deref(), self.endpoint, token)
            .map_err(config_failure)?;
        let security = context::security(
            &config,
            self.context.as_deref(),
            self.ca_file.as_deref(),
            self.insecure_plaintext,
        )
        .map_err(config_failure)?;
        Clients::connect(&resolved.endpoint, &security, &resolved.token)
            .await
            .map_err(|error| {
                let code = match error {
                    ConnectError::Unreachable { .. } => Exit::Unavailable,
                    ConnectError::BadEndpoint(_)
                    | ConnectError::Token(_)
                    | ConnectError::Transport(_) => Exit::Usage,
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
