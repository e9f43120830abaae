//! The `flashgate-station` binary as a user runs it, as a process: `enrol` and `identity`
//! against a real coordinator, `doctor` against a working factory, and `run --emulate 1` making
//! one device. (`--help` of every subcommand and the offline commands are checked by the
//! station crate's own `tests/cli.rs`.)

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use flashgate_coordinator::testing::TestCoordinator;
use flashgate_proto::v1;
use flashgate_station::identity::StationKek;
use flashgate_tests::station_binary;
use flashgate_tests::station_harness::Factory;

fn station(args: &[&str], state_dir: &Path, kek_hex: &str) -> Output {
    let out = Command::new(station_binary())
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .env("FLASHGATE_STATION_KEK", kek_hex)
        .env_remove("FLASHGATE_COORDINATOR")
        .output()
        .expect("flashgate-station runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn enrol_registers_the_station_with_a_real_coordinator_and_is_idempotent() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let coordinator = rt.block_on(TestCoordinator::start_embedded()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let kek = tempfile::tempdir().unwrap();
    let kek_file = kek.path().join("kek.hex");
    StationKek::generate().write_to(&kek_file).unwrap();
    let kek_hex = std::fs::read_to_string(&kek_file).unwrap();

    let out = station(&["identity"], state.path(), &kek_hex);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let station_id = text(&out.stdout).trim().to_owned();
    assert_eq!(station_id.len(), 32, "a fingerprint: {station_id}");

    // Without a bundle and never enrolled: refused, saying how.
    let out = station(&["enrol"], state.path(), &kek_hex);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--bundle"),
        "{}",
        text(&out.stderr)
    );

    // With the operator's bundle: enrolled over mutual TLS and approved by its token.
    let bundle = rt
        .block_on(coordinator.enrolment_bundle("binary test"))
        .unwrap();
    let bundle_file = kek.path().join("station.bundle");
    std::fs::write(&bundle_file, bundle.to_json()).unwrap();
    let with_bundle = ["enrol", "--bundle", bundle_file.to_str().unwrap()];
    let out = station(&with_bundle, state.path(), &kek_hex);
    assert!(out.status.success(), "enrol failed: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("pins no vendor key"),
        "told that `run` will refuse: {}",
        text(&out.stderr)
    );
    let said = text(&out.stdout);
    assert!(
        said.contains(&station_id) && said.contains("(approved)"),
        "{said}"
    );
    let stations = rt.block_on(async {
        let mut op = coordinator.operator_client().await.unwrap();
        op.list_stations(coordinator.operator_request(v1::ListStationsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .stations
    });
    let enrolled = stations
        .iter()
        .find(|s| s.station_id == station_id)
        .expect("the coordinator knows the station");
    assert_eq!(enrolled.state, v1::StationState::Approved as i32);

    // Enrolled again from the trust it kept: the same station, still approved.
    let out = station(&["enrol"], state.path(), &kek_hex);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(approved)"),
        "{}",
        text(&out.stdout)
    );

    // Its bundle pinned no vendor key: `run` refuses, saying how to pin one, before anything
    // is sent.
    let loader = flashgate_tests::firmware_dir().join("loader.bin");
    let run = [
        "run",
        "--emulate",
        "1",
        "--loader",
        loader.to_str().unwrap(),
    ];
    let out = station(&run, state.path(), &kek_hex);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("this station pins no vendor key")
            && text(&out.stderr).contains("--vendor-key"),
        "{}",
        text(&out.stderr)
    );

    // The same bundle on another station: its token was used.
    let other = tempfile::tempdir().unwrap();
    let out = station(&with_bundle, other.path(), &kek_hex);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already used"),
        "{}",
        text(&out.stderr)
    );

    // A bundle without a CA is refused without --insecure-plaintext.
    let mut plain = bundle.clone();
    plain.ca_pem.clear();
    plain.endpoint = plain.endpoint.replace("https://", "http://");
    let plain_file = kek.path().join("plain.bundle");
    std::fs::write(&plain_file, plain.to_json()).unwrap();
    let out = station(
        &["enrol", "--bundle", plain_file.to_str().unwrap()],
        other.path(),
        &kek_hex,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--insecure-plaintext"),
        "{}",
        text(&out.stderr)
    );

    // Nothing listening: a clear error and a failing exit code, no panic.
    let port = flashgate_tests::station_harness::free_port();
    let nowhere = format!("https://127.0.0.1:{port}");
    let out = station(
        &["enrol", "--coordinator", &nowhere],
        state.path(),
        &kek_hex,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("enrolment at"),
        "{}",
        text(&out.stderr)
    );
    rt.block_on(coordinator.stop());
}

#[test]
fn doctor_passes_against_a_working_factory() {
    let factory = Factory::embedded(1);
    let kek = tempfile::tempdir().unwrap();
    let kek_file = kek.path().join("kek.hex");
    StationKek::from_hex(factory.station_kek_hex())
        .unwrap()
        .write_to(&kek_file)
        .unwrap();
    let out = Command::new(station_binary())
        .args(["doctor", "--coordinator", &factory.coordinator.endpoint])
        .arg("--state-dir")
        .arg(factory.state_dir.path())
        .arg("--kek-file")
        .arg(&kek_file)
        .env_remove("FLASHGATE_STATION_KEK")
        .output()
        .unwrap();
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(
        report.contains(&format!(
            "[ OK ] coordinator {}",
            factory.coordinator.endpoint
        )),
        "{report}"
    );
    assert!(report.contains("[ OK ] identity opens"), "{report}");
    assert!(report.contains("0 failed"), "{report}");
}

#[test]
fn run_with_one_emulated_board_makes_one_device() {
    let factory = Factory::embedded(1);
    let mut station = factory.spawn_station(1, &[]);
    let summary = station
        .wait_for_event(|e| e["event"] == "summary")
        .expect("a summary line");
    let status = station.wait(Duration::from_secs(120));
    assert!(status.success(), "exit {status}");
    assert_eq!(summary["provisioned"], 1, "{summary}");
    assert_eq!(summary["reported"], 1, "{summary}");
    assert_eq!(factory.registered().len(), 1);
}
