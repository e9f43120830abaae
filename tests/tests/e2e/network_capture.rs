//! Issue 11's headline: coordinator, CLI and station as separate processes (the real
//! binaries), a recording TCP proxy on the station↔coordinator link, one device provisioned
//! through it. The capture must hold no window of the bootloader, no device key, no station
//! secret and no enrolment token — raw, hex or base64 — while the same search finds needles
//! planted in a copy of it (the positive control). Afterwards the station's state directory
//! (the emulated board's own flash aside: that is the target) holds none of them either.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashgate_station::identity::{StationIdentity, StationKek};
use flashgate_tests::{firmware_dir, flashgate_binary, station_binary, Firmware, Vendor};

const PRODUCT: u32 = 7;

fn coordinator_binary() -> PathBuf {
    flashgate_binary().with_file_name("flashgate-coordinator")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Everything that crosses, both directions, in one buffer.
struct RecordingProxy {
    addr: SocketAddr,
    capture: Arc<Mutex<Vec<u8>>>,
}

impl RecordingProxy {
    fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let capture: Arc<Mutex<Vec<u8>>> = Arc::default();
        let c = capture.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                record(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    c.clone(),
                );
                record(server, client, c.clone());
            }
        });
        Self { addr, capture }
    }

    fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }
}

fn record(mut from: TcpStream, mut to: TcpStream, capture: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    capture.lock().unwrap().extend_from_slice(&buf[..n]);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The encodings a secret could travel in: raw, hex (both cases), and base64 at each of the
/// three alignments (the stable middle of each, so padding and neighbours do not matter).
fn encodings(needle: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![
        needle.to_vec(),
        hex::encode(needle).into_bytes(),
        hex::encode_upper(needle).into_bytes(),
    ];
    for skip in 0..3 {
        let b64 = base64(&needle[skip..]);
        let usable = (needle.len() - skip) / 3 * 4;
        if usable >= 8 {
            out.push(b64.as_bytes()[..usable].to_vec());
        }
    }
    out
}

fn carries(haystack: &[u8], needle: &[u8]) -> bool {
    encodings(needle)
        .iter()
        .any(|e| haystack.windows(e.len()).any(|w| w == e.as_slice()))
}

/// 16-byte windows of `body` that are not in the public loader and not constant.
fn secret_windows<'a>(body: &'a [u8], loader: &[u8]) -> Vec<&'a [u8]> {
    (0..body.len().saturating_sub(16))
        .step_by(64)
        .map(|s| &body[s..s + 16])
        .filter(|w| !w.iter().all(|b| *b == w[0]) && !loader.windows(16).any(|l| l == *w))
        .collect()
}

struct Coordinator {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Coordinator {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).display().to_string();
        for key in ["kek", "signing"] {
            ok(
                Command::new(coordinator_binary())
                    .args(["gen-key", "--out", &p(key)])
                    .output()
                    .unwrap(),
                "gen-key",
            );
        }
        ok(
            Command::new(coordinator_binary())
                .args([
                    "tls",
                    "init",
                    "--dir",
                    &p("tls"),
                    "--san",
                    "127.0.0.1,localhost",
                ])
                .output()
                .unwrap(),
            "tls init",
        );
        std::fs::write(dir.path().join("admin.token"), "capture-test-admin-token\n").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(coordinator_binary())
            .arg("serve")
            .args(["--listen", &addr.to_string()])
            .args(["--store", &format!("embedded:{}", p("store"))])
            .args(["--kek-file", &p("kek"), "--signing-key-file", &p("signing")])
            .args(["--operator-token-file", &p("admin.token")])
            .args([
                "--tls-cert",
                &p("tls/server.pem"),
                "--tls-key",
                &p("tls/server.key"),
            ])
            .env_remove("FLASHGATE_KEK")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child, addr, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `flashgate ARGS -o json` as the admin, trusting the coordinator's CA.
    fn cli(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(flashgate_binary())
            .args(["--endpoint", &format!("https://{}", self.addr)])
            .arg("--ca-file")
            .arg(self.path("tls/ca.pem"))
            .arg("--token-file")
            .arg(self.path("admin.token"))
            .args(args)
            .args(["-o", "json"])
            .env_remove("FLASHGATE_TOKEN")
            .env("XDG_CONFIG_HOME", self.dir.path())
            .output()
            .unwrap();
        serde_json::from_str(&ok(out, &format!("flashgate {args:?}"))).unwrap()
    }

    fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(flashgate_binary())
                .args(["--endpoint", &format!("https://{}", self.addr)])
                .arg("--ca-file")
                .arg(self.path("tls/ca.pem"))
                .arg("--token-file")
                .arg(self.path("admin.token"))
                .args(["product", "list"])
                .env("XDG_CONFIG_HOME", self.dir.path())
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "coordinator did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn files_under(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.starts_with(skip) {
            continue;
        }
        if path.is_dir() {
            files_under(&path, skip, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn a_recording_proxy_on_the_factory_network_learns_nothing() {
    let fw = Firmware::load();
    let vendor = Vendor::new(PRODUCT);
    let mut coordinator = Coordinator::start();
    coordinator.wait_serving();

    // The operator, with the CLI: product, bootloader release, a bundle for the station.
    let product = coordinator.cli(&[
        "product",
        "create",
        "--id",
        &PRODUCT.to_string(),
        "--name",
        "capture board",
        "--vendor-key",
        &hex::encode(vendor.public()),
    ]);
    let image = coordinator.path("bootloader.img");
    // The bootloader pins the coordinator's authority key of the product, which certifies
    // every chip.
    let authority: [u8; 32] = hex::decode(product["authority_public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let anchors = flashgate_protocol::trust_anchors::TrustAnchors {
        vendor_public: vendor.public(),
        authority_public: authority,
    };
    std::fs::write(
        &image,
        vendor.sign_bootloader_pinning(&fw.bootloader, 3, &anchors),
    )
    .unwrap();
    let release = coordinator.cli(&["release", "upload", image.to_str().unwrap()]);
    let digest = release["digest"].as_str().unwrap().to_owned();
    let bundle_file = coordinator.path("station.bundle");
    coordinator.cli(&[
        "station",
        "bundle",
        "--out",
        bundle_file.to_str().unwrap(),
        "--note",
        "capture station",
        "--vendor-key",
        &hex::encode(vendor.public()),
    ]);
    let bundle = flashgate_proto::bundle::EnrolmentBundle::parse(
        &std::fs::read_to_string(&bundle_file).unwrap(),
    )
    .unwrap();

    // The station, through the recording proxy.
    let proxy = RecordingProxy::start(coordinator.addr);
    let state = tempfile::tempdir().unwrap();
    let kek = StationKek::generate();
    let kek_file = state.path().join("..").join(format!(
        "{}-kek.hex",
        state.path().file_name().unwrap().to_string_lossy()
    ));
    kek.write_to(&kek_file).unwrap();
    let station = |args: &[&str]| {
        Command::new(station_binary())
            .args(args)
            .arg("--state-dir")
            .arg(state.path())
            .arg("--kek-file")
            .arg(&kek_file)
            .args(["--coordinator", &proxy.endpoint()])
            .env_remove("FLASHGATE_STATION_KEK")
            .env_remove("FLASHGATE_COORDINATOR")
            .output()
            .unwrap()
    };
    let enrolled = ok(
        station(&["enrol", "--bundle", bundle_file.to_str().unwrap()]),
        "enrol",
    );
    assert!(enrolled.contains("(approved)"), "{enrolled}");
    let station_id = ok(station(&["identity"]), "identity").trim().to_owned();
    let order = coordinator.cli(&[
        "order",
        "create",
        "--product",
        &PRODUCT.to_string(),
        "--bootloader",
        &digest,
        "--station",
        &station_id,
        "--count",
        "1",
    ]);
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let loader = firmware_dir().join("loader.bin");
    let run = station(&[
        "run",
        "--emulate",
        "1",
        "--max-devices",
        "1",
        "--json",
        "--order",
        &order_id,
        "--loader",
        loader.to_str().unwrap(),
    ]);
    let events = ok(run, "run");
    assert!(events.contains("\"provisioned\":1"), "{events}");
    let devices = coordinator.cli(&["devices", "list", "--order", &order_id]);
    let device = &devices.as_array().unwrap()[0];
    let serial = hex::decode(device["serial"].as_str().unwrap()).unwrap();

    // What the secrets are: the device key (from the coordinator's store, with its KEK), the
    // station's X25519 secret (from its sealed identity), the enrolment token.
    let identity = StationIdentity::load_or_create(state.path(), &kek).unwrap();
    let station_secret = identity.x25519_secret().to_bytes();
    let device_key = device_key(&mut coordinator, &serial);

    let capture = proxy.capture.lock().unwrap().clone();
    assert!(
        capture.len() > fw.bootloader.len(),
        "the sealed image crossed the proxy"
    );
    let windows = secret_windows(&fw.bootloader, fw.loader.bytes());
    assert!(windows.len() > 100, "{} windows", windows.len());

    // Positive control: the same search finds needles planted in a copy, in every encoding.
    let mut planted = capture.clone();
    let needles = [
        windows[windows.len() / 2],
        &device_key[..],
        &station_secret[..],
    ];
    for (i, needle) in needles.iter().enumerate() {
        let enc = encodings(needle);
        let e = &enc[i % enc.len()];
        let at = planted.len() / (i + 2);
        planted.splice(at..at, e.iter().copied());
        assert!(carries(&planted, needle), "the planted needle {i} is found");
    }

    for (start, window) in windows.iter().enumerate() {
        assert!(
            !carries(&capture, window),
            "bootloader window #{start} crossed the network"
        );
    }
    assert!(
        !carries(&capture, &device_key[..]),
        "the device key crossed"
    );
    assert!(
        !carries(&capture, &station_secret),
        "the station secret crossed"
    );
    assert!(
        !carries(&capture, bundle.enrolment_token.as_bytes()),
        "the enrolment token crossed in clear"
    );
    assert!(
        !carries(&capture, b"capture-test-admin-token"),
        "no operator token on the station link"
    );

    // The station's state directory (the emulated board's flash is the target, skipped).
    let mut files = Vec::new();
    files_under(state.path(), &state.path().join("boards"), &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "sealed")),
        "the release cache holds the sealed image: {files:?}"
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for window in &windows {
            assert!(
                !carries(&bytes, window),
                "{} holds bootloader plaintext",
                file.display()
            );
        }
        for (what, secret) in [
            ("device key", &device_key[..]),
            ("station secret", &station_secret[..]),
        ] {
            assert!(
                !carries(&bytes, secret),
                "{} holds the {what}",
                file.display()
            );
        }
    }
    let _ = std::fs::remove_file(&kek_file);
}

/// The device key as the coordinator keeps it: its process is stopped so that its embedded
/// store can be opened here, with its KEK.
fn device_key(c: &mut Coordinator, serial: &[u8]) -> [u8; 32] {
    use flashgate_coordinator::keys::{read_hex_key_file, Kek, KekRing};
    let _ = c.child.kill();
    let _ = c.child.wait();
    let kek = KekRing::new(
        Kek::new(read_hex_key_file(&c.path("kek"), "KEK").unwrap()),
        vec![],
    );
    let seed = read_hex_key_file(&c.path("signing"), "signing").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let coordinator = flashgate_coordinator::Coordinator::new(
            Arc::new(
                flashgate_coordinator::store::embedded::EmbeddedStore::open(c.path("store"))
                    .unwrap(),
            ),
            kek,
            ed25519_dalek::SigningKey::from_bytes(&seed),
            "",
            flashgate_coordinator::CoordinatorConfig::default(),
        );
        let serial: [u8; 16] = serial.try_into().unwrap();
        *coordinator
            .provisioning()
            .registry
            .device_key(PRODUCT, &serial)
            .await
            .unwrap()
    })
}
