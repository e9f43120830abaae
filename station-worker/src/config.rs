//! The station's TOML configuration file.
//!
//! ```toml
//! coordinator = "http://coordinator.factory.lan:7400"
//! state_dir = "/var/lib/flashgate-station"
//! loader = "/usr/share/flashgate/loader.bin"
//! vendor_public_key = "<64 hex chars>"
//! name = "line-3"
//! factory = "f1"
//!
//! [[probes]]
//! name = "bay-1"
//! gdb = "127.0.0.1:3333"
//! uart = "127.0.0.1:4444"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::station::ProbeSpec;

/// The file's contents; every field may also come from the command line.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// Coordinator endpoint.
    pub coordinator: Option<String>,
    /// State directory.
    pub state_dir: Option<PathBuf>,
    /// Flash loader binary.
    pub loader: Option<PathBuf>,
    /// Optional pin of the vendor public key (hex); the key itself comes in the signed lease.
    pub vendor_public_key: Option<String>,
    /// Station name.
    pub name: Option<String>,
    /// Factory.
    pub factory: Option<String>,
    /// Probes.
    #[serde(default)]
    pub probes: Vec<ProbeSpec>,
}

impl StationConfig {
    /// Reads and parses a file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse_and_unknown_fields_are_refused() {
        let config: StationConfig = toml::from_str(
            r#"
            coordinator = "http://127.0.0.1:1"
            [[probes]]
            name = "bay-1"
            gdb = "127.0.0.1:3333"
            [[probes]]
            name = "bay-2"
            gdb = "127.0.0.1:3334"
            uart = "127.0.0.1:4444"
            "#,
        )
        .unwrap();
        assert_eq!(config.probes.len(), 2);
        assert_eq!(config.probes[1].uart.unwrap().port(), 4444);
        assert!(toml::from_str::<StationConfig>("probes_typo = 1").is_err());
    }
}
