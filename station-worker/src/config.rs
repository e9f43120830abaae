//! The station's TOML configuration file, and the probes it names.
//!
//! ```toml
//! coordinator = "http://coordinator.factory.lan:7400"
//! state_dir = "/var/lib/flashgate-station"
//! loader = "/usr/share/flashgate/loader.bin"
//! vendor_public_key = "<64 hex chars>"
//! name = "line-3"
//! factory = "f1"
//!
//! [[probes]]                 # a GDB server (QEMU, OpenOCD, J-Link GDB Server, …)
//! name = "bay-1"
//! gdb = "127.0.0.1:3333"
//! uart = "127.0.0.1:4444"
//!
//! [[probes]]                 # a USB probe driven by probe-rs (build with `--features probe-rs`)
//! name = "bay-2"
//! usb = "0483:3748"          # VID:PID[:SERIAL] as `probe-rs list` shows it; omit: the only one
//! chip = "STM32F103C8"       # as `probe-rs chip list` names it
//! protocol = "swd"           # optional: swd (default) or jtag
//! speed_khz = 4000           # optional
//! uart = "127.0.0.1:4445"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::probe::{DebugWire, ProbeSelector};

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

/// One probe (one station bay) from the configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "ProbeEntry", into = "ProbeEntry")]
pub struct ProbeSpec {
    /// Name shown in progress lines.
    pub name: String,
    /// How the station reaches the target's debug port.
    pub backend: ProbeBackend,
    /// The target's UART (TCP), for the post-lock `hello`.
    pub uart: Option<SocketAddr>,
}

impl ProbeSpec {
    /// A probe behind a GDB server.
    pub fn gdb(name: impl Into<String>, gdb: SocketAddr, uart: Option<SocketAddr>) -> Self {
        Self {
            name: name.into(),
            backend: ProbeBackend::Gdb(gdb),
            uart,
        }
    }
}

/// The debug probe backend of one bay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeBackend {
    /// A GDB server at this address.
    Gdb(SocketAddr),
    /// A USB debug probe driven through probe-rs.
    ProbeRs(ProbeRsSpec),
}

/// A USB debug probe and the chip behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRsSpec {
    /// Which probe; `None`: the only one connected.
    pub selector: Option<ProbeSelector>,
    /// The chip, as probe-rs names it.
    pub chip: String,
    /// SWD or JTAG.
    pub wire: DebugWire,
    /// Wire speed; `None`: the probe's default.
    pub speed_khz: Option<u32>,
}

/// A `[[probes]]` table as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ProbeEntry {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gdb: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usb: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protocol: Option<DebugWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    speed_khz: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uart: Option<SocketAddr>,
}

impl TryFrom<ProbeEntry> for ProbeSpec {
    type Error = String;

    fn try_from(e: ProbeEntry) -> Result<Self, String> {
        let usb_fields = e.usb.is_some() || e.protocol.is_some() || e.speed_khz.is_some();
        let backend = match (e.gdb, e.chip) {
            (Some(gdb), None) if !usb_fields => ProbeBackend::Gdb(gdb),
            (None, Some(chip)) => ProbeBackend::ProbeRs(ProbeRsSpec {
                selector: e
                    .usb
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|err| format!("probe {}: {err}", e.name))?,
                chip,
                wire: e.protocol.unwrap_or_default(),
                speed_khz: e.speed_khz,
            }),
            (Some(_), _) => {
                return Err(format!(
                    "probe {} names both a GDB server (`gdb`) and a USB probe (`usb`/`chip`/`protocol`/`speed_khz`): pick one",
                    e.name
                ))
            }
            (None, None) => {
                return Err(format!(
                    "probe {} names no backend: give `gdb = \"HOST:PORT\"` (a GDB server) or `chip = \"…\"` (a USB probe through probe-rs, with optional `usb = \"VID:PID[:SERIAL]\"`)",
                    e.name
                ))
            }
        };
        Ok(Self {
            name: e.name,
            backend,
            uart: e.uart,
        })
    }
}

impl From<ProbeSpec> for ProbeEntry {
    fn from(spec: ProbeSpec) -> Self {
        let mut entry = ProbeEntry {
            name: spec.name,
            uart: spec.uart,
            ..ProbeEntry::default()
        };
        match spec.backend {
            ProbeBackend::Gdb(gdb) => entry.gdb = Some(gdb),
            ProbeBackend::ProbeRs(usb) => {
                entry.usb = usb.selector.map(|s| s.to_string());
                entry.chip = Some(usb.chip);
                entry.protocol = Some(usb.wire);
                entry.speed_khz = usb.speed_khz;
            }
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_parse_and_unknown_fields_are_refused() {
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
            [[probes]]
            name = "bay-3"
            usb = "0483:3748:ABC"
            chip = "STM32F103C8"
            protocol = "jtag"
            speed_khz = 4000
            [[probes]]
            name = "bay-4"
            chip = "nRF52840_xxAA"
            "#,
        )
        .unwrap();
        assert_eq!(config.probes.len(), 4);
        assert_eq!(config.probes[1].uart.unwrap().port(), 4444);
        assert_eq!(
            config.probes[2].backend,
            ProbeBackend::ProbeRs(ProbeRsSpec {
                selector: Some("0483:3748:ABC".parse().unwrap()),
                chip: "STM32F103C8".into(),
                wire: DebugWire::Jtag,
                speed_khz: Some(4000),
            })
        );
        let ProbeBackend::ProbeRs(any) = &config.probes[3].backend else {
            panic!("bay-4 is a probe-rs probe");
        };
        assert_eq!((any.selector.as_ref(), any.wire), (None, DebugWire::Swd));
        assert!(toml::from_str::<StationConfig>("probes_typo = 1").is_err());
    }

    #[test]
    fn a_probe_names_exactly_one_backend() {
        for (table, want) in [
            ("name = \"b\"", "names no backend"),
            (
                "name = \"b\"\ngdb = \"127.0.0.1:1\"\nchip = \"RP2040\"",
                "both",
            ),
            (
                "name = \"b\"\ngdb = \"127.0.0.1:1\"\nspeed_khz = 100",
                "both",
            ),
            (
                "name = \"b\"\nchip = \"RP2040\"\nusb = \"12:zz\"",
                "VID:PID",
            ),
            (
                "name = \"b\"\nchip = \"RP2040\"\nprotocol = \"spi\"",
                "unknown variant",
            ),
            (
                "name = \"b\"\ngdb = \"127.0.0.1:1\"\nuarts = \"x\"",
                "unknown field",
            ),
        ] {
            let err = toml::from_str::<StationConfig>(&format!("[[probes]]\n{table}"))
                .expect_err(table)
                .to_string();
            assert!(err.contains(want), "{table}: {err}");
        }
    }

    #[test]
    fn a_probe_spec_round_trips() {
        let spec = ProbeSpec {
            name: "bay-3".into(),
            backend: ProbeBackend::ProbeRs(ProbeRsSpec {
                selector: Some("1366:0105".parse().unwrap()),
                chip: "STM32F103C8".into(),
                wire: DebugWire::Swd,
                speed_khz: None,
            }),
            uart: None,
        };
        let text = toml::to_string(&spec).unwrap();
        assert_eq!(toml::from_str::<ProbeSpec>(&text).unwrap(), spec);
    }
}
