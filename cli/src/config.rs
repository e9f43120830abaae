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
    /// Create or update a context: `set-context NAME --endpoint URL [--token-file FILE]
    /// [--ca-file FILE | --insecure-plaintext]` (the token itself is never written to the
    /// config, only its file).
    SetContext { name: String },
    /// Make NAME the current context.
    UseContext { name: String },
    /// List the contexts (the current one is marked with *).
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
    /// Remove a context.
    DeleteContext { name: String },
}

/// The global flags `set-context` stores.
pub struct Typed {
    /// `--endpoint`, only if typed on the command line.
    pub endpoint: Option<String>,
    /// `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `--ca-file`.
    pub ca_file: Option<PathBuf>,
    /// `--insecure-plaintext`.
    pub insecure_plaintext: bool,
}

fn absolute(path: Option<PathBuf>, flag: &str) -> Result<Option<PathBuf>, Failure> {
    path.map(|f| {
        std::path::absolute(&f)
            .map_err(|e| Failure::usage(format_args!("{flag} {}: {e}", f.display())))
    })
    .transpose()
}

/// Runs `cmd` with the global flags `typed`.
pub fn run(cmd: ConfigCmd, typed: Typed, out: &Printer) -> Result<(), Failure> {
    let endpoint_typed = typed.endpoint;
    let path = context::config_path().map_err(config_failure)?;
    let mut config = Config::load(&path).map_err(config_failure)?;
    let not_found =
        |name: &str| Failure::not_found(format_args!("no context {name:?} in {}", path.display()));
    match cmd {
        ConfigCmd::SetContext { name } => {
            if name.trim().is_empty() {
                return Err(Failure::usage("a context needs a name"));
            }
            let existing = config.contexts.get(&name).cloned();
            let endpoint = match (endpoint_typed, &existing) {
                (Some(e), _) => e,
                (None, Some(c)) => c.endpoint.clone(),
                (None, None) => {
                    return Err(Failure::usage(format_args!(
                        "a new context needs --endpoint: flashgate config set-context {name} --endpoint https://host:7400 --ca-file CA.pem"
                    )))
                }
            };
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(Failure::usage(format_args!(
                    "--endpoint {endpoint:?} is not a URL like http://host:7400"
                )));
            }
            let token_file = absolute(typed.token_file, "--token-file")?
                .or(existing.as_ref().and_then(|c| c.token_file.clone()));
            let ca_file = absolute(typed.ca_file, "--ca-file")?
                .or(existing.as_ref().and_then(|c| c.ca_file.clone()));
            config.contexts.insert(
                name.clone(),
                Context {
                    endpoint,
                    token_file,
                    ca_file,
                    insecure_plaintext: typed.insecure_plaintext,
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
