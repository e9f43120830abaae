//! Named contexts, like kubectl's: `$XDG_CONFIG_HOME/flashgate/config.toml` (else
//! `~/.config/flashgate/config.toml`, or `FLASHGATE_CONFIG` to name the file).
//!
//! ```toml
//! current-context = "prod"
//!
//! [contexts.prod]
//! endpoint = "https://coordinator.example:7400"
//! token-file = "/home/op/.flashgate/prod.token"
//! ca-file = "/home/op/.flashgate/prod-ca.pem"
//! ```
//!
//! The CA (`ca-file`, `--ca-file`, `FLASHGATE_CA_FILE`) is the only one the CLI trusts for that
//! coordinator; plain text only with `insecure-plaintext = true` or `--insecure-plaintext`.
//!
//! A context names the token's *file*, never the token. Precedence for the endpoint and the
//! token: command-line flag > environment (`FLASHGATE_ENDPOINT`, `FLASHGATE_TOKEN`) > the
//! context (`--context`, else `FLASHGATE_CONTEXT`, else `current-context`) > built-in default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// The endpoint used when nothing names one.
pub const DEFAULT_ENDPOINT: &str = flashgate_proto::DEFAULT_ENDPOINT;

/// One named coordinator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Context {
    /// gRPC endpoint.
    pub endpoint: String,
    /// File holding the operator token (read at each call; the token is never stored here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The coordinator's CA certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Plain text to a coordinator served with `--insecure-plaintext`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plaintext: bool,
}

/// The configuration file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// Where the configuration file is.
pub fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("FLASHGATE_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            Some(home) => PathBuf::from(home).join(".config"),
            None => bail!("neither XDG_CONFIG_HOME nor HOME is set: cannot find the config file"),
        },
    };
    Ok(base.join("flashgate").join("config.toml"))
}

impl Config {
    /// Reads `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes `path` (creating its directory), replacing it atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = toml::to_string_pretty(self).context("serialising the config")?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The context to use: `name` if given (it must exist), else the current one (if any).
    pub fn select(&self, name: Option<&str>) -> anyhow::Result<Option<(&str, &Context)>> {
        let Some(name) = name.or(self.current_context.as_deref()) else {
            return Ok(None);
        };
        match self.contexts.get_key_value(name) {
            Some((name, context)) => Ok(Some((name.as_str(), context))),
            None => bail!(
                "no context {name:?} in the config file (see `flashgate config get-contexts`)"
            ),
        }
    }
}

/// Endpoint and token after applying the precedence.
#[derive(Clone)]
pub struct Resolved {
    /// The endpoint.
    pub endpoint: String,
    /// The token (empty for none). Never printed.
    pub token: String,
    /// The context used, if any.
    pub context: Option<String>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("endpoint", &self.endpoint)
            .field(
                "token",
                &if self.token.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("context", &self.context)
            .finish()
    }
}

/// Applies flag > env > context > default. `endpoint` / `token` are the already-merged flag or
/// environment values (clap merges those two, flag first).
pub fn resolve(
    config: &Config,
    context: Option<&str>,
    endpoint: Option<String>,
    token: Option<String>,
) -> anyhow::Result<Resolved> {
    let selected = config.select(context)?;
    let endpoint = match (endpoint, selected) {
        (Some(e), _) => e,
        (None, Some((_, c))) => c.endpoint.clone(),
        (None, None) => DEFAULT_ENDPOINT.to_owned(),
    };
    let token = match (token, selected) {
        (Some(t), _) => t,
        (
            None,
            Some((
                name,
                Context {
                    token_file: Some(path),
                    ..
                },
            )),
        ) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read the token file {} of context {name}",
                    path.display()
                )
            })?;
            text.trim().to_owned()
        }
        (None, _) => String::new(),
    };
    Ok(Resolved {
        endpoint,
        token,
        context: selected.map(|(n, _)| n.to_owned()),
    })
}

/// How to reach the coordinator: `--insecure-plaintext` (flag or context) for plain text,
/// else TLS trusting the CA of `--ca-file` (flag or env) or of the context.
pub fn security(
    config: &Config,
    context: Option<&str>,
    ca_file: Option<&Path>,
    insecure_plaintext: bool,
) -> anyhow::Result<flashgate_proto::transport::Security> {
    use flashgate_proto::transport::{ClientTls, Security};
    let selected = config.select(context)?.map(|(_, c)| c);
    if insecure_plaintext || selected.is_some_and(|c| c.insecure_plaintext && ca_file.is_none()) {
        return Ok(Security::InsecurePlaintext);
    }
    let ca = ca_file.or(selected.and_then(|c| c.ca_file.as_deref()));
    Ok(Security::Tls(match ca {
        Some(path) => ClientTls::from_ca_file(path)?,
        None => ClientTls::new(Vec::new()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_flag_then_env_then_context_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("t");
        std::fs::write(&token_file, "from-file\n").unwrap();
        let mut config = Config::default();
        config.contexts.insert(
            "a".into(),
            Context {
                endpoint: "http://a:1".into(),
                token_file: Some(token_file),
                ..Default::default()
            },
        );
        let r = resolve(&config, None, None, None).unwrap();
        assert_eq!(
            (r.endpoint.as_str(), r.token.as_str()),
            (DEFAULT_ENDPOINT, "")
        );
        config.current_context = Some("a".into());
        let r = resolve(&config, None, None, None).unwrap();
        assert_eq!(
            (r.endpoint.as_str(), r.token.as_str()),
            ("http://a:1", "from-file")
        );
        let r = resolve(&config, None, Some("http://x:2".into()), Some("t".into())).unwrap();
        assert_eq!((r.endpoint.as_str(), r.token.as_str()), ("http://x:2", "t"));
        assert!(resolve(&config, Some("nope"), None, None).is_err());
        assert!(
            format!("{r:?}").contains("<redacted>"),
            "the token is never printed"
        );

        let path = dir.path().join("sub/config.toml");
        config.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
        assert_eq!(
            Config::load(&dir.path().join("none.toml")).unwrap(),
            Config::default()
        );
    }
}
