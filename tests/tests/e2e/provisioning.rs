//! The whole provisioning flow over the GDB link, then the provisioned board on its UART.

use std::sync::Arc;
use std::time::Duration;

use flashgate_protocol::boot::verify_installed_bootloader;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::ErrorCode;
use flashgate_station::device_link::DeviceLink;
use flashgate_station::probe::TrafficRecorder;
use flashgate_station::provisioning::provision;
use flashgate_tests::{persisted_flash, Firmware, TestBoard, Vendor};

use crate::{job, test_device_key, STEP_TIMEOUT};

#[test]
fn provisioned_board_boots_its_bootloader_and_proves_its_key() {
    let fw = Firmware::load();
    let vendor = Vendor::new(7);
    let bootloader = vendor.sign_bootloader(&fw.bootloader, 3);
    let mut tb = TestBoard::new();
    let recorder = Arc::new(TrafficRecorder::new());
    let mut probe = tb.probe(Some(recorder.clone()));

    let outcome = provision(
        &mut probe,
        &fw.loader,
        &job(&vendor, &bootloader, true, None),
        STEP_TIMEOUT,
    )
    .expect("provisioning succeeds");
    assert_eq!(
        outcome.serial, tb.uid.0,
        "the serial is the board's unique ID"
    );
    assert!(outcome.locked);
    drop(probe);

    // Power cycle: flash persists, the lock marker makes the launcher refuse a debugger.
    tb.board.power_cycle().unwrap();
    assert!(tb.board.is_debug_locked());
    assert_eq!(
        tb.board.gdb_addr(),
        None,
        "a locked board offers no debug link"
    );
    let flash = &mut persisted_flash(&tb.board);
    let record = verify_installed_bootloader(flash).expect("bootloader installed and intact");
    assert_eq!(*test_device_key(&tb.uid.0), record.device_key);

    let mut link =
        DeviceLink::connect_tcp(tb.board.serial_addr().unwrap(), Duration::from_secs(5)).unwrap();
    tb.board.resume().unwrap();
    let answer = link
        .hello(Duration::from_secs(20))
        .expect("bootloader answers hello");
    let info = answer
        .verify(&test_device_key(&tb.uid.0))
        .expect("proof verifies under the device key");
    assert_eq!(info.serial, tb.uid.0);
    assert_eq!(info.product_id, 7);
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
    let vendor = Vendor::new(7);
    let bootloader = vendor.sign_bootloader(&fw.bootloader, 3);
    let tb = TestBoard::new();
    let recorder = Arc::new(TrafficRecorder::new());
    let mut probe = tb.probe(Some(recorder.clone()));
    provision(
        &mut probe,
        &fw.loader,
        &job(&vendor, &bootloader, false, None),
        STEP_TIMEOUT,
    )
    .unwrap();
    drop(probe);

    let key = test_device_key(&tb.uid.0);
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
    let vendor = Vendor::new(7);
    let bootloader = vendor.sign_bootloader(&fw.bootloader, 3);
    let test_app = vendor.sign_test_app(&fw.test_app);
    let tb = TestBoard::new();
    let mut probe = tb.probe(None);
    let mut j = job(&vendor, &bootloader, true, None);
    j.test_app = Some(&test_app);
    let outcome = provision(&mut probe, &fw.loader, &j, STEP_TIMEOUT).unwrap();
    let report = outcome.test.expect("the test app ran");
    assert!(report.passed(), "test app failed: {}", report.log);
    assert!(report.log.contains("device record"), "log: {}", report.log);
    assert!(outcome.locked);

    // A test app signed by someone else is refused by the loader.
    let tb = TestBoard::new();
    let mut probe = tb.probe(None);
    let forged = Vendor::new(7).sign_test_app(&fw.test_app);
    let mut j = job(&vendor, &bootloader, true, None);
    j.test_app = Some(&forged);
    let err = provision(&mut probe, &fw.loader, &j, STEP_TIMEOUT).unwrap_err();
    assert!(err.to_string().contains("vendor signature"), "{err}");
}
