//! Boards leave the factory running the product's OS (issue 18), which the station relays as
//! per-device packages and never holds in clear: the whole station with the coordinator, and
//! the per-target flow for the failure paths (a package for another chip, a power cut).

use std::sync::Arc;
use std::time::Duration;

use flashgate_emulator::{BoardFiles, EmulatedBoard, StartOptions};
use flashgate_proto::v1;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::update::receipt;
use flashgate_protocol::ErrorCode;
use flashgate_station::device_link::DeviceLink;
use flashgate_station::probe::gdb::Direction;
use flashgate_station::probe::TrafficRecorder;
use flashgate_station::provisioning::{ProvisioningError, Report, Step};
use flashgate_station::station::run_station;
use flashgate_tests::bay::TestBay;
use flashgate_tests::factory_os::{contains, files_under, provision_with_os, Leaks, TestPackages};
use flashgate_tests::station_harness::{Factory, BOOTLOADER_VERSION, PRODUCT_ID};
use flashgate_tests::uart_tap::UartTap;
use flashgate_tests::{Firmware, Vendor, STEP_TIMEOUT};

use crate::test_device_key;

const OS_VERSION: u32 = 2;
const T: Duration = Duration::from_secs(30);

/// Powers a board up again (as its customer would) and returns what its hello says it runs,
/// the proof checked under `key`.
fn power_up(files: &BoardFiles, key: &[u8; 32]) -> DeviceState {
    let mut board = EmulatedBoard::start(files.dir(), StartOptions::default()).unwrap();
    let mut link = DeviceLink::connect_tcp(board.serial_addr().unwrap(), T).unwrap();
    board.resume().unwrap();
    let answer = link.hello(T).expect("the board answers hello");
    answer.verify(key).expect("the proof verifies").state
}

#[test]
fn an_order_with_an_os_makes_boards_that_boot_it_and_the_station_never_sees_it_in_clear() {
    let factory = Factory::embedded_with_os(2, OS_VERSION);
    let fw = Firmware::load();
    let boards = tempfile::tempdir().unwrap();
    let debug_link = Arc::new(TrafficRecorder::new());
    let uart = UartTap::recording();
    let mut options = factory.station_options(0);
    for name in ["bay-a", "bay-b"] {
        let bay = TestBay::in_dir(name, boards.path().join(name))
            .with_link_tap(debug_link.clone())
            .with_uart_tap(uart.clone());
        options.fixtures.push(Box::new(bay));
    }
    let summary = run_station(options).expect("station runs");
    assert_eq!(
        (summary.provisioned, summary.os_installed, summary.failed),
        (2, 2, 0),
        "{summary:?}"
    );
    assert_eq!(summary.reported, 2, "{summary:?}");

    // The registry: bootloader, OS and test result per board, the OS as its receipt proved.
    let devices = factory.registered();
    assert_eq!(devices.len(), 2, "{devices:#?}");
    for d in &devices {
        assert_eq!(d.outcome, v1::InstallOutcome::Provisioned as i32);
        assert_eq!(d.bootloader_version, BOOTLOADER_VERSION);
        assert_eq!(d.os_version, OS_VERSION);
        assert!(d.test_result.is_some());
    }
    // Each board boots that OS on its next power-up.
    let made: Vec<BoardFiles> = ["bay-a", "bay-b"]
        .iter()
        .flat_map(|bay| std::fs::read_dir(boards.path().join(bay)).unwrap())
        .map(|entry| BoardFiles::new(entry.unwrap().path()))
        .collect();
    assert_eq!(made.len(), 2);
    for files in &made {
        let uid = files.uid().unwrap();
        assert!(
            devices.iter().any(|d| d.serial == uid.0),
            "board registered"
        );
        let key = factory.device_key(&uid.0);
        assert_eq!(
            power_up(files, &key),
            DeviceState::OsRunning {
                version: OS_VERSION
            },
            "{} boots the order's OS",
            files.dir().display()
        );
    }

    // Nothing of the OS in clear: not on the network, the debug links, the UARTs, nor in the
    // station's state directory. Windows that also occur in images the station holds in clear
    // (the public loader, the bootloader it writes) are not searched: they share library code.
    // The body as signed: it pins the coordinator's authority key, as the board's flash holds it.
    let os_body = &factory.os.as_ref().unwrap()[flashgate_protocol::image::SIGNED_HEADER_LEN..];
    let bootloader = &fw.bootloader;
    let leaks = Leaks::windows_of(os_body, 64, &[fw.loader.bytes(), bootloader]);
    assert!(leaks.len() > 40, "searched {} windows", leaks.len());
    let network = [
        factory.proxy.recorder.bytes(Direction::Sent),
        factory.proxy.recorder.bytes(Direction::Received),
    ]
    .concat();
    let debug = [
        debug_link.bytes(Direction::Sent),
        debug_link.bytes(Direction::Received),
    ]
    .concat();
    let uart_bytes = [
        uart.recorder.bytes(Direction::Sent),
        uart.recorder.bytes(Direction::Received),
    ]
    .concat();
    let state = files_under(factory.state_dir.path());
    eprintln!(
        "searched: network {} B, debug links {} B, UART {} B, state directory {} B",
        network.len(),
        debug.len(),
        uart_bytes.len(),
        state.len()
    );
    for (what, hay) in [
        ("network", &network),
        ("debug link", &debug),
        ("UART", &uart_bytes),
        ("state directory", &state),
    ] {
        assert_eq!(
            leaks.found_in(hay),
            Vec::<usize>::new(),
            "OS windows in the {what}"
        );
    }
    // Positive controls: the searches find what did cross in clear. The OS's signed header
    // travels in clear in every envelope over the UART; the public loader crosses the debug
    // link; the board's own flash holds the whole OS (below). The network is TLS and the
    // station caches releases sealed to itself, so there even the envelope's header and the
    // bootloader the station writes must not be found.
    let os_header = &factory.os.as_ref().unwrap()[..64];
    assert!(
        contains(&uart_bytes, os_header),
        "the envelope crossed the UART"
    );
    assert!(
        !contains(&network, os_header),
        "the envelope's header is readable on the network: it should be inside TLS"
    );
    let bl_leaks = Leaks::windows_of(bootloader, 512, &[]);
    assert_eq!(
        bl_leaks.found_in(&state),
        Vec::<usize>::new(),
        "the cached bootloader is in clear in the state directory"
    );
    assert_eq!(
        bl_leaks.found_in(&network),
        Vec::<usize>::new(),
        "the fetched bootloader is in clear on the network"
    );
    assert!(
        debug_link.carries(&fw.loader.bytes()[1000..1032]),
        "the loader is found on the debug link"
    );
    // And the search is sensitive to the OS itself: the board's own flash holds it.
    let flash = std::fs::read(made[0].flash_path()).unwrap();
    assert_eq!(
        leaks.found_in(&flash).len(),
        leaks.len(),
        "the board holds the OS"
    );
}

#[test]
fn a_package_for_another_chip_is_refused_by_the_board_which_is_reported_failed() {
    let fw = Firmware::load();
    let vendor = Vendor::new(PRODUCT_ID);
    let signed_os = vendor.sign_os(&fw.demo_os, OS_VERSION);
    let other = [0xAB; 16];
    let packages = TestPackages::new(&signed_os, PRODUCT_ID, OS_VERSION)
        .for_chip(other, test_device_key(&other));
    let mut bay = TestBay::new("e2e");
    let failed = provision_with_os(
        &mut bay,
        vendor.plan(&fw, 3),
        vendor.issuer(),
        OS_VERSION,
        Arc::new(packages),
        STEP_TIMEOUT,
    )
    .expect_err("the board refuses another chip's package");
    assert_eq!(failed.step, Step::OsInstall);
    assert!(
        matches!(
            failed.error,
            ProvisioningError::TargetRefused {
                request: "UpdateBegin",
                code: ErrorCode::WrongSerial
            }
        ),
        "{failed}"
    );
    // Reported as any failed target: FAILED with its reason, no slot consumed.
    let report = Report::of_failure("lease", "e2e", &failed, 1).expect("the serial was known");
    assert!(report.is_failure());
    let reason = report.failure_reason.unwrap();
    assert!(
        reason.contains("os-install") && reason.contains(&ErrorCode::WrongSerial.to_string()),
        "{reason}"
    );
    // Nothing was installed: the board still runs its bootloader only.
    let files = bay.board_files(0);
    let _boards = bay.into_dir();
    let uid = files.uid().unwrap();
    assert!(matches!(
        power_up(&files, &test_device_key(&uid.0)),
        DeviceState::NoValidImage { .. }
    ));
}

#[test]
fn a_power_cut_mid_os_install_resumes_and_the_board_ends_on_the_os() {
    let fw = Firmware::load();
    let vendor = Vendor::new(PRODUCT_ID);
    let signed_os = vendor.sign_os(&fw.demo_os, OS_VERSION);
    assert!(signed_os.len() > 3 * 4096, "a package of several chunks");
    let packages = Arc::new(TestPackages::new(&signed_os, PRODUCT_ID, OS_VERSION));
    // The power goes as the third chunk goes out (hello, envelope and two chunks before it).
    let tap = UartTap::cutting_after(2 * 4096 + 1200);
    let mut bay = TestBay::new("e2e").with_uart_tap(tap.clone());
    let done = provision_with_os(
        &mut bay,
        vendor.plan(&fw, 3),
        vendor.issuer(),
        OS_VERSION,
        packages.clone(),
        STEP_TIMEOUT,
    )
    .expect("the install resumes after the power cut");
    assert_eq!(tap.cuts(), 1);
    let os = done.os.expect("the OS was installed");
    assert_eq!((os.version, os.restarts), (OS_VERSION, 1));
    assert!(
        os.resumed_at >= 1,
        "the transfer resumed at chunk {}",
        os.resumed_at
    );
    // The receipt the coordinator would verify: the device's MAC over its challenge.
    let key = test_device_key(&done.serial);
    let challenge = packages.issued.lock().unwrap().last().unwrap().1;
    let r = receipt::verify(&key, &challenge, &os.receipt).expect("the receipt verifies");
    assert_eq!(
        r.state,
        DeviceState::OsRunning {
            version: OS_VERSION
        }
    );
    let files = bay.board_files(0);
    let _boards = bay.into_dir();
    assert_eq!(
        power_up(&files, &key),
        DeviceState::OsRunning {
            version: OS_VERSION
        }
    );
}
