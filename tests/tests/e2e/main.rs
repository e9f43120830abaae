//! End-to-end tests on the emulated board: real QEMU, the real firmware, the real GDB link.
//! One test binary (one link step), one module per flow.

mod boot;
mod c_demo_os;
mod data_stream;
mod provisioning;
mod provisioning_refusals;
mod station;
mod telemetry;
mod update;

use std::time::Duration;

use flashgate_protocol::Serial;
use flashgate_station::provisioning::{LinkFault, ProvisioningJob};
use flashgate_tests::Vendor;
use zeroize::Zeroizing;

/// Time allowed for one loader turn (the handshake is the longest, ~6 M instructions).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The device key tests give every board: derived from the serial so a test can recompute it.
pub fn test_device_key(serial: &Serial) -> Zeroizing<[u8; 32]> {
    flashgate_protocol::lease_keys::derive_device_key(&[0x42; 32], 7, serial)
}

/// A provisioning job for `vendor`'s signed bootloader.
pub fn job<'a>(
    vendor: &Vendor,
    bootloader: &'a [u8],
    lock: bool,
    fault: Option<LinkFault>,
) -> ProvisioningJob<'a> {
    ProvisioningJob {
        bootloader,
        product_id: vendor.product_id,
        vendor_public: vendor.public(),
        rollback_floor: 1,
        device_key: &test_device_key,
        test_app: None,
        lock_debug_port: lock,
        chunk_size: 4096,
        fault,
    }
}

/// A board provisioned with the vendor's bootloader (debug port locked), then `os` installed
/// offline as an update would, powered on again and still halted (connect the UART, then
/// resume). Returns the board, the vendor and the firmware.
pub fn provisioned_board_with_os(
    os: impl FnOnce(&Vendor, &flashgate_tests::Firmware) -> Vec<u8>,
) -> (
    flashgate_tests::TestBoard,
    Vendor,
    flashgate_tests::Firmware,
) {
    let fw = flashgate_tests::Firmware::load();
    let vendor = Vendor::new(7);
    let bootloader = vendor.sign_bootloader(&fw.bootloader, 3);
    let (tb, fw) = provisioned_board(&vendor, &bootloader, fw, |fw| os(&vendor, fw));
    (tb, vendor, fw)
}

/// Like [`provisioned_board_with_os`] for a given vendor and signed bootloader (made with
/// `flashgate image sign`, say).
pub fn provisioned_board(
    vendor: &Vendor,
    bootloader: &[u8],
    fw: flashgate_tests::Firmware,
    os: impl FnOnce(&flashgate_tests::Firmware) -> Vec<u8>,
) -> (flashgate_tests::TestBoard, flashgate_tests::Firmware) {
    let mut tb = flashgate_tests::TestBoard::new();
    let mut probe = tb.probe(None);
    flashgate_station::provisioning::provision(
        &mut probe,
        &fw.loader,
        &job(vendor, bootloader, true, None),
        STEP_TIMEOUT,
    )
    .unwrap();
    drop(probe);
    tb.board.power_off().unwrap();
    flashgate_tests::install_os_offline(&tb.board, &os(&fw));
    tb.board.power_on_again().unwrap();
    (tb, fw)
}
