//! The bootloader at reset: a valid signed OS is started, anything else is refused and the
//! bootloader stays on the UART saying why.

use std::time::Duration;

use flashgate_emulator::{BoardFiles, EmulatedBoard, StartOptions};
use flashgate_protocol::hello::{DeviceState, HelloInfo};
use flashgate_protocol::ErrorCode;
use flashgate_station::device_link::DeviceLink;
use flashgate_tests::{Firmware, TestBoard, Vendor};

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

/// The clone test: a provisioned board's flash copied onto a board with another unique ID
/// starts no OS and says why (`UidMismatch`) in a hello whose MAC verifies (the key was
/// copied) but that names its own chip beside the original's serial — what the coordinator
/// calls a clone. The original still boots its OS and answers as itself.
#[test]
fn a_copied_flash_on_another_chip_starts_nothing_and_says_so() {
    let (mut tb, _, _) = provisioned_board_with_os(|v, fw| v.sign_os(&fw.demo_os, 5));
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
}
