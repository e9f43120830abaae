//! `VID:PID[:SERIAL]`: which USB debug probe the station opens. Parsed without the `probe-rs`
//! feature too, so a station configuration naming a USB probe is checked (and refused with a
//! clear message) by a build without that backend.

use std::{fmt, str::FromStr};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_parses_vid_pid_and_serial() {
        let plain: ProbeSelector = "0483:3748".parse().unwrap();
        assert_eq!(
            plain,
            ProbeSelector {
                vid: 0x0483,
                pid: 0x3748,
                serial: None
            }
        );
        let with_serial: ProbeSelector = "0483:374B:066DFF485550755187121723".parse().unwrap();
        assert_eq!(with_serial.pid, 0x374b);
        assert_eq!(
            with_serial.serial.as_deref(),
            Some("066DFF485550755187121723")
        );
        // Everything after the second colon is the serial (some probes use MAC-like serials).
        let colons: ProbeSelector = "303a:1001:DC:DA:0C:D3:FE:D8".parse().unwrap();
        assert_eq!(colons.serial.as_deref(), Some("DC:DA:0C:D3:FE:D8"));
        let short: ProbeSelector = "d28:204".parse().unwrap();
        assert_eq!((short.vid, short.pid), (0x0d28, 0x0204));
    }

    #[test]
    fn selector_display_round_trips() {
        for text in [
            "0483:3748",
            "1366:0105:000123456789",
            "303a:1001:DC:DA:0C:D3:FE:D8",
        ] {
            let selector: ProbeSelector = text.parse().unwrap();
            assert_eq!(selector.to_string(), text);
            assert_eq!(
                selector.to_string().parse::<ProbeSelector>().unwrap(),
                selector
            );
        }
        let upper: ProbeSelector = "0D28:0204".parse().unwrap();
        assert_eq!(upper.to_string(), "0d28:0204");
    }

    #[test]
    fn selector_rejects_malformed_input() {
        for bad in [
            "",
            "0483",
            "0483:",
            ":3748",
            "0483:3748:",
            "10483:3748",
            "0483:37480",
            "+483:3748",
            "0x483:3748",
            "zz83:3748",
            "0483 :3748",
            "0483:3748: serial",
            "0483:3748:serial ",
            "0483-3748",
        ] {
            let err = bad.parse::<ProbeSelector>().unwrap_err();
            match &err {
                ProbeError::InvalidProbeSelector { selector, detail } => {
                    assert_eq!(selector, bad);
                    assert!(!detail.is_empty());
                }
                other => panic!("{bad:?}: expected InvalidProbeSelector, got {other:?}"),
            }
            assert!(err.to_string().contains("VID:PID"), "{err}");
        }
    }
}
