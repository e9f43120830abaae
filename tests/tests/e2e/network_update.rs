//! Updates the bootloader fetches itself over the network (`bootloader-net`): real QEMU with
//! restricted user networking, a guest forward from 10.0.2.100:7402 to a loopback proxy in
//! front of the coordinator's device gateway, the real coordinator on its embedded store.
//! No host tool runs: nothing talks to the UART until the checks at the end.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use flashgate_cli::device_update::Uart;
use flashgate_coordinator::device_gateway::GatewayOptions;
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_emulator::{EmulatedBoard, NetworkOptions, StartOptions, TcpForward};
use flashgate_proto::v1;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::uart::frame::frame_to_vec;
use flashgate_protocol::uart::{MsgType, Request};
use flashgate_protocol::update::boot_state::Outcome;
use flashgate_protocol::update::receipt;
use flashgate_protocol::ErrorCode;
use flashgate_tests::gateway_proxy::GatewayProxy;
use flashgate_tests::{firmware_dir, Firmware, TestBoard, Vendor};

use crate::{test_device_key, PRODUCT_ID};

const T: Duration = Duration::from_secs(30);
/// `device-fw/bootloader/src/net.rs`: where the bootloader looks for its gateway.
const GATEWAY_GUEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 100), 7402);
/// Long enough for a 70 KiB OS over the emulated network on a loaded machine.
const FETCH_DEADLINE: Duration = Duration::from_secs(240);

/// The network bootloader's image (`cargo xtask firmware` writes it).
pub fn bootloader_net() -> Vec<u8> {
    let path = firmware_dir().join("bootloader-net.bin");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the firmware first: `cargo xtask firmware`",
            path.display()
        )
    })
}

/// Board options whose only network is the guest forward to `gateway` (a loopback port).
pub fn network_to(gateway: SocketAddr) -> StartOptions {
    let SocketAddr::V4(host) = gateway else {
        panic!("the gateway listens on IPv4 loopback")
    };
    StartOptions {
        network: Some(NetworkOptions {
            tcp_forwards: vec![TcpForward {
                guest: GATEWAY_GUEST,
                host,
            }],
            frame_peer: None,
        }),
        ..StartOptions::default()
    }
}

/// A coordinator with its device gateway, a proxy in front of the gateway, and a board with
/// the network bootloader, provisioned and registered.
pub struct NetSetup {
    pub tc: TestCoordinator,
    pub vendor: Vendor,
    pub fw: Firmware,
    pub tb: TestBoard,
    pub proxy: GatewayProxy,
}

impl NetSetup {
    /// `os`: the OS installed offline after provisioning (`None`: the board has none). The
    /// board is powered off; [`NetSetup::power_on`] starts it on the network.
    pub async fn new(os: Option<u32>) -> Self {
        let tc = TestCoordinator::start_embedded().await.unwrap();
        let mut ops = tc.operator_client().await.unwrap();
        let mut vendor = Vendor::new(PRODUCT_ID);
        ops.create_product(tc.operator_request(v1::CreateProductRequest {
            product_id: PRODUCT_ID,
            name: "network update test".into(),
            vendor_public_key: vendor.public().to_vec(),
        }))
        .await
        .unwrap();
        vendor.authority = tc.authority_signing_key(PRODUCT_ID).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_addr = listener.local_addr().unwrap();
        let options = GatewayOptions {
            retry_after: Duration::from_secs(1),
            ..GatewayOptions::default()
        };
        let gateway = tc.coordinator.device_gateway(options);
        tokio::spawn(gateway.serve(listener, std::future::pending()));
        let proxy = GatewayProxy::start(gateway_addr).unwrap();

        let fw = Firmware::load();
        let bootloader = vendor.sign_bootloader(&bootloader_net(), 3);
        let plan = flashgate_station::provisioning::OrderPlan::new(
            fw.loader.clone(),
            bootloader,
            PRODUCT_ID,
        )
        .unwrap();
        let image = os.map(|v| vendor.sign_os(&fw.demo_os, v));
        let (mut tb, _) = tokio::task::block_in_place(|| {
            TestBoard::provisioned(
                plan,
                vendor.issuer(),
                StartOptions::default(),
                image.as_deref(),
            )
        });
        tb.board.power_off().unwrap();
        tc.register_device(PRODUCT_ID, &tb.uid.0, &test_device_key(&tb.uid.0))
            .await
            .unwrap();
        Self {
            tc,
            vendor,
            fw,
            tb,
            proxy,
        }
    }

    /// Starts the board (from its saved flash) with the guest forward to the proxy.
    pub fn power_on(&mut self) {
        let dir = self.tb.board.dir().to_path_buf();
        self.tb.board = EmulatedBoard::start(dir, network_to(self.proxy.addr)).unwrap();
        self.tb.board.resume().unwrap();
    }

    /// Uploads OS `version` and publishes it to `serials`.
    pub async fn publish(&self, version: u32, serials: Vec<Vec<u8>>) {
        let mut ops = self.tc.operator_client().await.unwrap();
        let release = ops
            .upload_release(self.tc.operator_request(v1::UploadReleaseRequest {
                image: self.vendor.sign_os(&self.fw.demo_os, version),
            }))
            .await
            .unwrap()
            .into_inner();
        let mut updates = self.update_client().await;
        let published = updates
            .publish_update(self.tc.operator_request(v1::PublishUpdateRequest {
                release_digest: release.digest,
                serials,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(published.version, version);
    }

    async fn update_client(
        &self,
    ) -> v1::update_service_client::UpdateServiceClient<tonic::transport::Channel> {
        v1::update_service_client::UpdateServiceClient::new(self.tc.channel().await.unwrap())
    }

    /// The registry's view of a device.
    pub async fn status_of(&self, serial: &[u8; 16]) -> v1::DeviceUpdateStatus {
        self.update_client()
            .await
            .get_device_status(self.tc.operator_request(v1::GetDeviceStatusRequest {
                product_id: PRODUCT_ID,
                serial: serial.to_vec(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits until the registry's view of this board satisfies `done`.
    pub async fn wait_for_status(
        &self,
        what: &str,
        done: impl Fn(&v1::DeviceUpdateStatus) -> bool,
    ) -> v1::DeviceUpdateStatus {
        let deadline = Instant::now() + FETCH_DEADLINE;
        loop {
            let status = self.status_of(&self.tb.uid.0).await;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {FETCH_DEADLINE:?}; last status {status:?}; carried {:?}",
                self.proxy.carried.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Powers off, starts again without a network, and asks over the UART what runs (a
    /// verified receipt).
    pub fn running(&mut self) -> receipt::StatusReceipt {
        self.tb.board.power_off().unwrap();
        let dir = self.tb.board.dir().to_path_buf();
        self.tb.board = EmulatedBoard::start(dir, StartOptions::default()).unwrap();
        self.tb.board.resume().unwrap();
        let port = format!("tcp:{}", self.tb.board.serial_addr().unwrap());
        let mut uart = Uart::open(&port).unwrap();
        let challenge = [0x3Au8; 32];
        let raw = uart.status(&challenge, T).unwrap();
        receipt::verify(&test_device_key(&self.tb.uid.0), &challenge, &raw).unwrap()
    }
}

/// The registry saw a verified receipt of `version` installed over the network.
fn installed(version: u32) -> impl Fn(&v1::DeviceUpdateStatus) -> bool {
    move |s| s.os_version == version && s.last_seen_ms > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_without_an_os_fetches_it_from_the_gateway_and_boots_it() {
    let mut s = NetSetup::new(None).await;
    s.publish(2, vec![s.tb.uid.0.to_vec()]).await;
    assert_eq!(s.status_of(&s.tb.uid.0).await.state, "pending");
    s.power_on();
    let status = s.wait_for_status("OS v2 installed", installed(2)).await;
    // The bootloader's receipt, just before it starts the new OS: verified, v2 on trial.
    assert_eq!(status.state, "in-progress", "{status:?}");
    assert_eq!(status.bootloader_version, 3);
    let (to_device, to_gateway, chunks) = s.proxy.carried.snapshot();
    let package_chunks = (s.fw.demo_os.len() as u64).div_ceil(4096);
    assert_eq!(chunks, package_chunks, "every chunk once");
    assert!(to_device > s.fw.demo_os.len() as u64 && to_gateway > 0);
    // It boots v2 and confirmed it: what runs after a power cycle, per a verified receipt.
    let r = s.running();
    assert_eq!(r.state, DeviceState::OsRunning { version: 2 });
    assert_eq!((r.outcome, r.floor), (Outcome::Updated, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_mid_download_resumes_from_the_next_chunk() {
    let mut s = NetSetup::new(None).await;
    s.publish(2, vec![s.tb.uid.0.to_vec()]).await;
    let total = (s.fw.demo_os.len() as u64).div_ceil(4096);
    s.power_on();
    // Cut the power once a third of the chunks went by.
    let deadline = Instant::now() + FETCH_DEADLINE;
    while s.proxy.carried.snapshot().2 < total / 3 {
        assert!(Instant::now() < deadline, "the download did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.tb.board.power_cut().unwrap();
    let first = s.proxy.carried.snapshot().2;
    assert!(first < total, "cut after {first} of {total} chunks");
    s.tb.board.power_on_again().unwrap();
    s.tb.board.resume().unwrap();
    s.wait_for_status("OS v2 installed after the cut", installed(2))
        .await;
    let second = s.proxy.carried.snapshot().2 - first;
    // The staging slot kept the chunks marked done: the second connection sends the rest (the
    // chunk in flight at the cut again, at most).
    assert!(
        second < total && second + first <= total + 2,
        "{second} chunks after the cut, {first} before, {total} in all"
    );
    let r = s.running();
    assert_eq!(r.state, DeviceState::OsRunning { version: 2 });
}

/// Asks the running OS to hand over to its bootloader (the "asked to update" path).
fn enter_update_mode(tb: &TestBoard) {
    let port = format!("tcp:{}", tb.board.serial_addr().unwrap());
    let mut uart = Uart::open(&port).unwrap();
    uart.send(&Request::EnterUpdate).unwrap();
    uart.expect(MsgType::UpdateMode, T).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_foreign_packages_are_refused_and_the_old_os_stays() {
    let mut s = NetSetup::new(Some(1)).await;
    // Another registered device (simulated) with its own package of the same release.
    let other = [0xAB; 16];
    s.tc.register_device(PRODUCT_ID, &other, &test_device_key(&other))
        .await
        .unwrap();
    s.publish(2, vec![s.tb.uid.0.to_vec(), other.to_vec()])
        .await;

    // A byte flipped in chunk 3 on its way to the device (checksum recomputed).
    s.proxy.set_rewrite(Box::new(|request| match request {
        Request::UpdateChunk { index: 3, sealed } => {
            let mut sealed = sealed.to_vec();
            sealed[100] ^= 1;
            frame_to_vec(&Request::UpdateChunk {
                index: 3,
                sealed: &sealed,
            })
            .ok()
        }
        _ => None,
    }));
    s.power_on();
    enter_update_mode(&s.tb);
    let refused = s
        .wait_for_status("the tampered chunk refused", |st| st.state == "refused")
        .await;
    assert!(
        refused.detail.contains(&ErrorCode::BadTag.to_string()),
        "{refused:?}"
    );
    assert_eq!(s.running().state, DeviceState::OsRunning { version: 1 });

    // The other device's package, delivered to this one.
    let other_package = s
        .update_client()
        .await
        .get_update_package(s.tc.operator_request(v1::GetUpdatePackageRequest {
            product_id: PRODUCT_ID,
            serial: other.to_vec(),
        }))
        .await
        .unwrap()
        .into_inner();
    s.proxy.set_rewrite(Box::new(move |request| match request {
        Request::UpdateBegin { .. } => frame_to_vec(&Request::UpdateBegin {
            envelope: &other_package.envelope,
        })
        .ok(),
        _ => None,
    }));
    s.tb.board.power_off().unwrap();
    s.power_on();
    enter_update_mode(&s.tb);
    s.wait_for_status("the foreign package refused", |st| {
            st.state == "refused" && st.detail.contains(&ErrorCode::WrongSerial.to_string())
        })
        .await;
    let r = s.running();
    assert_eq!(r.state, DeviceState::OsRunning { version: 1 });
    assert_eq!(r.outcome, Outcome::None);
}
