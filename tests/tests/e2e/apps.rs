//! Apps as per-device packages on the emulated board: an app release is uploaded and published
//! like an OS, `flashgate device app-install` (the binary, as a process) fetches the device's
//! package from the coordinator and relays it over the UART to the running demo OS, which
//! installs it into the app slot and starts it without a reset; the registry shows the app from
//! the device's verified app receipt. Another device refuses the package, a tampered chunk is
//! refused with the old app still running, and an older app version is refused (the floor).

use std::process::{Command, Output};
use std::time::Duration;

use flashgate_cli::device_update::Uart;
use flashgate_cli::grpc::{Clients, UpdateClient};
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_proto::v1;
use flashgate_protocol::app::receipt::{self, AppReceipt};
use flashgate_protocol::codec::Codec;
use flashgate_protocol::uart::host::LinkError;
use flashgate_protocol::uart::{MsgType, OsStatus, Request};
use flashgate_protocol::ErrorCode;
use flashgate_tests::{Firmware, TestBoard, Vendor};

use crate::test_device_key;

const T: Duration = Duration::from_secs(30);

fn demo_app() -> Vec<u8> {
    let path = flashgate_tests::firmware_dir().join("demo-app.bin");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the firmware first: `cargo xtask firmware`",
            path.display()
        )
    })
}

/// A coordinator with product 7 and `boards` provisioned boards running the demo OS (v1),
/// registered, powered on.
struct Fleet {
    tc: TestCoordinator,
    vendor: Vendor,
    client: UpdateClient,
    boards: Vec<TestBoard>,
}

impl Fleet {
    async fn new(boards: usize) -> Self {
        let tc = TestCoordinator::start_embedded().await.unwrap();
        let mut ops = tc.operator_client().await.unwrap();
        let mut vendor = Vendor::new(crate::PRODUCT_ID);
        ops.create_product(tc.operator_request(v1::CreateProductRequest {
            product_id: crate::PRODUCT_ID,
            name: "app test".into(),
            vendor_public_key: vendor.public().to_vec(),
        }))
        .await
        .unwrap();
        vendor.authority = tc.authority_signing_key(crate::PRODUCT_ID).await.unwrap();
        let mut fw = Firmware::load();
        let bootloader = vendor.sign_bootloader(&fw.bootloader, 3);
        let mut made = Vec::new();
        for _ in 0..boards {
            let (mut tb, back) = crate::provisioned_board(&vendor, &bootloader, fw, |fw| {
                vendor.sign_os(&fw.demo_os, 1)
            });
            fw = back;
            tb.board.resume().unwrap();
            tc.register_device(crate::PRODUCT_ID, &tb.uid.0, &test_device_key(&tb.uid.0))
                .await
                .unwrap();
            made.push(tb);
        }
        let client = Clients::connect(&tc.endpoint, &tc.security(), &tc.operator_token)
            .await
            .unwrap()
            .update();
        Self {
            tc,
            vendor,
            client,
            boards: made,
        }
    }

    /// Uploads the demo app as `version` and publishes it to `boards`.
    async fn publish_app(&mut self, version: u32, boards: &[usize]) {
        let mut ops = self.tc.operator_client().await.unwrap();
        let release = ops
            .upload_release(self.tc.operator_request(v1::UploadReleaseRequest {
                image: self.vendor.sign_app(&demo_app(), version),
            }))
            .await
            .unwrap()
            .into_inner();
        let published = self
            .client
            .publish_update(
                self.tc.operator_request(v1::PublishUpdateRequest {
                    release_digest: release.digest,
                    serials: boards
                        .iter()
                        .map(|b| self.boards[*b].uid.0.to_vec())
                        .collect(),
                    ..Default::default()
                }),
            )
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (published.devices as usize, published.version),
            (boards.len(), version)
        );
    }

    fn port(&self, board: usize) -> String {
        format!("tcp:{}", self.boards[board].board.serial_addr().unwrap())
    }

    fn serial(&self, board: usize) -> String {
        hex::encode(self.boards[board].uid.0)
    }

    /// `flashgate ARGS` as the operator (a process, as an operator runs it).
    fn flashgate(&self, args: &[&str]) -> Output {
        Command::new(flashgate_tests::flashgate_binary())
            .args(["--endpoint", &self.tc.endpoint])
            .env("FLASHGATE_CA_FILE", &self.tc.ca_file)
            .env("FLASHGATE_TOKEN", &self.tc.operator_token)
            .args(args)
            .output()
            .unwrap()
    }

    /// `flashgate device app-install` for `board`, with `--start`.
    fn app_install(&self, board: usize) -> Output {
        let (port, serial) = (self.port(board), self.serial(board));
        self.flashgate(&[
            "device",
            "app-install",
            "--port",
            &port,
            "--serial",
            &serial,
            "--start",
        ])
    }

    /// The package the coordinator issues to `board`.
    async fn package_of(&mut self, board: usize) -> v1::UpdatePackage {
        let serial = self.boards[board].uid.0.to_vec();
        self.client
            .get_app_package(self.tc.operator_request(v1::GetUpdatePackageRequest {
                product_id: crate::PRODUCT_ID,
                serial,
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// `flashgate devices show SERIAL -o json`.
    fn show(&self, board: usize) -> serde_json::Value {
        let out = self.flashgate(&["-o", "json", "devices", "show", &self.serial(board)]);
        assert!(out.status.success(), "devices show: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The OS's (unauthenticated) status over a fresh connection.
fn os_status(uart: &mut Uart) -> OsStatus {
    uart.send(&Request::OsStatus).unwrap();
    let raw = uart.expect(MsgType::OsStatusReply, T).unwrap();
    OsStatus::read_bytes(&raw).unwrap()
}

/// What the board's app slot holds, per a verified app receipt.
fn app_slot(uart: &mut Uart, serial: &[u8; 16]) -> AppReceipt {
    let challenge = [0x3Cu8; 32];
    let raw = uart.link().app_receipt(challenge, T).unwrap();
    receipt::verify(&test_device_key(serial), &challenge, &raw).unwrap()
}

/// Relays `package` to the board on `uart` the way a host would; the device's refusal code.
fn relay_refused(uart: &mut Uart, package: &v1::UpdatePackage) -> ErrorCode {
    match uart
        .link()
        .relay_app_package(&package.envelope, &package.chunks, T)
    {
        Err(LinkError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Starts the installed app; its log lines and return status.
fn start_app(uart: &mut Uart) -> (Vec<String>, u32) {
    uart.send(&Request::AppStart).unwrap();
    let mut log = Vec::new();
    loop {
        let (ty, payload) = {
            let got = uart.link().receive(T).unwrap();
            (got.msg_type(), got.payload().to_vec())
        };
        match ty {
            MsgType::AppLog => log.push(String::from_utf8_lossy(&payload).into_owned()),
            MsgType::AppAck if payload[0] == MsgType::AppStart as u8 => {
                return (log, u32::from_le_bytes(payload[1..5].try_into().unwrap()))
            }
            MsgType::Error => panic!("start refused: {payload:?}"),
            MsgType::BootBanner => panic!("the device reset"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_package_installs_and_runs_without_reset_and_another_device_refuses_it() {
    let mut f = Fleet::new(2).await;
    let serial_b = f.boards[1].uid.0;
    assert_eq!(f.show(0)["update"]["app"]["state"], "none");
    f.publish_app(4, &[0]).await;
    assert_eq!(f.show(0)["update"]["app"]["state"], "pending");

    let before = os_status(&mut Uart::open(&f.port(0)).unwrap());
    let out = f.app_install(0);
    assert!(out.status.success(), "app-install: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("app version 4 installed: installed (app floor 4)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("app: demo-app: hello from the app slot"),
        "the app's output: {stdout}"
    );
    assert!(stdout.contains("app returned 0"), "{stdout}");
    // No reset: the same boot (first record at the same tick), uptime and the record counter
    // went on, and the OS counted the start.
    let mut uart = Uart::open(&f.port(0)).unwrap();
    let after = os_status(&mut uart);
    assert_eq!(
        after.first_record_ticks, before.first_record_ticks,
        "same boot"
    );
    assert!(after.uptime_ticks > before.uptime_ticks);
    assert!(
        after.next_counter > before.next_counter,
        "the app's record continued the stream"
    );
    assert_eq!((after.apps_started, after.app_version), (1, 4));
    // The registry shows the app from the verified receipt.
    let shown = f.show(0);
    let app = &shown["update"]["app"];
    assert_eq!(
        (&app["state"], &app["version"], &app["floor"]),
        (
            &serde_json::json!("installed"),
            &serde_json::json!(4),
            &serde_json::json!(4)
        ),
        "{shown}"
    );
    // The table view names the app too.
    let table = f.flashgate(&["devices", "show", &f.serial(0)]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("app version"),
        "{}",
        text(&table)
    );

    // Device A's package relayed to device B (a host that holds it, say): refused before
    // anything is written, B's app slot unchanged.
    let package = f.package_of(0).await;
    let mut uart_b = Uart::open(&f.port(1)).unwrap();
    let slot_before = app_slot(&mut uart_b, &serial_b);
    assert_eq!(relay_refused(&mut uart_b, &package), ErrorCode::WrongSerial);
    assert_eq!(app_slot(&mut uart_b, &serial_b), slot_before);
    assert_eq!(
        (slot_before.version, slot_before.reason),
        (0, Some(ErrorCode::NoValidImage))
    );
    // B's own tool run (its UART freed first): nothing was published to B.
    drop(uart_b);
    let out = f.app_install(1);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no app is published for device"),
        "{}",
        text(&out)
    );
    for tb in &mut f.boards {
        tb.board.kill();
    }
    f.tc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_chunk_and_an_older_app_are_refused_and_the_old_app_still_runs() {
    let mut f = Fleet::new(1).await;
    let serial = f.boards[0].uid.0;
    f.publish_app(4, &[0]).await;
    let out = f.app_install(0);
    assert!(out.status.success(), "app-install: {}", text(&out));

    // One flipped ciphertext bit: refused before it is programmed; the v4 app still starts.
    let mut package = f.package_of(0).await;
    package.chunks[0][100] ^= 0x10;
    let mut uart = Uart::open(&f.port(0)).unwrap();
    assert_eq!(relay_refused(&mut uart, &package), ErrorCode::BadTag);
    let (log, status) = start_app(&mut uart);
    assert_eq!(status, 0);
    assert!(
        log.iter().any(|l| l.contains("hello from the app slot")),
        "{log:?}"
    );
    let slot = app_slot(&mut uart, &serial);
    assert_eq!((slot.version, slot.floor, slot.reason), (4, 4, None));
    drop(uart);

    // An older vendor-signed app (v3), published and relayed by the tool: refused by the floor,
    // reported, v4 still installed.
    f.publish_app(3, &[0]).await;
    let out = f.app_install(0);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&ErrorCode::Rollback.to_string()),
        "the refusal names the floor: {}",
        text(&out)
    );
    let app = f.show(0)["update"]["app"].clone();
    assert_eq!(app["state"], "refused", "{app}");
    assert!(
        app["detail"]
            .as_str()
            .unwrap()
            .contains(&ErrorCode::Rollback.to_string()),
        "{app}"
    );
    let mut uart = Uart::open(&f.port(0)).unwrap();
    assert_eq!(app_slot(&mut uart, &serial).version, 4);
    let (_, status) = start_app(&mut uart);
    assert_eq!(status, 0);
    f.boards[0].board.kill();
    f.tc.stop().await;
}
