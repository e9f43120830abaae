//! `VID:PID[:SERIAL]`: which USB debug probe the station opens.

use std::{fmt, str::FromStr};

use ::probe_rs::probe::DebugProbeSelector;

use crate::probe::ProbeError;

/// Picks one USB debug probe: vendor and product id (hex), and optionally its serial number.
///
/// The text form is the one probe-rs and `probe-rs list` use, e.g. `0483:3748` or
/// `0483:374b:066DFF485550755187121723`. It is stricter than probe-rs's own parser: ids are 1–4
/// hex digits without sign or prefix, and a serial, when the second `:` is there, is not empty
/// (probe-rs reads `VID:PID:` as "a probe without serial", an easy typo in a station config).
/// Everything after the second `:` is the serial, so serials containing `:` work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeSelector {
    /// USB vendor id.
    pub vid: u16,
    /// USB product id.
    pub pid: u16,
    /// USB serial number; `None` matches any.
    pub serial: Option<String>,
}

impl FromStr for ProbeSelector {
    type Err = ProbeError;

    fn from_str(text: &str) -> Result<Self, ProbeError> {
        let invalid = |detail: &str| ProbeError::InvalidProbeSelector {
            selector: text.into(),
            detail: detail.into(),
        };
        let mut parts = text.splitn(3, ':');
        let vid = parts.next().unwrap_or_default();
        let pid = parts
            .next()
            .ok_or_else(|| invalid("no `:` between VID and PID"))?;
        let vid = parse_usb_id(vid).ok_or_else(|| invalid("the VID is not 1–4 hex digits"))?;
        let pid = parse_usb_id(pid).ok_or_else(|| invalid("the PID is not 1–4 hex digits"))?;
        let serial = match parts.next() {
            None => None,
            Some("") => return Err(invalid("the serial after the second `:` is empty")),
            Some(serial) if serial.trim() != serial || serial.chars().any(char::is_control) => {
                return Err(invalid("the serial has spaces or control characters"));
            }
            Some(serial) => Some(serial.to_owned()),
        };
        Ok(ProbeSelector { vid, pid, serial })
    }
}

/// 1–4 hex digits, nothing else (`u16::from_str_radix` would also take a leading `+`).
fn parse_usb_id(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

impl fmt::Display for ProbeSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vid, self.pid)?;
        if let Some(serial) = &self.serial {
            write!(f, ":{serial}")?;
        }
        Ok(())
    }
}

impl From<&ProbeSelector> for DebugProbeSelector {
    fn from(selector: &ProbeSelector) -> Self {
        DebugProbeSelector {
            vendor_id: selector.vid,
            product_id: selector.pid,
            interface: None,
            serial_number: selector.serial.clone(),
        }
    }
}
