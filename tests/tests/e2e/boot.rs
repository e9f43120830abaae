//! The bootloader at reset: a valid signed OS is started, anything else is refused and the
//! bootloader stays on the UART saying why.

use std::time::Duration;

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
