//! What every test of the `flashgate` binary needs: the binary run as a process with its own
//! config directory ([`Flashgate`]) and a real coordinator on loopback set up through its public
//! interfaces — the CLI for operator steps, signed gRPC for station steps ([`World`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use flashgate_coordinator::ids::StationId;
use flashgate_coordinator::provisioning::{StationRecord, StationState};
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_proto::station_auth::{methods, StationSigner};
use flashgate_proto::v1::{self, station_service_client::StationServiceClient};
use flashgate_protocol::image::{sign_image, ImageKind};
use rand_core::OsRng;
use serde_json::Value;

/// Never reachable: nothing listens on port 1.
pub const DEAD: &str = "https://127.0.0.1:1";

/// The product every [`World`] makes.
pub const PRODUCT: u32 = 7;

/// The CA of this test process's coordinator (nextest runs each test in its own process):
/// every run trusts it through `FLASHGATE_CA_FILE` unless `envs` say otherwise.
static CA_FILE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

fn trust(tc: &TestCoordinator) {
    *CA_FILE.lock().unwrap() = Some(tc.ca_file.clone());
}

/// Runs `flashgate ARGS` with only `envs` set among the flashgate variables and the config
/// under `config_home`.
pub fn flashgate(config_home: &Path, envs: &[(String, String)], args: &[String]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flashgate"));
    for var in [
        "FLASHGATE_ENDPOINT",
        "FLASHGATE_TOKEN",
        "FLASHGATE_CONTEXT",
        "FLASHGATE_CONFIG",
        "FLASHGATE_TOKEN_FILE",
        "FLASHGATE_CA_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("XDG_CONFIG_HOME", config_home);
    if let Some(ca) = CA_FILE.lock().unwrap().as_ref() {
        cmd.env("FLASHGATE_CA_FILE", ca);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.args(args).output().expect("the flashgate binary runs")
}

pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn json(output: &Output) -> Value {
    assert_eq!(code(output), 0, "stderr: {}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// The binary, pointed at one coordinator trusting its CA, with the operator token in a file
/// (as flags), with a config directory of its own.
pub struct Flashgate {
    base: Vec<String>,
    home: tempfile::TempDir,
}

impl Flashgate {
    pub fn new(endpoint: &str, ca_file: &Path, token: &str) -> Self {
        let home = tempfile::tempdir().unwrap();
        let token_file = home.path().join("operator.token");
        std::fs::write(&token_file, token).unwrap();
        Self {
            base: vec![
                "--endpoint".into(),
                endpoint.into(),
                "--ca-file".into(),
                ca_file.display().to_string(),
                "--token-file".into(),
                token_file.display().to_string(),
            ],
            home,
        }
    }

    /// Where this runner's files (and its config) live.
    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    /// `flashgate --endpoint … --token … ARGS`.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut all = self.base.clone();
        all.extend(args.iter().map(|a| a.to_string()));
        self.run_raw(all).await
    }

    /// `flashgate ARGS` with no endpoint or token given.
    pub async fn run_raw(&self, args: Vec<String>) -> Output {
        let home = self.home.path().to_owned();
        tokio::task::spawn_blocking(move || flashgate(&home, &[], &args))
            .await
            .unwrap()
    }

    /// `flashgate --endpoint … --ca-file … ARGS` with no token at all.
    pub async fn run_anonymous(&self, args: &[&str]) -> Output {
        let mut all = self.base[..4].to_vec();
        all.extend(args.iter().map(|a| a.to_string()));
        self.run_raw(all).await
    }

    /// Runs `ARGS -o json`; it must succeed with one JSON document on stdout.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        json(&self.run(&args).await)
    }

    /// Runs `ARGS` (table output); it must succeed. Returns stdout.
    pub async fn table(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// Runs `ARGS`; it must exit with `expected`, a message on stderr and nothing on stdout.
    /// Returns stderr.
    pub async fn fails(&self, args: &[&str], expected: i32) -> String {
        let out = self.run(args).await;
        assert_eq!(code(&out), expected, "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
        let message = stderr(&out);
        assert!(
            message.starts_with("flashgate: ") || message.starts_with("error: "),
            "{message}"
        );
        message
    }

    /// Writes `contents` to a file of this runner's directory.
    pub fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

/// The header of a table (its cells joined by ", ") and its rows, split into cells.
pub fn table_rows(table: &str) -> (String, Vec<Vec<String>>) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    // Columns are two spaces apart; a header cell itself may hold one space ("VENDOR KEY").
    let split = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    (split(header).join(", "), lines.map(split).collect())
}

/// A station's report that `serial` was provisioned now under `lease`, its factory test passed.
pub fn provisioned(lease: &str, serial: [u8; 16]) -> v1::ReportInstallRequest {
    v1::ReportInstallRequest {
        lease_id: lease.into(),
        serial: serial.to_vec(),
        bootloader_version: 1,
        test_result: Some(v1::TestResult {
            outcome: v1::TestOutcome::Pass as i32,
            log: "all checks pass".into(),
        }),
        outcome: v1::InstallOutcome::Provisioned as i32,
        installed_at_ms: flashgate_proto::clock::now_ms(),
        ..Default::default()
    }
}

/// A station's request for the certificate of `serial` under `lease` (a fresh loader key).
pub fn certificate_request(lease: &str, serial: [u8; 16]) -> v1::IssueDeviceCertificateRequest {
    let loader = x25519_dalek::StaticSecret::random_from_rng(OsRng);
    v1::IssueDeviceCertificateRequest {
        lease_id: lease.into(),
        serial: serial.to_vec(),
        loader_public_key: x25519_dalek::PublicKey::from(&loader).to_bytes().to_vec(),
    }
}

/// A real coordinator on loopback and the steps that put things in it, each done the way the
/// product does it: the CLI for the operator, signed gRPC for a station.
pub struct World {
    pub tc: TestCoordinator,
    pub cli: Flashgate,
    pub vendor: SigningKey,
    /// The product's authority key, once [`World::product`] made it.
    pub authority: std::sync::Mutex<Option<[u8; 32]>>,
}

impl World {
    /// A fresh coordinator (embedded store) and a runner pointed at it.
    pub async fn start() -> Self {
        let tc = TestCoordinator::start_embedded().await.unwrap();
        trust(&tc);
        let cli = Flashgate::new(&tc.endpoint, &tc.ca_file, &tc.operator_token);
        Self {
            tc,
            cli,
            vendor: SigningKey::generate(&mut OsRng),
            authority: std::sync::Mutex::new(None),
        }
    }

    pub fn vendor_key_hex(&self) -> String {
        hex::encode(self.vendor.verifying_key().to_bytes())
    }

    /// `product create` for [`PRODUCT`] with this world's vendor key.
    pub async fn product(&self) -> Value {
        let key = self.vendor_key_hex();
        let id = PRODUCT.to_string();
        let product = self
            .cli
            .json(&[
                "product",
                "create",
                "--id",
                &id,
                "--name",
                "board",
                "--vendor-key",
                &key,
            ])
            .await;
        let authority = hex::decode(product["authority_public_key"].as_str().unwrap()).unwrap();
        *self.authority.lock().unwrap() = Some(authority.try_into().unwrap());
        product
    }

    /// An image of `kind` signed by this world's vendor, written to a file.
    pub fn image(&self, kind: ImageKind, version: u32) -> PathBuf {
        let body = format!("{kind:?} body, version {version}");
        let body = match (kind, *self.authority.lock().unwrap()) {
            (ImageKind::Bootloader | ImageKind::Os, Some(authority_public)) => {
                flashgate_protocol::trust_anchors::pinning(
                    body.as_bytes(),
                    &flashgate_protocol::trust_anchors::TrustAnchors {
                        vendor_public: self.vendor.verifying_key().to_bytes(),
                        authority_public,
                    },
                )
            }
            _ => body.into_bytes(),
        };
        let image = sign_image(kind, PRODUCT, version, 0, &body, &self.vendor);
        self.cli.file(&format!("{kind:?}-{version}.img"), image)
    }

    /// `release upload` of a fresh image; returns the release (JSON).
    pub async fn release(&self, kind: ImageKind, version: u32) -> Value {
        let file = self.image(kind, version);
        self.cli
            .json(&["release", "upload", file.to_str().unwrap()])
            .await
    }

    /// A station enrolled over gRPC (signed with its own key), still pending.
    pub async fn enrol_station(&self, name: &str) -> StationSigner {
        let key = SigningKey::generate(&mut OsRng);
        let request = v1::EnrolRequest {
            ed25519_public_key: key.verifying_key().to_bytes().to_vec(),
            x25519_public_key: [9u8; 32].to_vec(),
            name: name.into(),
            factory: "factory-1".into(),
            ..Default::default()
        };
        let station = StationSigner::new(key);
        self.stations(&station)
            .await
            .enrol(station.sign(methods::ENROL, request))
            .await
            .unwrap();
        station
    }

    /// A station-service client connected as `station` (mutual TLS with its identity).
    pub async fn stations(
        &self,
        station: &StationSigner,
    ) -> StationServiceClient<tonic::transport::Channel> {
        let security = station.security(&self.tc.security()).unwrap();
        let channel = flashgate_proto::transport::endpoint(&self.tc.endpoint, &security)
            .unwrap()
            .connect()
            .await
            .unwrap();
        StationServiceClient::new(channel)
    }

    /// Product, bootloader release, an approved station and an order of `count` for it.
    /// Returns the station and the order id.
    pub async fn order(&self, count: u64) -> (StationSigner, String) {
        self.product().await;
        let bootloader = self.release(ImageKind::Bootloader, 1).await;
        let station = self.enrol_station("line 1").await;
        self.cli
            .json(&["station", "approve", station.station_id()])
            .await;
        let order = self
            .cli
            .json(&[
                "order",
                "create",
                "--product",
                &PRODUCT.to_string(),
                "--bootloader",
                bootloader["digest"].as_str().unwrap(),
                "--station",
                station.station_id(),
                "--count",
                &count.to_string(),
                "--id",
                "order-1",
            ])
            .await;
        (station, order["order_id"].as_str().unwrap().to_owned())
    }

    /// The station takes a lease of `count` slots of `order` (signed gRPC).
    pub async fn acquire(&self, station: &StationSigner, order: &str, count: u32) {
        let request = v1::AcquireLeaseRequest {
            order_id: order.into(),
            count,
            ..Default::default()
        };
        self.stations(station)
            .await
            .acquire_lease(station.sign(methods::ACQUIRE_LEASE, request))
            .await
            .unwrap();
    }

    /// The station has `serial` certified, then reports it provisioned (test passed) under
    /// `lease` (signed gRPC; no hello proof, so the device stays CERTIFIED).
    pub async fn install(&self, station: &StationSigner, lease: &str, serial: [u8; 16]) {
        let mut stations = self.stations(station).await;
        stations
            .issue_device_certificate(station.sign(
                methods::ISSUE_DEVICE_CERTIFICATE,
                certificate_request(lease, serial),
            ))
            .await
            .unwrap();
        let request = provisioned(lease, serial);
        stations
            .report_install(station.sign(methods::REPORT_INSTALL, request))
            .await
            .unwrap();
    }

    /// An order with one lease of 2 slots and `serials` provisioned under it. Returns the order
    /// and the lease ids.
    pub async fn fleet(&self, serials: &[[u8; 16]]) -> (String, String) {
        let (station, order) = self.order(5).await;
        self.acquire(&station, &order, 2).await;
        let leases = self.cli.json(&["leases", "list", "--order", &order]).await;
        let lease = leases[0]["lease_id"].as_str().unwrap().to_owned();
        for serial in serials {
            self.install(&station, &lease, *serial).await;
        }
        (order, lease)
    }
}

/// A coordinator with an order, a lease, one provisioned and one failed install, made through
/// the coordinator's own API (the first tests of the binary).
pub struct Env {
    pub tc: TestCoordinator,
    pub order: v1::Order,
    pub serial: [u8; 16],
    pub home: tempfile::TempDir,
}

impl Env {
    pub async fn start() -> Self {
        let tc = TestCoordinator::start_embedded().await.unwrap();
        trust(&tc);
        let vendor = SigningKey::generate(&mut OsRng);
        let station = StationRecord {
            station_id: StationId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            ed25519_public_key: [1u8; 32],
            x25519_public_key: [9u8; 32],
            name: "cli test".into(),
            factory: "f1".into(),
            state: StationState::Approved,
            enrolled_at_ms: 1,
            approved_at_ms: 1,
        };
        let order = tc
            .create_demo_order(7, &vendor, vec![station.station_id.to_string()], 5)
            .await
            .unwrap();
        let lease = tc
            .coordinator
            .provisioning()
            .leases
            .acquire(
                tc.station_call(&station).await.unwrap(),
                &v1::AcquireLeaseRequest {
                    order_id: order.order_id.clone(),
                    count: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let body = flashgate_proto::lease::verify_signed_lease(
            &lease,
            &tc.coordinator.lease_verifying_key(),
        )
        .unwrap();
        let now = flashgate_proto::clock::now_ms();
        let serial = [0x5a; 16];
        tc.coordinator
            .provisioning()
            .certificates
            .issue(
                tc.station_call(&station).await.unwrap(),
                &certificate_request(&body.lease_id, serial),
            )
            .await
            .unwrap();
        tc.coordinator
            .provisioning()
            .reports
            .report_install(&station, &provisioned(&body.lease_id, serial))
            .await
            .unwrap();
        tc.coordinator
            .provisioning()
            .reports
            .report_install(
                &station,
                &v1::ReportInstallRequest {
                    lease_id: body.lease_id,
                    serial: [0x6b; 16].to_vec(),
                    outcome: v1::InstallOutcome::Failed as i32,
                    installed_at_ms: now,
                    failure_reason: "transfer failed: target lost".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        Self {
            tc,
            order,
            serial,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `flashgate ARGS` with only `envs` set among the flashgate variables and the config
    /// under this test's own XDG_CONFIG_HOME.
    pub async fn run(&self, envs: &[(&str, &str)], args: &[&str]) -> Output {
        let home = self.home.path().to_owned();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || flashgate(&home, &envs, &args))
            .await
            .unwrap()
    }

    pub fn token_file(&self, token: &str) -> String {
        let path = self.home.path().join(format!("token-{}", token.len()));
        std::fs::write(&path, format!("{token}\n")).unwrap();
        path.display().to_string()
    }
}
