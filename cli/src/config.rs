//! `flashgate config set-context|use-context|get-contexts|current-context|delete-context`:
//! named contexts (endpoint + token file), like kubectl's. Works on the config file only and
//! never contacts the coordinator; the file format is the library's [`flashgate_cli::context`].

use std::path::PathBuf;

use clap::Subcommand;
use flashgate_cli::context::{self, Config, Context};
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::global::config_failure;
use crate::output::{Printer, TableRow, ToJson};

#[derive(Subcommand)]
pub enum ConfigCmd {
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

/// Runs `cmd`; `endpoint_typed` is `--endpoint` only if typed on the command line.
pub fn run(cmd: ConfigCmd, endpoint_typed: Option<String>, out: &Printer) -> Result<(), Failure> {
    let path = context::config_path().map_err(config_failure)?;
    let mut config = Config::load(&path).map_err(config_failure)?;
    let not_found =
        |name: &str| Failure::not_found(format_args!("no context {name:?} in {}", path.display()));
    match cmd {
        ConfigCmd::SetContext { name, token_file } => {
            if name.trim().is_empty() {
                return Err(Failure::usage("a context needs a name"));
            }
            let existing = config.contexts.get(&name).cloned();
            let endpoint = match (endpoint_typed, &existing) {
                (Some(e), _) => e,
                (None, Some(c)) => c.endpoint.clone(),
                (None, None) => {
                    return Err(Failure::usage(format_args!(
                        "a new context needs --endpoint: flashgate config set-context {name} --endpoint http://host:7400"
                    )))
                }
            };
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(Failure::usage(format_args!(
                    "--endpoint {endpoint:?} is not a URL like http://host:7400"
                )));
            }
            let token_file = match token_file {
                Some(f) => Some(std::path::absolute(&f).map_err(|e| {
                    Failure::usage(format_args!("--token-file {}: {e}", f.display()))
                })?),
                None => existing.and_then(|c| c.token_file),
            };
            config.contexts.insert(
                name.clone(),
                Context {
                    endpoint,
                    token_file,
                },
            );
            config.save(&path)?;
            out.note(format_args!("context {name} set in {}", path.display()));
        }
        ConfigCmd::UseContext { name } => {
            if !config.contexts.contains_key(&name) {
                return Err(not_found(&name));
            }
            config.current_context = Some(name.clone());
            config.save(&path)?;
            out.note(format_args!("switched to context {name}"));
        }
        ConfigCmd::DeleteContext { name } => {
            if config.contexts.remove(&name).is_none() {
                return Err(not_found(&name));
            }
            if config.current_context.as_deref() == Some(name.as_str()) {
                config.current_context = None;
            }
            config.save(&path)?;
            out.note(format_args!("context {name} deleted"));
        }
        ConfigCmd::CurrentContext => match &config.current_context {
            Some(name) => out.done(&json!({ "current_context": name }), name),
            None => {
                return Err(Failure::not_found(
                    "no current context (flashgate config use-context NAME)",
                ))
            }
        },
        ConfigCmd::GetContexts => {
            let current = config.current_context.as_deref();
            let rows: Vec<ContextRow<'_>> = config
                .contexts
                .iter()
                .map(|(name, context)| ContextRow {
                    name,
                    context,
                    current: current == Some(name.as_str()),
                })
                .collect();
            out.list(&rows);
        }
    }
    Ok(())
}

/// One line of `get-contexts`.
struct ContextRow<'a> {
    name: &'a str,
    context: &'a Context,
    current: bool,
}

impl ContextRow<'_> {
    fn token_file(&self) -> Option<String> {
        self.context
            .token_file
            .as_ref()
            .map(|p| p.display().to_string())
    }
}

impl ToJson for ContextRow<'_> {
    fn json(&self) -> Value {
        json!({"name": self.name, "current": self.current, "endpoint": self.context.endpoint,
            "token_file": self.token_file()})
    }
}

impl TableRow for ContextRow<'_> {
    const COLUMNS: &'static [&'static str] = &["CURRENT", "NAME", "ENDPOINT", "TOKEN FILE"];
    fn cells(&self) -> Vec<String> {
        vec![
            if self.current { "*" } else { "" }.into(),
            self.name.to_owned(),
            self.context.endpoint.clone(),
            self.token_file().unwrap_or_else(|| "-".into()),
        ]
    }
}
