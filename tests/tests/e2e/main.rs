//! End-to-end tests on the emulated board: real QEMU, the real firmware, the real GDB link.
//! One test binary (one link step), one module per flow. Every board is provisioned by the
//! station's own per-target flow (`flashgate_station::provisioning::run_target`), the one the
//! factory runs.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test binary: a panic is how it reports a failure"
)]

mod apps;
mod boot;
mod c_demo_os;
mod chaos;
mod console;
mod data_stream;
mod factory_os;
mod getting_started;
mod install_cuts;
mod network_capture;
mod network_data;
mod network_update;
mod provisioning;
mod provisioning_refusals;
mod station;
mod station_binary;
mod station_disk_full;
mod station_fsync;
mod station_kills;
mod telemetry;
mod udp_flood;
mod update;

use flashgate_emulator::StartOptions;
use flashgate_protocol::Serial;
use flashgate_tests::{Firmware, TestBoard, Vendor};
use zeroize::Zeroizing;

/// The product of the foundation tests.
pub const PRODUCT_ID: u32 = 7;

/// The device key tests give every board: derived from the serial so a test can recompute it.
pub fn test_device_key(serial: &Serial) -> Zeroizing<[u8; 32]> {
    flashgate_tests::test_device_key(PRODUCT_ID, serial)
}

/// A board provisioned with the vendor's bootloader (debug port locked), then `os` installed
/// offline as an update would, powered on again and still halted (connect the UART, then
/// resume). Returns the board, the vendor and the firmware.
pub fn provisioned_board_with_os(
    os: impl FnOnce(&Vendor, &Firmware) -> Vec<u8>,
) -> (TestBoard, Vendor, Firmware) {
    let fw = Firmware::load();
    let vendor = Vendor::new(PRODUCT_ID);
    let bootloader = vendor.sign_bootloader(&fw.bootloader, 3);
    let (tb, fw) = provisioned_board(&vendor, &bootloader, fw, |fw| os(&vendor, fw));
    (tb, vendor, fw)
}

/// Like [`provisioned_board_with_os`] for a given vendor and signed bootloader (made with
/// `flashgate image sign`, say).
pub fn provisioned_board(
    vendor: &Vendor,
    bootloader: &[u8],
    fw: Firmware,
    os: impl FnOnce(&Firmware) -> Vec<u8>,
) -> (TestBoard, Firmware) {
    let plan = flashgate_station::provisioning::OrderPlan::new(
        fw.loader.clone(),
        bootloader.to_vec(),
        vendor.product_id,
    )
    .expect("a signed bootloader parses");
    let image = os(&fw);
    let (tb, _) =
        TestBoard::provisioned(plan, vendor.issuer(), StartOptions::default(), Some(&image));
    (tb, fw)
}
