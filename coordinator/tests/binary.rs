//! The real `flashgate-coordinator` binary, run as a process the way `docs/coordinator.md`
//! shows: help for every command, `gen-key`, `serve` on the embedded store and on a real etcd
//! (health, an operator call, leader election across replicas), and `rewrap`.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use flashgate_coordinator::keys::{read_hex_key_file, Kek, KekRing};
use flashgate_coordinator::store::embedded::EmbeddedStore;
use flashgate_coordinator::testing::operator_request;
use flashgate_coordinator::{Coordinator, CoordinatorConfig};
use flashgate_proto::lease::verify_signed_lease;
use flashgate_proto::v1::{self, operator_service_client::OperatorServiceClient};
use flashgate_protocol::codec::Codec;
use rand_core::OsRng;
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};

use crate::support::{
    channel, free_port, now_ms, product_with_bootloader, random_serial, EtcdProcess, SimStation,
};

const BIN: &str = env!("CARGO_BIN_EXE_flashgate-coordinator");
const TOKEN: &str = "binary-test-token";

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("FLASHGATE_KEK")
        .env_remove("FLASHGATE_STORE")
        .output()
        .expect("the coordinator binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Keys made with the binary's own `gen-key`, in a private directory.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn generate() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for name in ["kek", "signing"] {
            let out = run(&["gen-key", "--out", dir.path().join(name).to_str().unwrap()]);
            assert!(out.status.success(), "gen-key: {}", text(&out.stderr));
        }
        let tls = dir.path().join("tls");
        let out = run(&[
            "tls",
            "init",
            "--dir",
            tls.to_str().unwrap(),
            "--san",
            "127.0.0.1,localhost",
        ]);
        assert!(out.status.success(), "tls init: {}", text(&out.stderr));
        std::fs::write(dir.path().join("token"), TOKEN).unwrap();
        Self { dir }
    }

    fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.path("tls/ca.pem")).unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn kek(&self) -> PathBuf {
        self.path("kek")
    }

    fn signing(&self) -> PathBuf {
        self.path("signing")
    }

    fn store_args(&self, store: &str) -> Vec<String> {
        vec![
            "--store".into(),
            store.into(),
            "--kek-file".into(),
            self.kek().display().to_string(),
            "--signing-key-file".into(),
            self.signing().display().to_string(),
        ]
    }
}

/// A `serve` process on a loopback port, its output (log lines) kept in a file; killed on drop.
struct Served {
    child: Child,
    endpoint: String,
    ca_pem: String,
    log: PathBuf,
}

impl Served {
    fn start(keys: &Keys, store: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let log = keys.path(&format!("serve-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(keys.store_args(store))
            .args([
                "--operator-token-file",
                keys.path("token").to_str().unwrap(),
            ])
            .args(["--tls-cert", keys.path("tls/server.pem").to_str().unwrap()])
            .args(["--tls-key", keys.path("tls/server.key").to_str().unwrap()])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("FLASHGATE_KEK")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("serve starts");
        Self {
            child,
            endpoint: format!("https://127.0.0.1:{port}"),
            ca_pem: keys.ca_pem(),
            log,
        }
    }

    /// Waits until gRPC health says the operator service is serving.
    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let channel = channel(&self.endpoint, &self.ca_pem, None).await;
            if let Ok(channel) = channel {
                let mut health = HealthClient::new(channel);
                let answer = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: "flashgate.v1.OperatorService".into(),
                    })
                    .await;
                if let Ok(answer) = answer {
                    assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "serve did not come up: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn operator(&self) -> OperatorServiceClient<tonic::transport::Channel> {
        OperatorServiceClient::new(channel(&self.endpoint, &self.ca_pem, None).await.unwrap())
    }

    async fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ctrl-C: the documented way to stop it.
    fn interrupt(&mut self) -> ExitStatus {
        let status = Command::new("/usr/bin/kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }

    /// SIGKILL: a crash.
    fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.crash();
    }
}

fn assert_no_panic(served: &Served) {
    let log = served.log();
    assert!(!log.contains("panicked"), "serve panicked:\n{log}");
}

#[test]
fn every_command_has_help_and_none_panics() {
    let mut help = String::new();
    for args in [
        vec!["--help"],
        vec!["help"],
        vec!["serve", "--help"],
        vec!["gen-key", "--help"],
        vec!["rewrap", "--help"],
        vec!["help", "serve"],
        vec!["--version"],
    ] {
        let out = run(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(!stdout.is_empty(), "{args:?} printed nothing");
        help.push_str(&stdout);
    }
    for command in ["serve", "gen-key", "rewrap"] {
        assert!(help.contains(command), "top-level help lacks {command}");
    }
    // A usage error is an error with a message, not a panic.
    let out = run(&["serve", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--no-such-flag"));
    assert!(!text(&out.stderr).contains("panicked"));
}

/// The flags `docs/coordinator.md` tells operators to use (its "Run it" and rotation
/// sections) all exist.
#[test]
fn every_documented_flag_exists() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/coordinator.md"),
    )
    .unwrap();
    let mut documented = BTreeSet::new();
    for section in doc.split("\n## ") {
        let title = section.lines().next().unwrap_or_default();
        if !(title.starts_with("Run it") || title.starts_with("Keys at rest")) {
            continue;
        }
        for (i, _) in section.match_indices("--") {
            let flag: String = section[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect();
            if !flag.is_empty() {
                documented.insert(flag);
            }
        }
    }
    assert!(
        documented.len() >= 8,
        "found too few flags in the doc: {documented:?}"
    );
    let help: String = [
        vec!["serve"],
        vec!["gen-key"],
        vec!["rewrap"],
        vec!["tls", "init"],
    ]
    .iter()
    .map(|c| text(&run(&[c.as_slice(), &["--help"]].concat()).stdout))
    .collect();
    for flag in &documented {
        assert!(
            help.contains(&format!("--{flag}")),
            "docs/coordinator.md documents --{flag}, which no command has"
        );
    }
}

#[test]
fn gen_key_writes_a_private_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek.hex");
    let out = run(&["gen-key", "--out", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = std::fs::read_to_string(&path).unwrap();
    assert_eq!(key.trim().len(), 64);
    assert!(hex::decode(key.trim()).is_ok());
    assert!(
        !text(&out.stdout).contains(key.trim()),
        "the key is printed"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second run refuses to overwrite it.
    let again = run(&["gen-key", "--out", path.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("must not exist"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key);
}

#[test]
fn serve_without_a_kek_says_how_to_make_one() {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--store", &format!("embedded:{}", dir.path().display())])
        .arg("--signing-key-file")
        .arg(keys.signing())
        .arg("--insecure-plaintext")
        .env_remove("FLASHGATE_KEK")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("gen-key"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Creates a product, checks it is listed, and checks the token is required.
async fn operator_round_trip(served: &Served, product_id: u32) {
    let mut op = served.operator().await;
    let vendor = SigningKey::generate(&mut OsRng);
    op.create_product(operator_request(
        TOKEN,
        v1::CreateProductRequest {
            product_id,
            name: "binary test".into(),
            vendor_public_key: vendor.verifying_key().to_bytes().to_vec(),
        },
    ))
    .await
    .unwrap();
    let products = op
        .list_products(operator_request(TOKEN, v1::ListProductsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .products;
    assert!(products.iter().any(|p| p.product_id == product_id));
    let refused = op
        .list_products(operator_request("wrong", v1::ListProductsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_the_embedded_store_answers_health_and_operators() {
    let keys = Keys::generate();
    let data = tempfile::tempdir().unwrap();
    let store = format!("embedded:{}", data.path().display());
    let mut served = Served::start(&keys, &store, &[]);
    served.wait_healthy().await;
    operator_round_trip(&served, 3).await;
    assert!(served.interrupt().success(), "{}", served.log());
    assert_no_panic(&served);
    // What it stored is there after a restart.
    let mut again = Served::start(&keys, &store, &[]);
    again.wait_healthy().await;
    let products = again
        .operator()
        .await
        .list_products(operator_request(TOKEN, v1::ListProductsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(products.len(), 1);
    assert!(again.interrupt().success());
    assert_no_panic(&again);
}

/// The node id etcd's election names as leader of `/{namespace}/leader`.
async fn etcd_leader(url: &str, namespace: &str) -> Option<String> {
    let mut client = etcd_client::Client::connect([url], None).await.ok()?;
    let answer = client.leader(format!("{namespace}leader")).await.ok()?;
    Some(answer.kv()?.value_str().ok()?.to_owned())
}

async fn wait_for_leader(url: &str, namespace: &str, not: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = etcd_leader(url, namespace).await {
            if Some(leader.as_str()) != not {
                return leader;
            }
        }
        assert!(Instant::now() < deadline, "no new leader was elected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn replicas(keys: &Keys, etcd: &EtcdProcess, namespace: &str, sweep: &str) -> Vec<Served> {
    ["r1", "r2"]
        .iter()
        .map(|node| {
            Served::start(
                keys,
                &format!("etcd:{}", etcd.url),
                &[
                    "--etcd-namespace",
                    namespace,
                    "--node-id",
                    node,
                    "--sweep-secs",
                    sweep,
                ],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_etcd_elects_one_leader_and_another_after_a_crash() {
    let etcd = EtcdProcess::start();
    etcd.store("/bin-crash/").await;
    let keys = Keys::generate();
    let mut served = replicas(&keys, &etcd, "/bin-crash/", "1");
    for s in &served {
        s.wait_healthy().await;
    }
    operator_round_trip(&served[0], 4).await;
    let leader = wait_for_leader(&etcd.url, "/bin-crash/", None).await;
    let index = usize::from(leader == "r2");
    served[index].wait_for_log("leading housekeeping").await;
    assert!(!served[1 - index].log().contains("leading housekeeping"));
    // The leader dies without resigning: its etcd lease (3 sweep intervals) runs out and the
    // other replica is elected.
    served[index].crash();
    let next = wait_for_leader(&etcd.url, "/bin-crash/", Some(&leader)).await;
    assert_ne!(next, leader);
    served[1 - index].wait_for_log("leading housekeeping").await;
    assert!(served[1 - index].interrupt().success());
    for s in &served {
        assert_no_panic(s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_hands_over_at_once() {
    let etcd = EtcdProcess::start();
    etcd.store("/bin-stop/").await;
    let keys = Keys::generate();
    // Sweeps every 20 s: a leadership lease of 60 s, so a takeover within 20 s can only come
    // from the stopped leader resigning.
    let mut served = replicas(&keys, &etcd, "/bin-stop/", "20");
    for s in &served {
        s.wait_healthy().await;
    }
    let leader = wait_for_leader(&etcd.url, "/bin-stop/", None).await;
    let index = usize::from(leader == "r2");
    let stopped = Instant::now();
    assert!(served[index].interrupt().success());
    let next = wait_for_leader(&etcd.url, "/bin-stop/", Some(&leader)).await;
    assert_ne!(next, leader);
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "the new leader waited for the old lease to expire"
    );
    for s in &served {
        assert_no_panic(s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_reseals_every_secret_under_the_new_kek() {
    let keys = Keys::generate();
    let data = tempfile::tempdir().unwrap();
    let store = format!("embedded:{}", data.path().display());

    // Under the old KEK: a registered device and its lease.
    let mut served = Served::start(&keys, &store, &[]);
    served.wait_healthy().await;
    let mut op = served.operator().await;
    let (_vendor, release) = product_with_bootloader(&mut op, TOKEN, 7).await;
    let mut station = SimStation::connect(&served.endpoint, &served.ca_pem).await;
    station.enrol().await.unwrap();
    op.approve_station(operator_request(
        TOKEN,
        v1::ApproveStationRequest {
            station_id: station.id(),
        },
    ))
    .await
    .unwrap();
    let order = op
        .create_order(operator_request(
            TOKEN,
            v1::CreateOrderRequest {
                product_id: 7,
                bootloader_digest: release.digest,
                station_ids: vec![station.id()],
                count: 5,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let signed = station.acquire(&order.order_id, 2, 0).await.unwrap();
    let signing = read_hex_key_file(&keys.signing(), "signing key").unwrap();
    let lease =
        verify_signed_lease(&signed, &SigningKey::from_bytes(&signing).verifying_key()).unwrap();
    let serial = random_serial();
    let loader = x25519_dalek::StaticSecret::random_from_rng(OsRng);
    let issued = station
        .certify_to(&lease.lease_id, serial, &loader)
        .await
        .unwrap();
    station
        .report_only(&lease.lease_id, serial, now_ms())
        .await
        .unwrap();
    let device_key = flashgate_protocol::device_key_transport::open(
        &loader,
        &serial,
        &flashgate_protocol::certificate::DeviceCertificate::read_bytes(&issued.certificate)
            .unwrap(),
        &issued.sealed_device_key.as_slice().try_into().unwrap(),
    )
    .unwrap();
    assert!(served.interrupt().success());

    // Rotation: new KEK current, old one previous; twice (the second finds nothing to do).
    let new_kek = keys.path("kek-new");
    assert!(run(&["gen-key", "--out", new_kek.to_str().unwrap()])
        .status
        .success());
    let rewrap = |previous: bool| {
        let mut args = vec![
            "rewrap".to_owned(),
            "--store".into(),
            store.clone(),
            "--kek-file".into(),
            new_kek.display().to_string(),
            "--signing-key-file".into(),
            keys.signing().display().to_string(),
        ];
        if previous {
            args.push("--previous-kek-file".into());
            args.push(keys.kek().display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    };
    let first = rewrap(true);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stdout).contains("re-sealed 1 authority keys, 1 device keys"),
        "{}",
        text(&first.stdout)
    );
    let second = rewrap(true);
    assert!(
        text(&second.stdout).contains("re-sealed 0 authority keys, 0 device keys"),
        "{}",
        text(&second.stdout)
    );

    // The new KEK alone opens the device key; the old one alone no longer does.
    let open_with = |kek: &Path| {
        let kek = KekRing::new(Kek::new(read_hex_key_file(kek, "KEK").unwrap()), vec![]);
        Coordinator::new(
            Arc::new(EmbeddedStore::open(data.path()).unwrap()),
            kek,
            SigningKey::from_bytes(&signing),
            "",
            CoordinatorConfig::default(),
        )
    };
    let rotated = open_with(&new_kek);
    let recovered = rotated
        .provisioning()
        .registry
        .device_key(7, &serial)
        .await
        .unwrap();
    assert_eq!(*recovered, *device_key);
    drop(rotated);
    let old = open_with(&keys.kek());
    let refused = old
        .provisioning()
        .registry
        .device_key(7, &serial)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("not loaded"), "{refused}");
}

/// `serve --data-tcp ADDR --device-gateway-listen ADDR` (the flags docs/operations.md shows for
/// data and updates without a host): both ports listen, and the down-link's message service
/// answers over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_the_data_port_and_the_gateway_serves_the_message_service() {
    use flashgate_proto::v1::device_message_service_client::DeviceMessageServiceClient;

    let keys = Keys::generate();
    let data = tempfile::tempdir().unwrap();
    let store = format!("embedded:{}", data.path().display());
    let (data_port, gateway_port) = (free_port(), free_port());
    let data_addr = format!("127.0.0.1:{data_port}");
    let gateway_addr = format!("127.0.0.1:{gateway_port}");
    let mut served = Served::start(
        &keys,
        &store,
        &[
            "--data-tcp",
            &data_addr,
            "--device-gateway-listen",
            &gateway_addr,
        ],
    );
    served.wait_healthy().await;
    served.wait_for_log("data TCP ingest listening").await;
    served.wait_for_log("serving the device gateway").await;
    std::net::TcpStream::connect(&data_addr).expect("the data port accepts devices");
    let mut messages = DeviceMessageServiceClient::new(
        channel(&served.endpoint, &served.ca_pem, None)
            .await
            .unwrap(),
    );
    let listed = messages
        .list_device_messages(operator_request(
            TOKEN,
            v1::ListDeviceMessagesRequest {
                serial: random_serial().to_vec(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.messages.is_empty());
    let unknown = messages
        .send_device_message(operator_request(
            TOKEN,
            v1::SendDeviceMessageRequest {
                serial: random_serial().to_vec(),
                kind: v1::DownMessageKind::Text as i32,
                text: "hello".into(),
                interval_s: 0,
            },
        ))
        .await
        .expect_err("no such device");
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    assert!(served.interrupt().success(), "{}", served.log());
    assert_no_panic(&served);
}
