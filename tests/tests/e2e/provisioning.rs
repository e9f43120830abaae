//! The whole per-target flow the factory runs, over the GDB link, then the provisioned board on
//! its UART.

use std::sync::Arc;
use std::time::Duration;

use flashgate_emulator::{EmulatedBoard, StartOptions};
use flashgate_protocol::boot::verify_installed_bootloader;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::ErrorCode;
use flashgate_station::device_link::DeviceLink;
use flashgate_station::probe::TrafficRecorder;
use flashgate_station::provisioning::Step;
use flashgate_tests::bay::TestBay;
use flashgate_tests::{persisted_flash, provision, Firmware, Vendor};

use crate::{test_device_key, PRODUCT_ID};

#[test]
fn provisioned_board_boots_its_bootloader_and_proves_its_key() {
    let fw = Firmware::load();
    let vendor = Vendor::new(PRODUCT_ID);
    let mut bay = TestBay::new("e2e");
    let done =
        provision(&mut bay, vendor.plan(&fw, 3), vendor.issuer()).expect("provisioning succeeds");
    let files = bay.board_files(0);
    let uid = files.uid().unwrap();
    assert_eq!(done.serial, uid.0, "the serial is the board's unique ID");
    assert!(done.locked);
    // The flow power-cycled the locked board and checked its hello under the lease's key.
    let answer = done.hello.expect("the flow verified the hello");
    assert_eq!(
        answer.verify(&test_device_key(&uid.0)).unwrap().serial,
        uid.0
    );
    assert!(answer.verify(&[0u8; 32]).is_err());

    // Flash persists, the lock marker makes the launcher refuse a debugger.
    assert!(files.is_debug_locked().unwrap());
    let flash = &mut persisted_flash(&files);
    let record = verify_installed_bootloader(flash).expect("bootloader installed and intact");
    assert_eq!(*test_device_key(&uid.0), record.device_key);
    let mut board = EmulatedBoard::start(files.dir(), StartOptions::default()).unwrap();
    assert_eq!(
        board.gdb_addr(),
        None,
        "a locked board offers no debug link"
    );

    // A fresh hello of our own, independent of the station's.
    let mut link =
        DeviceLink::connect_tcp(board.serial_addr().unwrap(), Duration::from_secs(5)).unwrap();
    board.resume().unwrap();
    let answer = link
        .hello(Duration::from_secs(20))
        .expect("bootloader answers hello");
    let info = answer
        .verify(&test_device_key(&uid.0))
        .expect("proof verifies under the device key");
    assert_eq!(info.serial, uid.0);
    assert_eq!(info.product_id, PRODUCT_ID);
    assert_eq!(info.bootloader_version, 3);
    assert_eq!(
        info.state,
        DeviceState::NoValidImage {
            reason: ErrorCode::NoValidImage
        }
    );
    // The proof is bound to the key: another key must not verify it.
    assert!(answer.verify(&[0u8; 32]).is_err());
}

#[test]
fn nothing_secret_crosses_the_debug_link() {
    let fw = Firmware::load();
    let vendor = Vendor::new(PRODUCT_ID);
    let recorder = Arc::new(TrafficRecorder::new());
    let mut bay = TestBay::new("e2e").with_link_tap(recorder.clone());
    let done = provision(&mut bay, vendor.plan(&fw, 3), vendor.issuer()).unwrap();

    let key = test_device_key(&done.serial);
    assert!(
        recorder.len() > fw.bootloader.len(),
        "the recorder saw the transfer"
    );
    // The loader itself is public and must be visible: proves the search works on this capture.
    let loader_piece = &fw.loader.bytes()[1000..1032];
    assert!(
        recorder.carries(loader_piece),
        "search finds what did cross"
    );
    assert!(!recorder.carries(&key[..]), "device key crossed the link");
    // Every sampled 32-byte window of the bootloader must be absent, raw and hex (`carries`
    // checks both). Windows that also occur in the (public) loader are skipped: both link the
    // same crypto crates, so identical code legitimately crosses the link inside the loader.
    let body = &fw.bootloader;
    let loader = fw.loader.bytes();
    let mut checked = 0;
    for start in (0..body.len().saturating_sub(32)).step_by(256) {
        let window = &body[start..start + 32];
        if window.iter().all(|b| *b == window[0]) || loader.windows(32).any(|w| w == window) {
            continue;
        }
        checked += 1;
        assert!(
            !recorder.carries(window),
            "bootloader bytes at {start} crossed the link in clear"
        );
    }
    assert!(checked > 40, "checked {checked} windows");
}

#[test]
fn factory_test_app_runs_on_the_target_before_the_lock() {
    let fw = Firmware::load();
    let vendor = Vendor::new(PRODUCT_ID);
    let plan = vendor
        .plan(&fw, 3)
        .with_test_app(vendor.sign_test_app(&fw.test_app))
        .unwrap();
    let mut bay = TestBay::new("e2e");
    let done = provision(&mut bay, plan, vendor.issuer()).unwrap();
    let report = done.test.expect("the test app ran");
    assert!(report.passed(), "test app failed: {}", report.log);
    assert!(report.log.contains("device record"), "log: {}", report.log);
    assert!(done.locked);

    // A test app signed by someone else is refused by the loader, with its own code.
    let forged = Vendor::new(PRODUCT_ID).sign_test_app(&fw.test_app);
    let plan = vendor.plan(&fw, 3).with_test_app(forged).unwrap();
    let mut bay = TestBay::new("e2e");
    let failed = provision(&mut bay, plan, vendor.issuer()).unwrap_err();
    assert_eq!(failed.step, Step::Test, "{failed}");
    assert_eq!(
        failed.error.refusal(),
        Some(ErrorCode::BadSignature),
        "{failed}"
    );
    assert!(!bay.board_files(0).is_debug_locked().unwrap(), "not locked");
}
