//! A product team's own firmware, end to end, with the real binaries: the C demo OS built with
//! `make` (arm-none-eabi-gcc, no Rust), signed by `flashgate image sign` (as is the bootloader
//! the board is provisioned with), uploaded with `flashgate release upload`, published with
//! `flashgate update publish`, installed over the UART by `flashgate device update`; it boots
//! (banner), proves its identity, stays confirmed across a power cycle, and hands over to the
//! bootloader for the next update.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use flashgate_cli::device_update::Uart;
use flashgate_cli::image_tool::key_file;
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_protocol::hello::{self, DeviceState};
use flashgate_protocol::image::SignedImageHeader;
use flashgate_protocol::uart::MsgType;
use flashgate_protocol::update::boot_state::{Outcome, Phase};
use flashgate_protocol::update::receipt;
use flashgate_tests::{firmware_dir, flashgate_binary, Firmware, Vendor};
use serde_json::Value;

use crate::{provisioned_board, test_device_key};

const T: Duration = Duration::from_secs(30);

/// The `flashgate` binary with a directory of its own (its config and the vendor's files).
struct Flashgate {
    dir: tempfile::TempDir,
    endpoint: String,
    token: String,
    ca_file: std::path::PathBuf,
}

impl Flashgate {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(flashgate_binary())
            .env("XDG_CONFIG_HOME", self.dir.path())
            .args(["--endpoint", &self.endpoint])
            .arg("--ca-file")
            .arg(&self.ca_file)
            .env("FLASHGATE_TOKEN", &self.token)
            .args(args)
            .output()
            .expect("the flashgate binary runs")
    }

    /// Runs `ARGS -o json`: it must succeed.
    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    /// `image sign` of `input` as `kind` version `version`, pinning the vendor's and the
    /// authority's keys; returns the image.
    fn sign(&self, input: &Path, kind: &str, version: u32, keys: &Keys) -> Vec<u8> {
        let name = format!(
            "{}-v{version}.img",
            input.file_name().unwrap().to_string_lossy()
        );
        let output = self.path(&name);
        let version = version.to_string();
        self.json(&[
            "image",
            "sign",
            "--key",
            &self.path("vendor.key"),
            "--kind",
            kind,
            "--product",
            "7",
            "--version",
            &version,
            "--vendor-pub",
            &keys.vendor,
            "--authority-pub",
            &keys.authority,
            input.to_str().unwrap(),
            &output,
        ]);
        std::fs::read(&output).unwrap()
    }
}

struct Keys {
    vendor: String,
    authority: String,
}

/// `make` in device-fw/c-demo-os, into `out`; returns the ELF.
pub(crate) fn make_c_demo_os(out: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../device-fw/c-demo-os");
    let made = Command::new("make")
        .arg("-C")
        .arg(&src)
        .arg(format!("OUT={}", out.display()))
        .output()
        .expect("make runs (scripts/setup.sh installs it)");
    assert!(
        made.status.success(),
        "make: {}{}",
        String::from_utf8_lossy(&made.stdout),
        String::from_utf8_lossy(&made.stderr)
    );
    out.join("c-demo-os.elf")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_os_signed_by_the_image_tool_is_installed_over_the_uart_and_stays_confirmed() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let cli = Flashgate {
        dir: tempfile::tempdir().unwrap(),
        endpoint: tc.endpoint.clone(),
        token: tc.operator_token.clone(),
        ca_file: tc.ca_file.clone(),
    };
    // The vendor's key, made by the tool.
    let keygen = |name: &str| {
        cli.json(&["image", "keygen", "--out", &cli.path(name)])["public_key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let vendor_pub = keygen("vendor.key");
    // The product's authority key is the coordinator's; this test certifies its board
    // in-process, so it reads that key from the coordinator it runs (a test's privilege).
    let product = cli.json(&[
        "product",
        "create",
        "--id",
        "7",
        "--name",
        "c board",
        "--vendor-key",
        &vendor_pub,
    ]);
    let keys = Keys {
        vendor: vendor_pub,
        authority: product["authority_public_key"].as_str().unwrap().to_owned(),
    };
    let authority = tc.authority_signing_key(7).await.unwrap();
    let vendor = Vendor {
        key: key_file::load(Path::new(&cli.path("vendor.key"))).unwrap(),
        authority,
        product_id: 7,
    };

    // Build and sign: the C OS (its ELF and its .bin give the same image), the bootloader and
    // the Rust demo OS the board starts with.
    let c_elf = make_c_demo_os(&cli.dir.path().join("c-build"));
    let c_os = cli.sign(&c_elf, "os", 2, &keys);
    assert_eq!(
        cli.sign(&c_elf.with_extension("bin"), "os", 2, &keys),
        c_os,
        "the ELF and the .bin must sign to the same image"
    );
    let dir = firmware_dir();
    let bootloader = cli.sign(&dir.join("bootloader.elf"), "bootloader", 3, &keys);
    let rust_os = cli.sign(&dir.join("demo-os.elf"), "os", 1, &keys);
    let fw = Firmware::load();
    let (mut tb, _fw) = provisioned_board(&vendor, &bootloader, fw, |_| rust_os);
    tb.board.resume().unwrap();
    let serial = tb.uid.0;
    let serial_hex = hex::encode(serial);
    let key = test_device_key(&serial);
    let port = |tb: &flashgate_tests::TestBoard| format!("tcp:{}", tb.board.serial_addr().unwrap());

    tc.register_device(7, &serial, &key).await.unwrap();
    let update_to = |image: &[u8], name: &str, port: &str| {
        let file = cli.path(name);
        std::fs::write(&file, image).unwrap();
        let release = cli.json(&["release", "upload", &file]);
        let digest = release["digest"].as_str().unwrap().to_owned();
        cli.json(&[
            "update",
            "publish",
            "--release",
            &digest,
            "--serial",
            &serial_hex,
        ]);
        cli.json(&["device", "update", "--port", port, "--serial", &serial_hex])
    };

    // The Rust OS hands over, the bootloader installs the C OS, which starts, confirms itself
    // and answers the status request with a receipt the coordinator verifies.
    let report = tokio::task::block_in_place(|| update_to(&c_os, "c-os.img", &port(&tb)));
    assert_eq!(report["version"], 2, "{report}");
    assert_eq!(report["status"]["state"], "updated", "{report}");
    assert_eq!(report["status"]["os_version"], 2, "{report}");

    // Power cycle: the C OS boots again (banner), proves who the device is, and is still the
    // confirmed image (an unconfirmed one would be on trial here, and reverted after 3 boots).
    tb.board.power_off().unwrap();
    tb.board.power_on_again().unwrap();
    // A new power-up, a new UART socket: connect before the core runs, to see the banner.
    let mut uart = Uart::open(&port(&tb)).unwrap();
    tb.board.resume().unwrap();
    let banner = uart.expect(MsgType::BootBanner, T).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&banner),
        "flashgate c-demo-os v2 on mps2-an386"
    );
    let challenge = [0x3Cu8; 32];
    uart.send(&flashgate_protocol::uart::Request::Hello { challenge })
        .unwrap();
    let raw = uart.expect(MsgType::HelloResponse, T).unwrap();
    let info = hello::verify_response(&key, &challenge, &raw).expect("a MAC under the device key");
    assert_eq!(info.serial, serial);
    assert_eq!(info.state, DeviceState::OsRunning { version: 2 });
    assert_eq!(info.bootloader_version, 3);
    let raw = uart.status(&[0x5Au8; 32], T).unwrap();
    let r = receipt::verify(&key, &[0x5Au8; 32], &raw).expect("a receipt under the device key");
    assert_eq!(r.state, DeviceState::OsRunning { version: 2 });
    assert_eq!(
        (r.outcome, r.phase, r.floor),
        (Outcome::Updated, Phase::Idle as u8, 2)
    );
    // A frame the C OS does not serve gets an error frame, like the Rust OS.
    uart.send(&flashgate_protocol::uart::Request::OsStatus)
        .unwrap();
    let refused = uart.expect(MsgType::OsStatusReply, T).unwrap_err();
    assert!(
        refused.to_string().contains("unknown message"),
        "{refused:#}"
    );
    drop(uart);

    // Its `enter update` hands over to the bootloader: the next update replaces it.
    let next = cli.sign(&dir.join("demo-os.elf"), "os", 3, &keys);
    assert_eq!(SignedImageHeader::parse(&next).unwrap().header.version, 3);
    let report = tokio::task::block_in_place(|| update_to(&next, "rust-os-v3.img", &port(&tb)));
    assert_eq!(report["status"]["state"], "updated", "{report}");
    assert_eq!(report["status"]["os_version"], 3, "{report}");
    tc.stop().await;
}
