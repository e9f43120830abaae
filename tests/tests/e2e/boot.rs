//! The bootloader at reset: a valid signed OS is started, anything else is refused and the
//! bootloader stays on the UART saying why.

use std::process::Command;
use std::time::Duration;

use flashgate_coordinator::access::Role;
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_emulator::{BoardFiles, EmulatedBoard, StartOptions};
use flashgate_proto::v1;
use flashgate_protocol::hello::{DeviceState, HelloInfo};
use flashgate_protocol::ErrorCode;
use flashgate_station::device_link::DeviceLink;
use flashgate_tests::{flashgate_binary, Firmware, TestBoard, Vendor};

use crate::{provisioned_board_with_os, test_device_key};

/// Provisions a fresh board, installs `os` and boots it with the UART connected.
fn boot_with_os(
    os: impl FnOnce(&Vendor, &Firmware) -> Vec<u8>,
) -> (TestBoard, DeviceLink<std::net::TcpStream>) {
    let (mut tb, _, _) = provisioned_board_with_os(os);
    let link =
        DeviceLink::connect_tcp(tb.board.serial_addr().unwrap(), Duration::from_secs(5)).unwrap();
    tb.board.resume().unwrap();
    (tb, link)
}

/// Asks the board for `hello` and verifies its proof under the board's device key.
fn verified_hello(tb: &TestBoard, link: &mut DeviceLink<std::net::TcpStream>) -> HelloInfo {
    link.hello(Duration::from_secs(20))
        .unwrap()
        .verify(&test_device_key(&tb.uid.0))
        .unwrap()
}

#[test]
fn valid_os_is_started() {
    let (tb, mut link) = boot_with_os(|v, fw| v.sign_os(&fw.demo_os, 5));
    let banner = link.wait_for_banner(Duration::from_secs(20)).unwrap();
    assert!(banner.contains("demo-os"), "banner: {banner}");
    let info = verified_hello(&tb, &mut link);
    assert_eq!(info.state, DeviceState::OsRunning { version: 5 });
}

#[test]
fn os_with_bad_signature_is_refused() {
    let (tb, mut link) = boot_with_os(|v, fw| {
        let mut os = v.sign_os(&fw.demo_os, 5);
        os[100] ^= 1;
        os
    });
    let info = verified_hello(&tb, &mut link);
    assert_eq!(
        info.state,
        DeviceState::NoValidImage {
            reason: ErrorCode::BadSignature
        }
    );
}

#[test]
fn os_below_the_rollback_floor_is_refused() {
    let (tb, mut link) = boot_with_os(|v, fw| v.sign_os(&fw.demo_os, 0));
    let info = verified_hello(&tb, &mut link);
    assert_eq!(
        info.state,
        DeviceState::NoValidImage {
            reason: ErrorCode::Rollback
        }
    );
}

#[test]
fn os_with_tampered_body_is_refused() {
    let (tb, mut link) = boot_with_os(|v, fw| {
        let mut os = v.sign_os(&fw.demo_os, 5);
        let last = os.len() - 10;
        os[last] ^= 0x80;
        os
    });
    let info = verified_hello(&tb, &mut link);
    assert_eq!(
        info.state,
        DeviceState::NoValidImage {
            reason: ErrorCode::DigestMismatch
        }
    );
}

/// `flashgate device verify --port` run as a process against `tc` (a field-role credential);
/// its exit code and stdout.
fn device_verify(tc: &TestCoordinator, token: &str, port: String, timeout: &str) -> (i32, String) {
    let out = Command::new(flashgate_binary())
        .args(["--endpoint", &tc.endpoint])
        .env("FLASHGATE_CA_FILE", &tc.ca_file)
        .env("FLASHGATE_TOKEN", token)
        .args(["device", "verify", "--port", &port, "--timeout", timeout])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("device verify on {port}: {stdout}{stderr}");
    (out.status.code().unwrap(), stdout)
}

fn port_of(board: &EmulatedBoard) -> String {
    format!("tcp:{}", board.serial_addr().unwrap())
}

/// The clone test: a provisioned board's flash copied onto a board with another unique ID
/// starts no OS and says why (`UidMismatch`) in a hello whose MAC verifies (the key was
/// copied) but that names its own chip beside the original's serial. `flashgate device
/// verify` (the binary) calls it a clone (exit 9) and the coordinator records the evidence on
/// the device; the original still boots its OS and verifies as genuine (exit 0). Before the
/// registry knows the original it is unregistered (exit 8); a blank board answers nothing
/// (exit 3, no verdict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_flash_on_another_chip_starts_nothing_and_says_so() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let mut vendor = Vendor::new(crate::PRODUCT_ID);
    tc.operator_client()
        .await
        .unwrap()
        .create_product(tc.operator_request(v1::CreateProductRequest {
            product_id: crate::PRODUCT_ID,
            name: "clone test".into(),
            vendor_public_key: vendor.public().to_vec(),
        }))
        .await
        .unwrap();
    vendor.authority = tc.authority_signing_key(crate::PRODUCT_ID).await.unwrap();
    let field = tc.operator_with_role("field", Role::Field).await.unwrap();
    let fw = Firmware::load();
    let bootloader = vendor.sign_bootloader(&fw.bootloader, 3);
    let (mut tb, _) = crate::provisioned_board(&vendor, &bootloader, fw, |fw| {
        vendor.sign_os(&fw.demo_os, 5)
    });

    tb.board.resume().unwrap();
    let (code, stdout) = device_verify(&tc, &field, port_of(&tb.board), "30");
    assert_eq!(code, 8, "not registered yet: {stdout}");
    assert!(stdout.contains("unregistered"), "{stdout}");
    tc.register_device(crate::PRODUCT_ID, &tb.uid.0, &test_device_key(&tb.uid.0))
        .await
        .unwrap();

    let original = BoardFiles::new(tb.board.dir());
    tb.board.power_off().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy_dir = dir.path().join("copy");
    let copy_uid = EmulatedBoard::create(&copy_dir, None).unwrap();
    assert_ne!(copy_uid, tb.uid, "another chip");
    std::fs::copy(
        original.flash_path(),
        BoardFiles::new(&copy_dir).flash_path(),
    )
    .unwrap();
    let mut copy = EmulatedBoard::start(&copy_dir, StartOptions::default()).unwrap();
    let mut link =
        DeviceLink::connect_tcp(copy.serial_addr().unwrap(), Duration::from_secs(5)).unwrap();
    copy.resume().unwrap();
    let info = link
        .hello(Duration::from_secs(20))
        .unwrap()
        .verify(&test_device_key(&tb.uid.0))
        .expect("the copied key proves the copied identity");
    assert_eq!(info.serial, tb.uid.0, "it claims the original's serial");
    assert_eq!(info.chip_uid, copy_uid.0, "and names its own chip");
    assert!(!info.on_its_own_chip());
    assert_eq!(
        info.state,
        DeviceState::NoValidImage {
            reason: ErrorCode::UidMismatch
        },
        "no OS started on the copy"
    );
    drop(link);
    let (code, stdout) = device_verify(&tc, &field, port_of(&copy), "30");
    assert_eq!(code, 9, "the copy is a clone: {stdout}");
    assert!(stdout.contains("clone suspected"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "chip UID {} is not the UID its identity was certified for ({})",
            hex::encode(copy_uid.0),
            hex::encode(tb.uid.0)
        )),
        "{stdout}"
    );
    assert!(stdout.contains("0x0410"), "the boot refusal: {stdout}");
    copy.kill();

    tb.board.power_on_again().unwrap();
    let mut link =
        DeviceLink::connect_tcp(tb.board.serial_addr().unwrap(), Duration::from_secs(5)).unwrap();
    tb.board.resume().unwrap();
    let banner = link.wait_for_banner(Duration::from_secs(20)).unwrap();
    assert!(banner.contains("demo-os"), "banner: {banner}");
    let info = verified_hello(&tb, &mut link);
    assert!(info.on_its_own_chip());
    assert_eq!(info.state, DeviceState::OsRunning { version: 5 });
    drop(link);
    let (code, stdout) = device_verify(&tc, &field, port_of(&tb.board), "30");
    assert_eq!(code, 0, "the original is genuine: {stdout}");
    assert!(stdout.contains(": genuine"), "{stdout}");
    assert!(
        stdout.contains("clone evidence on record for this identity: 1"),
        "{stdout}"
    );

    // The evidence stays on the device record, for `devices show`.
    let shown = Command::new(flashgate_binary())
        .args(["--endpoint", &tc.endpoint, "-o", "json", "devices", "show"])
        .arg(hex::encode(tb.uid.0))
        .env("FLASHGATE_CA_FILE", &tc.ca_file)
        .env("FLASHGATE_TOKEN", &tc.operator_token)
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let evidence = shown["clone_evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 1, "{shown}");
    assert!(
        evidence[0]
            .as_str()
            .unwrap()
            .contains(&hex::encode(copy_uid.0)),
        "{shown}"
    );
    let verdicts: Vec<_> = tc
        .coordinator
        .audit()
        .list("global", 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "device verified")
        .map(|e| e.detail)
        .collect();
    assert_eq!(verdicts.len(), 3, "{verdicts:?}");
    assert_eq!(verdicts[0], "unregistered");
    assert!(verdicts[1].starts_with("clone suspected"), "{verdicts:?}");
    assert_eq!(verdicts[2], "genuine");

    // A blank board answers no hello: no verdict, the link's exit code.
    let blank = TestBoard::new();
    let (code, _) = device_verify(&tc, &field, port_of(&blank.board), "3");
    assert_eq!(code, 3, "a board that answers nothing gets no verdict");
}
