//! A rig for updates the bootloader fetches over the network (`bootloader-net`): a
//! coordinator with its device gateway, a [`GatewayProxy`] in front of the gateway (what
//! crosses the network, and the network as an adversary), and a board provisioned with the
//! network bootloader whose only network is a guest forward from 10.0.2.100:7402 to the proxy.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flashgate_cli::device_update::Uart;
use flashgate_coordinator::device_gateway::GatewayOptions;
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_emulator::qmp::QmpConnection;
use flashgate_emulator::{EmulatedBoard, NetworkOptions, StartOptions, TcpForward};
use flashgate_proto::v1;
use flashgate_protocol::update::receipt;

use crate::gateway_proxy::GatewayProxy;
use crate::{firmware_dir, test_device_key, Firmware, TestBoard, Vendor};

const T: Duration = Duration::from_secs(30);
const PRODUCT_ID: u32 = 7;
/// `device-fw/bootloader/src/net.rs`: where the bootloader looks for its gateway.
pub const GATEWAY_GUEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 100), 7402);
/// `device-fw/demo-os/src/uplink.rs`: where the `net` demo OS sends its records and gets its
/// down messages.
pub const DATA_GUEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 101), 7403);
/// How long a fetch may take: long enough for a 70 KiB OS over the emulated network on a loaded machine.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(240);

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

/// Board options whose only network is the guest forwards to `gateway` and `data` (loopback
/// ports).
pub fn network_to(gateway: SocketAddr, data: SocketAddr) -> StartOptions {
    let (SocketAddr::V4(host), SocketAddr::V4(data)) = (gateway, data) else {
        panic!("the gateway and the data port listen on IPv4 loopback")
    };
    StartOptions {
        network: Some(NetworkOptions {
            tcp_forwards: vec![
                TcpForward {
                    guest: GATEWAY_GUEST,
                    host,
                },
                TcpForward {
                    guest: DATA_GUEST,
                    host: data,
                },
            ],
            frame_peer: None,
        }),
        ..StartOptions::default()
    }
}

/// A coordinator with its device gateway, a proxy in front of the gateway, and a board with
/// the network bootloader, provisioned and registered.
pub struct NetSetup {
    /// The coordinator (embedded store).
    pub tc: TestCoordinator,
    /// The vendor (the product's authority key).
    pub vendor: Vendor,
    /// The firmware.
    pub fw: Firmware,
    /// The board.
    pub tb: TestBoard,
    /// The proxy in front of the gateway.
    pub proxy: GatewayProxy,
    /// The coordinator's data TCP port (records up, messages down, the OS's receipts).
    pub data_addr: SocketAddr,
}

impl NetSetup {
    /// `os`: the OS installed offline after provisioning (`None`: the board has none). The
    /// board is powered off; [`NetSetup::power_on`] starts it on the network.
    pub async fn new(os: Option<u32>) -> Self {
        Self::new_with(os.map(|v| (None, v))).await
    }

    /// [`NetSetup::new`] with `os` = (its body, `None` for the demo OS; its version).
    pub async fn new_with(os: Option<(Option<Vec<u8>>, u32)>) -> Self {
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
        let data = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let data_addr = data.local_addr().unwrap();
        tokio::spawn(flashgate_coordinator::data_stream::serve_tcp_with_receipts(
            tc.data.clone(),
            Some(tc.coordinator.updates().clone()),
            data,
        ));

        let fw = Firmware::load();
        let bootloader = vendor.sign_bootloader(&bootloader_net(), 3);
        let plan = flashgate_station::provisioning::OrderPlan::new(
            fw.loader.clone(),
            bootloader,
            PRODUCT_ID,
        )
        .unwrap();
        let image = os.map(|(body, v)| vendor.sign_os(body.as_ref().unwrap_or(&fw.demo_os), v));
        let (mut tb, _) = tokio::task::block_in_place(|| {
            TestBoard::provisioned(
                plan,
                vendor.issuer(),
                StartOptions::default(),
                image.as_deref(),
            )
        });
        tb.board.power_off().unwrap();
        tc.register_device(
            PRODUCT_ID,
            &tb.uid.0,
            &test_device_key(PRODUCT_ID, &tb.uid.0),
        )
        .await
        .unwrap();
        Self {
            tc,
            vendor,
            fw,
            tb,
            proxy,
            data_addr,
        }
    }

    /// Starts the board (from its saved flash) with the guest forward to the proxy.
    pub fn power_on(&mut self) {
        self.power_on_with(StartOptions::default());
    }

    /// [`NetSetup::power_on`] with `options` (icount, a frame peer, …) besides the forward.
    pub fn power_on_with(&mut self, options: StartOptions) {
        let dir = self.tb.board.dir().to_path_buf();
        let mut net = network_to(self.proxy.addr, self.data_addr);
        if let (Some(net), Some(extra)) = (net.network.as_mut(), options.network.as_ref()) {
            net.frame_peer = extra.frame_peer;
        }
        let options = StartOptions {
            network: net.network,
            ..options
        };
        self.tb.board = EmulatedBoard::start(dir, options).unwrap();
        self.tb.board.resume().unwrap();
    }

    /// Uploads OS `version` (the demo OS) and publishes it to `serials`.
    pub async fn publish(&self, version: u32, serials: Vec<Vec<u8>>) {
        self.publish_body(&self.fw.demo_os.clone(), version, serials)
            .await;
    }

    /// Uploads `body` signed as OS `version` and publishes it to `serials`.
    pub async fn publish_body(&self, body: &[u8], version: u32, serials: Vec<Vec<u8>>) {
        let mut ops = self.tc.operator_client().await.unwrap();
        let release = ops
            .upload_release(self.tc.operator_request(v1::UploadReleaseRequest {
                image: self.vendor.sign_os(body, version),
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

    /// The update service, as the operator.
    pub async fn update_client(
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
        receipt::verify(
            &test_device_key(PRODUCT_ID, &self.tb.uid.0),
            &challenge,
            &raw,
        )
        .unwrap()
    }
}

/// SRAM of mps2-an386 ends here; the bootloader's and the OS's stack grow down from it.
const STACK_TOP: u32 = 0x2040_0000;
/// Bytes of stack below [`STACK_TOP`] painted and read back.
pub const PAINT_LEN: u32 = 64 * 1024;
const PAINT: u8 = 0xA5;

/// A stack high-water mark measured from outside, so the firmware carries no measuring code:
/// the stack painted before reset (QEMU's `loader` device) and read back over QMP.
pub struct PaintedStack {
    dir: PathBuf,
    paint: PathBuf,
}

impl PaintedStack {
    /// The paint file, written in `dir` (which the readings use too).
    pub fn new(dir: &Path) -> Self {
        let paint = dir.join("paint.bin");
        std::fs::write(&paint, vec![PAINT; PAINT_LEN as usize]).expect("write the paint file");
        Self {
            dir: dir.to_path_buf(),
            paint,
        }
    }

    /// QEMU arguments that paint the stack at reset.
    pub fn qemu_args(&self) -> Vec<OsString> {
        vec![
            "-device".into(),
            format!(
                "loader,file={},addr={:#x}",
                self.paint.display(),
                STACK_TOP - PAINT_LEN
            )
            .into(),
        ]
    }

    /// The deepest byte of the painted stack written so far on `s`'s board. The board is
    /// stopped first, so the stack is read as the firmware left it, not while it moves.
    pub fn high_water(&self, s: &NetSetup) -> u32 {
        let dump = self.dir.join("stack.bin");
        let qmp_addr = s.tb.board.qmp_addr().expect("the board has QMP");
        let mut qmp = QmpConnection::connect(qmp_addr, Duration::from_secs(30)).expect("QMP");
        qmp.execute("stop", None).expect("stop");
        qmp.execute(
            "pmemsave",
            Some(serde_json::json!({
                "val": STACK_TOP - PAINT_LEN,
                "size": PAINT_LEN,
                "filename": dump.to_string_lossy(),
            })),
        )
        .expect("pmemsave");
        let stack = std::fs::read(&dump).expect("read the stack dump");
        let untouched = stack.iter().take_while(|b| **b == PAINT).count() as u32;
        assert!(
            untouched > 0,
            "the stack went past the painted {PAINT_LEN} B"
        );
        PAINT_LEN - untouched
    }
}
