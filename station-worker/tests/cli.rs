//! `flashgate-station` run as a process, for what needs no coordinator and no board: every
//! subcommand's `--help`, `identity`, the errors of a missing KEK, of an unreachable
//! coordinator (`doctor`) and of a probe-rs probe in a build without that backend. (`enrol`,
//! `doctor` against a real coordinator and `run --emulate 1` are in `tests/tests/e2e/station_binary.rs`.)

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_flashgate-station");
const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn station(args: &[&str], kek: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("FLASHGATE_STATION_KEK")
        .env_remove("FLASHGATE_COORDINATOR")
        .env_remove("FLASHGATE_STATION_STATE")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("FLASHGATE_METRICS_LISTEN");
    if let Some(kek) = kek {
        cmd.env("FLASHGATE_STATION_KEK", kek);
    }
    let out = cmd.output().expect("flashgate-station runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn dir_arg(dir: &Path) -> &str {
    dir.to_str().expect("a UTF-8 temp path")
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["enrol", "--help"],
        vec!["identity", "--help"],
        vec!["doctor", "--help"],
        vec!["probes", "--help"],
        vec!["help", "run"],
    ] {
        let out = station(&args, None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("Usage:"),
            "{args:?}: {}",
            text(&out.stdout)
        );
    }
    assert!(text(&station(&["--version"], None).stdout).starts_with("flashgate-station "));
}

#[test]
fn identity_is_made_once_and_needs_the_kek() {
    let dir = tempfile::tempdir().unwrap();
    let state = ["identity", "--state-dir", dir_arg(dir.path())];
    let first = station(&state, Some(KEK));
    assert!(first.status.success(), "{}", text(&first.stderr));
    let id = text(&first.stdout).trim().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(
        text(&station(&state, Some(KEK)).stdout).trim(),
        id,
        "the same identity"
    );

    let no_kek = station(&state, None);
    assert!(!no_kek.status.success());
    assert!(
        text(&no_kek.stderr).contains("FLASHGATE_STATION_KEK"),
        "{}",
        text(&no_kek.stderr)
    );
    let wrong = "ff".repeat(32);
    let wrong_kek = station(&state, Some(&wrong));
    assert!(!wrong_kek.status.success());
    assert!(
        text(&wrong_kek.stderr).contains("does not open"),
        "{}",
        text(&wrong_kek.stderr)
    );
}

#[test]
fn doctor_without_a_coordinator_prints_its_checklist_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = station(
        &[
            "doctor",
            "--coordinator",
            "http://127.0.0.1:9",
            "--timeout-secs",
            "1",
            "--state-dir",
            dir_arg(dir.path()),
        ],
        Some(KEK),
    );
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(report.contains("[FAIL] coordinator trust"), "{report}");
    assert!(report.contains("fix:"), "{report}");
    assert!(report.contains("failed"), "{report}");
}

#[test]
fn a_bad_probe_entry_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("station.toml");
    std::fs::write(&config, "[[probes]]\nname = \"bay-1\"\n").unwrap();
    let out = station(
        &[
            "run",
            "--config",
            dir_arg(&config),
            "--state-dir",
            dir_arg(dir.path()),
        ],
        Some(KEK),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("names no backend"),
        "{}",
        text(&out.stderr)
    );
}

#[cfg(not(feature = "probe-rs"))]
#[test]
fn a_probe_rs_probe_is_refused_by_a_build_without_probe_rs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("station.toml");
    std::fs::write(
        &config,
        "[[probes]]\nname = \"bay-2\"\nusb = \"0483:3748\"\nchip = \"STM32F103C8\"\n",
    )
    .unwrap();
    let out = station(
        &[
            "run",
            "--config",
            dir_arg(&config),
            "--coordinator",
            "http://127.0.0.1:9",
            "--state-dir",
            dir_arg(dir.path()),
        ],
        Some(KEK),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("built without the `probe-rs` feature"),
        "{err}"
    );
    assert!(err.contains("bay-2"), "{err}");
}

/// `run` with `config` as its config file: it must fail before anything is sent, naming the
/// file and what is wrong in it, and leave the state directory without a journal.
fn refused_config(config: &str, needle: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("station.toml");
    std::fs::write(&path, config).expect("the config is written");
    let state = dir.path().join("state");
    let out = station(
        &[
            "run",
            "--config",
            dir_arg(&path),
            "--coordinator",
            "http://127.0.0.1:9",
            "--state-dir",
            dir_arg(&state),
        ],
        Some(KEK),
    );
    assert!(!out.status.success(), "{config:?} was accepted");
    let err = text(&out.stderr);
    assert!(err.contains("station.toml"), "{config:?}: {err}");
    assert!(err.contains(needle), "{config:?}: {err}");
    assert!(
        !state.join("journal.jsonl").exists(),
        "{config:?} left a journal"
    );
}

#[test]
fn a_config_file_that_is_not_toml_is_refused_with_its_line() {
    refused_config("[[probes]\nname = \"bay-1\"\n", "line 1");
    refused_config("[[probes]]\nname = \"bay-1\nemulate = true\n", "line 2");
}

#[test]
fn a_config_file_with_an_unknown_field_or_a_wrong_type_is_refused() {
    refused_config("coordinatr = \"http://127.0.0.1:9\"\n", "unknown field");
    refused_config("[[probes]]\nname = 7\n", "invalid type");
}

#[cfg(not(feature = "probe-rs"))]
#[test]
fn probes_in_a_build_without_probe_rs_says_how_to_get_it() {
    let out = station(&["probes"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--features probe-rs"), "{err}");
}

/// With the backend, on a machine with no probe attached (CI): an empty listing, not an error;
/// each line a probe otherwise.
#[cfg(feature = "probe-rs")]
#[test]
fn probes_lists_what_probe_rs_sees() {
    let out = station(&["probes", "--json"], None);
    for line in text(&out.stdout).lines() {
        let probe: serde_json::Value =
            serde_json::from_str(line).expect("one JSON object per line");
        assert!(
            probe["usb"].as_str().is_some_and(|s| s.contains(':')),
            "{line}"
        );
    }
    let listed = text(&out.stdout).lines().count();
    let plain = station(&["probes"], None);
    assert_eq!(out.status.success(), plain.status.success());
    if listed == 0 {
        assert!(out.status.success());
        assert!(text(&plain.stderr).contains("no USB debug probes found"));
    }
}
