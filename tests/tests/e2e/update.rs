//! Updates over the UART: provision → publish OS v2 → `flashgate device update` (its library
//! entry point) against a test coordinator → the board runs v2 and the registry says so. Plus
//! refusals, a resumed transfer, and a power cut at every install step.

use std::time::Duration;

use flashgate_cli::device_update::{self, Stopped, Uart, UpdateOptions};
use flashgate_cli::grpc::{Clients, UpdateClient};
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_proto::v1;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::layout::{FLASH_PAGE_SIZE, IMAGE_HEADER_SPACE};
use flashgate_protocol::uart::{MsgType, Request};
use flashgate_protocol::update::boot_state::Outcome;
use flashgate_protocol::update::package::SealedRelease;
use flashgate_protocol::update::receipt;
use flashgate_protocol::ErrorCode;
use flashgate_tests::{Firmware, TestBoard, Vendor};
use zeroize::Zeroizing;

use crate::test_device_key;

const T: Duration = Duration::from_secs(30);

struct Setup {
    tb: TestBoard,
    tc: TestCoordinator,
    vendor: Vendor,
    fw: Firmware,
    client: UpdateClient,
}

impl Setup {
    /// A provisioned board running OS v1, registered in a fresh coordinator.
    async fn new() -> Self {
        let tc = TestCoordinator::start_embedded().await.unwrap();
        let mut ops = tc.operator_client().await.unwrap();
        let mut vendor = Vendor::new(crate::PRODUCT_ID);
        ops.create_product(tc.operator_request(v1::CreateProductRequest {
            product_id: 7,
            name: "update test".into(),
            vendor_public_key: vendor.public().to_vec(),
        }))
        .await
        .unwrap();
        // The board is certified in-process under the product's (coordinator's) authority key,
        // which its bootloader and OS images pin.
        vendor.authority = tc.authority_signing_key(7).await.unwrap();
        let fw = Firmware::load();
        let bootloader = vendor.sign_bootloader(&fw.bootloader, 3);
        let (mut tb, fw) = crate::provisioned_board(&vendor, &bootloader, fw, |fw| {
            vendor.sign_os(&fw.demo_os, 1)
        });
        tb.board.resume().unwrap();
        tc.register_device(7, &tb.uid.0, &test_device_key(&tb.uid.0))
            .await
            .unwrap();
        // The CLI's own client: the operator token rides on every call.
        let client = Clients::connect(&tc.endpoint, &tc.security(), &tc.operator_token)
            .await
            .unwrap()
            .update();
        Self {
            tb,
            tc,
            vendor,
            fw,
            client,
        }
    }

    /// Uploads OS `version` and publishes it to this board.
    async fn publish(&mut self, version: u32) {
        let mut ops = self.tc.operator_client().await.unwrap();
        let release = ops
            .upload_release(self.tc.operator_request(v1::UploadReleaseRequest {
                image: self.vendor.sign_os(&self.fw.demo_os, version),
            }))
            .await
            .unwrap()
            .into_inner();
        let published = self
            .client
            .publish_update(self.tc.operator_request(v1::PublishUpdateRequest {
                release_digest: release.digest,
                serials: vec![self.tb.uid.0.to_vec()],
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((published.devices, published.version), (1, version));
    }

    fn port(&self) -> String {
        format!("tcp:{}", self.tb.board.serial_addr().unwrap())
    }

    async fn update(
        &mut self,
        options: UpdateOptions,
    ) -> anyhow::Result<device_update::UpdateReport> {
        device_update::run(&mut self.client, &options).await
    }

    /// Power back on from the persisted flash; what runs, per a verified hello and receipt.
    fn running(&mut self) -> receipt::StatusReceipt {
        self.tb.board.power_on_again().unwrap();
        self.tb.board.resume().unwrap();
        let mut uart = Uart::open(&self.port()).unwrap();
        let challenge = [0x5Cu8; 32];
        let raw = uart.status(&challenge, T).unwrap();
        receipt::verify(&test_device_key(&self.tb.uid.0), &challenge, &raw).unwrap()
    }

    async fn device_status(&mut self) -> v1::DeviceUpdateStatus {
        self.client
            .get_device_status(self.tc.operator_request(v1::GetDeviceStatusRequest {
                product_id: 7,
                serial: self.tb.uid.0.to_vec(),
            }))
            .await
            .unwrap()
            .into_inner()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_over_uart_boots_v2_and_the_registry_shows_it() {
    let mut s = Setup::new().await;
    assert_eq!(s.device_status().await.state, "none");
    s.publish(2).await;
    let report = s.update(UpdateOptions::new(s.port())).await.unwrap();
    assert_eq!(report.version, 2);
    assert_eq!(report.receipt.state, DeviceState::OsRunning { version: 2 });
    assert_eq!(report.status.state, "updated", "{:?}", report.status);
    // After a power cycle the board still runs v2, confirmed, floor raised.
    s.tb.board.power_off().unwrap();
    let r = s.running();
    assert_eq!(r.state, DeviceState::OsRunning { version: 2 });
    assert_eq!((r.outcome, r.floor), (Outcome::Updated, 2));
    let status = s.device_status().await;
    assert_eq!((status.os_version, status.bootloader_version), (2, 3));
    assert_eq!(status.last_outcome, "updated");
    assert!(status.last_seen_ms > 0);
}

/// Pushes a package by hand and returns the device's refusal.
fn push_expecting_refusal(uart: &mut Uart, envelope: &[u8], chunks: &[Vec<u8>]) -> ErrorCode {
    let refused = |e: anyhow::Error| match e.downcast::<Stopped>() {
        Ok(Stopped::Refused(code)) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    uart.send(&Request::UpdateBegin { envelope }).unwrap();
    if let Err(e) = uart.expect(MsgType::UpdateReady, T) {
        return refused(e);
    }
    for (i, sealed) in chunks.iter().enumerate() {
        let index = i as u32;
        uart.send(&Request::UpdateChunk { index, sealed }).unwrap();
        if let Err(e) = uart.expect(MsgType::ChunkAck, T) {
            return refused(e);
        }
    }
    panic!("the device accepted every chunk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_packages_change_nothing() {
    let mut s = Setup::new().await;
    let key = test_device_key(&s.tb.uid.0);
    let serial = s.tb.uid.0;
    let seal = |image: Vec<u8>, serial: &[u8; 16], key: &[u8; 32]| {
        let r = SealedRelease::seal(&image, Zeroizing::new([7; 32])).unwrap();
        (
            r.envelope_for(serial, 7, key, &[1; 16]).unwrap().to_vec(),
            r.chunks,
        )
    };
    let mut uart = Uart::open(&s.port()).unwrap();
    uart.send(&Request::EnterUpdate).unwrap();
    uart.expect(MsgType::UpdateMode, T).unwrap();
    let v2 = s.vendor.sign_os(&s.fw.demo_os, 2);
    // A package for another device (its serial and key).
    let other = [0xAB; 16];
    let (env, chunks) = seal(v2.clone(), &other, &test_device_key(&other));
    assert_eq!(
        push_expecting_refusal(&mut uart, &env, &chunks),
        ErrorCode::WrongSerial
    );
    // Another device's package re-addressed to this serial: the key does not unwrap.
    let (mut env, chunks) = seal(v2.clone(), &other, &test_device_key(&other));
    env[8..24].copy_from_slice(&serial);
    assert_eq!(
        push_expecting_refusal(&mut uart, &env, &chunks),
        ErrorCode::WrongDevice
    );
    // A tampered chunk.
    let (env, mut chunks) = seal(v2.clone(), &serial, &key);
    chunks[2][100] ^= 1;
    assert_eq!(
        push_expecting_refusal(&mut uart, &env, &chunks),
        ErrorCode::BadTag
    );
    // A bad vendor signature (another vendor's key).
    let forged = Vendor::new(7).sign_os(&s.fw.demo_os, 2);
    let (env, chunks) = seal(forged, &serial, &key);
    assert_eq!(
        push_expecting_refusal(&mut uart, &env, &chunks),
        ErrorCode::BadSignature
    );
    // Below the anti-rollback floor (1, from provisioning).
    let (env, chunks) = seal(s.vendor.sign_os(&s.fw.demo_os, 0), &serial, &key);
    assert_eq!(
        push_expecting_refusal(&mut uart, &env, &chunks),
        ErrorCode::Rollback
    );
    drop(uart);
    s.tb.board.power_off().unwrap();
    let r = s.running();
    assert_eq!(r.state, DeviceState::OsRunning { version: 1 });
    assert_eq!(r.outcome, Outcome::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_transfer_resumes_after_a_power_cut() {
    let mut s = Setup::new().await;
    s.publish(2).await;
    let mut options = UpdateOptions::new(s.port());
    options.max_chunks = Some(5);
    let err = s.update(options).await.unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Stopped>(), Some(Stopped::Truncated(5))),
        "{err}"
    );
    s.tb.board.power_cut().unwrap();
    assert_eq!(s.running().state, DeviceState::OsRunning { version: 1 });
    let report = s.update(UpdateOptions::new(s.port())).await.unwrap();
    assert_eq!(report.status.state, "updated");
    assert_eq!(report.receipt.state, DeviceState::OsRunning { version: 2 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cut_at_every_install_step_boots_old_or_new() {
    let mut s = Setup::new().await;
    let pages =
        ((IMAGE_HEADER_SPACE as usize + s.fw.demo_os.len()) as u32).div_ceil(FLASH_PAGE_SIZE);
    // install: snapshot, backup pages, snapshot, copy pages, snapshot; boot: trial snapshot.
    let steps = 1 + pages + 1 + pages + 1 + 1;
    let mut running = 1;
    for halt in 1..=steps {
        let target = running + 1;
        s.publish(target).await;
        let mut options = UpdateOptions::new(s.port());
        options.halt_after_step = Some(halt);
        let err = s.update(options).await.unwrap_err();
        assert!(
            matches!(err.downcast_ref::<Stopped>(), Some(Stopped::Halted(h)) if *h == halt),
            "{err}"
        );
        s.tb.board.power_cut().unwrap();
        let r = s.running();
        let DeviceState::OsRunning { version } = r.state else {
            panic!("step {halt}: no OS runs: {r:?}");
        };
        assert!(
            version == running || version == target,
            "step {halt}: v{version}"
        );
        if version == target {
            assert_eq!(
                (r.outcome, r.floor),
                (Outcome::Updated, target),
                "step {halt}"
            );
            running = target;
        } else {
            let floor = if running == 1 { 0 } else { running };
            assert_eq!(r.floor, floor, "step {halt}: floor moved");
        }
    }
    assert!(running > 1, "no cut ended in the new image");
}
