//! A whole factory on loopback for the station's end-to-end tests: a coordinator (embedded store
//! or a real etcd), a product with the real firmware's bootloader signed by a test vendor, an
//! order for one approved station, and a switchable TCP proxy in front of the coordinator to
//! model network outages.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use flashgate_coordinator::keys::Kek;
use flashgate_coordinator::store::etcd::EtcdStore;
use flashgate_coordinator::store::KvStore;
use flashgate_coordinator::testing::{test_config, TestCoordinator};
use flashgate_proto::v1;
use flashgate_station::events::{EventFormat, EventSink};
use flashgate_station::identity::{StationIdentity, StationKek};
use flashgate_station::probe::{LinkTap, TrafficRecorder};
use flashgate_station::station::StationOptions;
use zeroize::Zeroizing;

use crate::{firmware_dir, station_binary, Firmware, Vendor};

/// The etcd binary of the Debian package.
pub const ETCD: &str = "/usr/bin/etcd";

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// An etcd server in a temporary directory, killed on drop.
pub struct EtcdProcess {
    child: Child,
    /// Client URL.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl EtcdProcess {
    /// Starts etcd on free ports.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = Command::new(ETCD)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts (apt-get install etcd-server)");
        Self {
            child,
            url,
            _dir: dir,
        }
    }

    /// Waits until etcd answers; a store under `namespace`.
    pub async fn store(&self, namespace: &str) -> EtcdStore {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(store) = EtcdStore::connect(std::slice::from_ref(&self.url), namespace).await
            {
                if store.get("probe").await.is_ok() {
                    return store;
                }
            }
            assert!(Instant::now() < deadline, "etcd did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy that can be switched off (connections refused, open ones cut): a network outage
/// between station and coordinator. It records everything it relays (`sent`: station →
/// coordinator), the factory network's view.
pub struct FlakyProxy {
    /// Where stations connect.
    pub addr: SocketAddr,
    /// Every byte relayed.
    pub recorder: TrafficRecorder,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl FlakyProxy {
    /// Forwards to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let recorder = TrafficRecorder::new();
        let (up2, open2, rec) = (up.clone(), open.clone(), recorder.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut open = open2.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    rec.clone(),
                    true,
                );
                pipe(server, client, rec.clone(), false);
            }
        });
        Self {
            addr,
            recorder,
            up,
            open,
        }
    }

    /// `https://` endpoint of the proxy (TLS passes through it end to end).
    pub fn endpoint(&self) -> String {
        self.endpoint_with("https")
    }

    /// The proxy's endpoint under `scheme` (`http` for a plain-text coordinator).
    pub fn endpoint_with(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// Cuts every connection and refuses new ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, recorder: TrafficRecorder, from_station: bool) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if from_station {
                recorder.sent(&buf[..n]);
            } else {
                recorder.received(&buf[..n]);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// Product id used by the factory harness.
pub const PRODUCT_ID: u32 = 7;
/// Bootloader version the harness releases.
pub const BOOTLOADER_VERSION: u32 = 3;

/// A coordinator with an order for one approved station, and that station's state.
pub struct Factory {
    /// Runs the coordinator.
    pub rt: tokio::runtime::Runtime,
    /// The coordinator.
    pub coordinator: TestCoordinator,
    /// Between the station and the coordinator.
    pub proxy: FlakyProxy,
    /// The vendor.
    pub vendor: Vendor,
    /// The order.
    pub order: v1::Order,
    /// The OS release the order's boards leave with (signed image), if any.
    pub os: Option<Vec<u8>>,
    /// The station's id.
    pub station_id: String,
    /// The station's state directory.
    pub state_dir: tempfile::TempDir,
    kek_hex: Zeroizing<String>,
    _etcd: Option<EtcdProcess>,
}

impl Factory {
    /// Coordinator on the embedded store, order of `count`.
    pub fn embedded(count: u64) -> Self {
        let rt = runtime();
        let coordinator = rt
            .block_on(TestCoordinator::start_embedded())
            .expect("coordinator starts");
        Self::with(rt, coordinator, count, None, None)
    }

    /// Coordinator on the embedded store served in plain text (`--insecure-plaintext`), order of
    /// `count`: only to measure what TLS costs the line.
    pub fn embedded_insecure_plaintext(count: u64) -> Self {
        let rt = runtime();
        let coordinator = rt
            .block_on(TestCoordinator::start_insecure_plaintext())
            .expect("coordinator starts");
        Self::with(rt, coordinator, count, None, None)
    }

    /// Coordinator on the embedded store, order of `count` whose boards leave with the demo OS
    /// signed as `os_version`.
    pub fn embedded_with_os(count: u64, os_version: u32) -> Self {
        let rt = runtime();
        let coordinator = rt
            .block_on(TestCoordinator::start_embedded())
            .expect("coordinator starts");
        Self::with(rt, coordinator, count, None, Some(os_version))
    }

    /// Coordinator on a real etcd, order of `count`.
    pub fn on_etcd(count: u64) -> Self {
        let rt = runtime();
        let etcd = EtcdProcess::start();
        let coordinator = rt.block_on(async {
            let store = etcd.store("station-e2e").await;
            TestCoordinator::start(
                Arc::new(store),
                test_config(),
                SigningKey::generate(&mut rand::rngs::OsRng),
                Kek::generate(),
            )
            .await
            .expect("coordinator on etcd starts")
        });
        Self::with(rt, coordinator, count, Some(etcd), None)
    }

    fn with(
        rt: tokio::runtime::Runtime,
        coordinator: TestCoordinator,
        count: u64,
        etcd: Option<EtcdProcess>,
        os_version: Option<u32>,
    ) -> Self {
        let fw = Firmware::load();
        let vendor = Vendor::new(PRODUCT_ID);
        let state_dir = tempfile::tempdir().unwrap();
        let kek = StationKek::generate();
        let kek_file = state_dir.path().join("kek.hex");
        kek.write_to(&kek_file).unwrap();
        let kek_hex = Zeroizing::new(std::fs::read_to_string(&kek_file).unwrap());
        std::fs::remove_file(&kek_file).unwrap();
        let identity = StationIdentity::load_or_create(state_dir.path(), &kek).unwrap();
        let station_id = identity.station_id();
        let proxy = FlakyProxy::start(coordinator.addr);
        let (order, os) = rt.block_on(async {
            let mut bundle = coordinator.enrolment_bundle("e2e station").await.unwrap();
            // The station pins the vendor key (mandatory), from its bundle as in production.
            bundle.vendor_public_keys = vec![hex::encode(vendor.public())];
            let enrolled = flashgate_station::enrolment::enrol_with_bundle(
                &identity,
                state_dir.path(),
                &bundle,
                None,
                "e2e station",
                "f1",
            )
            .await
            .expect("enrol with the bundle");
            assert_eq!(enrolled.state, v1::StationState::Approved as i32);
            let mut op = coordinator.operator_client().await.unwrap();
            let product = op
                .create_product(coordinator.operator_request(v1::CreateProductRequest {
                    product_id: PRODUCT_ID,
                    name: "e2e board".into(),
                    vendor_public_key: vendor.public().to_vec(),
                }))
                .await
                .expect("product")
                .into_inner();
            // The bootloader pins the vendor key and the coordinator's authority key for the
            // product, which certifies every chip the station makes.
            let anchors = flashgate_protocol::trust_anchors::TrustAnchors {
                vendor_public: vendor.public(),
                authority_public: product.authority_public_key.as_slice().try_into().unwrap(),
            };
            let image =
                vendor.sign_bootloader_pinning(&fw.bootloader, BOOTLOADER_VERSION, &anchors);
            let os = os_version.map(|v| vendor.sign_os_pinning(&fw.demo_os, v, &anchors));
            let release = op
                .upload_release(coordinator.operator_request(v1::UploadReleaseRequest { image }))
                .await
                .expect("release")
                .into_inner();
            let mut os_release_digest = Vec::new();
            if let Some(image) = &os {
                os_release_digest = op
                    .upload_release(coordinator.operator_request(v1::UploadReleaseRequest {
                        image: image.clone(),
                    }))
                    .await
                    .expect("OS release")
                    .into_inner()
                    .digest;
            }
            let order = op
                .create_order(coordinator.operator_request(v1::CreateOrderRequest {
                    product_id: PRODUCT_ID,
                    bootloader_digest: release.digest,
                    os_release_digest,
                    station_ids: vec![station_id.clone()],
                    factory: "f1".into(),
                    count,
                    ..Default::default()
                }))
                .await
                .expect("order")
                .into_inner();
            (order, os)
        });
        Self {
            rt,
            coordinator,
            proxy,
            vendor,
            order,
            os,
            station_id,
            state_dir,
            kek_hex,
            _etcd: etcd,
        }
    }

    /// Station options for `emulate` emulated targets, through the proxy, quiet.
    pub fn station_options(&self, emulate: usize) -> StationOptions {
        let scheme = if self.coordinator.ca_pem.is_empty() {
            "http"
        } else {
            "https"
        };
        let mut options = StationOptions::new(
            self.proxy.endpoint_with(scheme),
            self.state_dir.path(),
            StationKek::from_hex(&self.kek_hex).unwrap(),
            firmware_dir().join("loader.bin"),
        );
        options.emulate = emulate;
        options.order = Some(self.order.order_id.clone());
        options.events = EventSink::new(EventFormat::Quiet);
        options.retry_every = Duration::from_millis(200);
        options.report_deadline = Duration::from_secs(20);
        options.name = "e2e station".into();
        options.factory = "f1".into();
        options
    }

    /// The devices the order installed (their hello proof verified by the coordinator).
    pub fn registered(&self) -> Vec<v1::Device> {
        self.certified()
            .into_iter()
            .filter(|d| d.state == v1::DeviceState::Installed as i32)
            .collect()
    }

    /// Every device of the order with a certificate (installed or not): one slot each.
    pub fn certified(&self) -> Vec<v1::Device> {
        self.rt.block_on(async {
            let mut op = self.coordinator.operator_client().await.unwrap();
            op.list_devices(self.coordinator.operator_request(v1::ListDevicesRequest {
                order_id: self.order.order_id.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .devices
        })
    }

    /// The order's quota.
    pub fn order_status(&self) -> v1::OrderStatus {
        self.rt.block_on(async {
            let mut op = self.coordinator.operator_client().await.unwrap();
            op.get_order_status(
                self.coordinator
                    .operator_request(v1::GetOrderStatusRequest {
                        order_id: self.order.order_id.clone(),
                    }),
            )
            .await
            .unwrap()
            .into_inner()
        })
    }

    /// Every lease of the order.
    pub fn leases(&self) -> Vec<v1::LeaseInfo> {
        self.rt.block_on(async {
            let mut op = self.coordinator.operator_client().await.unwrap();
            op.list_leases(self.coordinator.operator_request(v1::ListLeasesRequest {
                order_id: self.order.order_id.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .leases
        })
    }

    /// Failed targets the coordinator recorded under the order.
    pub fn failures(&self) -> Vec<v1::InstallFailure> {
        self.rt
            .block_on(
                self.coordinator
                    .coordinator
                    .provisioning()
                    .registry
                    .list_failures(&self.order.order_id),
            )
            .expect("failures listed")
    }

    /// The coordinator's copy of a registered device's key.
    pub fn device_key(&self, serial: &[u8; 16]) -> Zeroizing<[u8; 32]> {
        self.rt
            .block_on(
                self.coordinator
                    .coordinator
                    .provisioning()
                    .registry
                    .device_key(PRODUCT_ID, serial),
            )
            .expect("device registered")
    }

    /// The station KEK as hex (for `FLASHGATE_STATION_KEK` of a station run as a process).
    pub fn station_kek_hex(&self) -> &str {
        self.kek_hex.trim()
    }

    /// The station's journal.
    pub fn journal_path(&self) -> PathBuf {
        self.state_dir
            .path()
            .join(flashgate_station::provisioning::journal::JOURNAL_FILE)
    }
}

impl Factory {
    /// `flashgate-station run` as its own process against this factory (through the proxy),
    /// with `emulate` emulated boards and `--json` events on a pipe; `extra` are more flags.
    pub fn spawn_station(&self, emulate: usize, extra: &[&str]) -> StationProcess {
        self.spawn_station_command(self.station_command(emulate, extra))
    }

    /// The command line [`Factory::spawn_station`] runs (to run it under a wrapper).
    pub fn station_command(&self, emulate: usize, extra: &[&str]) -> Command {
        let mut command = Command::new(station_binary());
        command
            .arg("run")
            .args(["--coordinator", &self.proxy.endpoint()])
            .arg("--state-dir")
            .arg(self.state_dir.path())
            .args(["--emulate", &emulate.to_string(), "--json"])
            .args(["--order", &self.order.order_id])
            .arg("--loader")
            .arg(firmware_dir().join("loader.bin"))
            .args(extra)
            .env("FLASHGATE_STATION_KEK", self.station_kek_hex())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("FLASHGATE_METRICS_LISTEN");
        command
    }

    /// Spawns `command` (a station, perhaps under a wrapper) with `--json` events on a pipe.
    pub fn spawn_station_command(&self, mut command: Command) -> StationProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the station starts");
        let events = BufReader::new(child.stdout.take().expect("piped stdout"));
        StationProcess {
            child,
            events,
            state_dir: self.state_dir.path().to_owned(),
        }
    }
}

/// A `flashgate-station run` process. Killed (and its boards with it) on drop.
pub struct StationProcess {
    child: Child,
    events: BufReader<ChildStdout>,
    state_dir: PathBuf,
}

impl StationProcess {
    /// Reads `--json` events until one satisfies `want` (returned), or the station exits.
    pub fn wait_for_event(
        &mut self,
        mut want: impl FnMut(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.events.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if want(&event) {
                return Some(event);
            }
        }
    }

    /// Waits for the station to exit by itself (at most `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the station did not finish in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A crash: SIGKILL, no chance to report or return anything. The emulated boards it had
    /// started (its child QEMUs, now orphaned) are killed too, as a power cut of the line.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_processes_using(&self.state_dir);
    }
}

impl Drop for StationProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Kills every QEMU whose command line names a path under `dir` (the boards there).
pub fn kill_processes_using(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if pid != std::process::id()
            && cmdline.starts_with("qemu-system")
            && cmdline.contains(&needle)
        {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
