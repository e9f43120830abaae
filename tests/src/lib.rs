//! Shared pieces of flashgate's end-to-end tests: the built firmware, a test vendor, emulated
//! boards (bare, or provisioned by the station's own flow), the station binary, and the test
//! support the station keeps out of its production types: [`bay::TestBay`] (boards with faults),
//! [`faults::FaultyProbe`] (a tampered debug link) and [`malicious_station`].
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test-support crate: a panic is how it reports a failure"
)]

pub mod authority;
pub mod bay;
pub mod chaos;
pub mod crypto_bench;
pub mod etcd_cluster;
pub mod factory_os;
pub mod fault_proxy;
pub mod faults;
pub mod fsync_fault;
pub mod gateway_proxy;
pub mod malicious_station;
pub mod net_rig;
pub mod probe_forward;
pub mod replicas;
pub mod stack_gauge;
pub mod uart_tap;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use flashgate_emulator::{BoardFiles, EmulatedBoard, StartOptions, Uid};
use flashgate_protocol::flash::{NorFlash, RamFlash};
use flashgate_protocol::image::{sign_image, ImageKind, SIGNED_HEADER_LEN};
use flashgate_protocol::layout::{FLASH_SIZE, IMAGE_HEADER_SPACE, OS_SLOT_ADDR};
use flashgate_protocol::trust_anchors::{self, TrustAnchors};
use flashgate_station::events::{EventFormat, EventSink};
use flashgate_station::probe::{GdbProbe, GdbProbeOptions, TrafficRecorder};
use flashgate_station::provisioning::{
    run_target, CertificateIssuer, Failed, Job, LoaderImage, OrderPlan, Provisioned,
};

pub use crate::authority::{test_device_key, TestAuthority};
use crate::bay::TestBay;

/// Time allowed for one loader turn (the handshake is the longest, ~6 M instructions).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary `name` of workspace package `package`, next to this test binary (`cargo build -p
/// PACKAGE`; `cargo nextest run --workspace` builds it).
pub fn workspace_binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p {package}`",
        bin.display()
    );
    bin
}

/// The `flashgate-station` binary next to this test binary.
pub fn station_binary() -> PathBuf {
    workspace_binary("flashgate-station", "flashgate-station")
}

/// Runs the station's per-target flow — the factory's — on the next board of `bay`, its
/// certificate from `issuer`.
pub fn provision(
    bay: &mut TestBay,
    plan: OrderPlan,
    issuer: Arc<dyn CertificateIssuer>,
) -> Result<Provisioned, Failed> {
    provision_within(bay, plan, issuer, STEP_TIMEOUT)
}

/// [`provision`] with another time limit per loader turn (slow `-icount` boards).
pub fn provision_within(
    bay: &mut TestBay,
    plan: OrderPlan,
    issuer: Arc<dyn CertificateIssuer>,
    step_timeout: Duration,
) -> Result<Provisioned, Failed> {
    let job = Job {
        plan: Arc::new(plan),
        issuer,
        lease_id: "e2e-lease".into(),
        os: None,
    };
    run_target(bay, &job, step_timeout, &EventSink::new(EventFormat::Quiet))
}

/// The firmware built by `cargo xtask firmware`.
pub struct Firmware {
    /// The RAM flash loader.
    pub loader: LoaderImage,
    /// The bootloader binary (unsigned body).
    pub bootloader: Vec<u8>,
    /// The demo OS binary (unsigned body, linked at `OS_SLOT_ADDR + IMAGE_HEADER_SPACE`).
    pub demo_os: Vec<u8>,
    /// The RAM test application.
    pub test_app: Vec<u8>,
}

/// `arm-none-eabi-size` of a firmware ELF: (text, data, bss).
pub fn firmware_size(name: &str) -> Option<(u64, u64, u64)> {
    let out = Command::new("arm-none-eabi-size")
        .arg(firmware_dir().join(format!("{name}.elf")))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.len() == 3).then(|| (v[0], v[1], v[2]))
}

/// Where the firmware is: `$FLASHGATE_FIRMWARE_DIR`, else `<workspace>/target/firmware`.
pub fn firmware_dir() -> PathBuf {
    std::env::var_os("FLASHGATE_FIRMWARE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/firmware"))
}

impl Firmware {
    /// Loads the firmware; panics with the command to run when it has not been built.
    pub fn load() -> Self {
        let dir = firmware_dir();
        let read = |name: &str| {
            std::fs::read(dir.join(name)).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}. Build the firmware first: `cargo xtask firmware` (scripts/test.sh does)",
                    dir.join(name).display()
                )
            })
        };
        Self {
            loader: LoaderImage::new(read("loader.bin")).expect("loader.bin is a flashgate loader"),
            bootloader: read("bootloader.bin"),
            demo_os: read("demo-os.bin"),
            test_app: read("test-app.bin"),
        }
    }
}

/// The `flashgate` CLI binary next to the test binaries.
pub fn flashgate_binary() -> PathBuf {
    workspace_binary("flashgate", "flashgate-cli")
}

/// A vendor with a signing key and one product (with its authority key, the coordinator's in
/// production).
pub struct Vendor {
    /// The vendor's ed25519 key.
    pub key: SigningKey,
    /// The product's authority key (signs device certificates).
    pub authority: SigningKey,
    /// The product id.
    pub product_id: u32,
}

impl Vendor {
    /// A fresh vendor.
    pub fn new(product_id: u32) -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
            authority: SigningKey::generate(&mut rand::rngs::OsRng),
            product_id,
        }
    }

    /// Its public key.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The keys its bootloader and OS images pin.
    pub fn anchors(&self) -> TrustAnchors {
        TrustAnchors {
            vendor_public: self.public(),
            authority_public: self.authority.verifying_key().to_bytes(),
        }
    }

    /// A certificate authority for its product (the coordinator's part), unbounded.
    pub fn issuer(&self) -> Arc<TestAuthority> {
        Arc::new(TestAuthority::new(self.authority.clone(), self.product_id))
    }

    /// The bootloader signed as `version`, pinning this vendor's keys.
    pub fn sign_bootloader(&self, body: &[u8], version: u32) -> Vec<u8> {
        self.sign_bootloader_pinning(body, version, &self.anchors())
    }

    /// The bootloader signed as `version` (by this vendor), pinning `anchors`.
    pub fn sign_bootloader_pinning(
        &self,
        body: &[u8],
        version: u32,
        anchors: &TrustAnchors,
    ) -> Vec<u8> {
        sign_image(
            ImageKind::Bootloader,
            self.product_id,
            version,
            0,
            &pin(body, anchors),
            &self.key,
        )
    }

    /// The factory test application, signed, for the loader's test-app RAM.
    pub fn sign_test_app(&self, body: &[u8]) -> Vec<u8> {
        sign_image(
            ImageKind::TestApp,
            self.product_id,
            1,
            flashgate_protocol::layout::TEST_APP_ADDR,
            body,
            &self.key,
        )
    }

    /// An app image signed as `version`, for the app slot.
    pub fn sign_app(&self, body: &[u8], version: u32) -> Vec<u8> {
        sign_image(
            ImageKind::App,
            self.product_id,
            version,
            flashgate_protocol::app::APP_BODY_ADDR,
            body,
            &self.key,
        )
    }

    /// An OS image signed as `version`, for the OS slot, pinning this vendor's keys.
    pub fn sign_os(&self, body: &[u8], version: u32) -> Vec<u8> {
        self.sign_os_pinning(body, version, &self.anchors())
    }

    /// The OS signed as `version`, pinning `anchors` (the coordinator's authority key, for an
    /// order's OS).
    pub fn sign_os_pinning(&self, body: &[u8], version: u32, anchors: &TrustAnchors) -> Vec<u8> {
        sign_image(
            ImageKind::Os,
            self.product_id,
            version,
            OS_SLOT_ADDR + IMAGE_HEADER_SPACE,
            &pin(body, anchors),
            &self.key,
        )
    }
}

/// `body` with its trust-anchor block filled (as `flashgate image sign` does); a body without
/// the block (a test's synthetic image) is signed as it is.
fn pin(body: &[u8], anchors: &TrustAnchors) -> Vec<u8> {
    let mut body = body.to_vec();
    let _ = trust_anchors::embed(&mut body, anchors);
    body
}

impl Vendor {
    /// A plan installing the firmware's bootloader signed as `version` by this vendor.
    pub fn plan(&self, fw: &Firmware, version: u32) -> OrderPlan {
        OrderPlan::new(
            fw.loader.clone(),
            self.sign_bootloader(&fw.bootloader, version),
            self.product_id,
        )
        .expect("a signed bootloader parses")
    }
}

/// A powered-off board's flash, read from its directory, as the protocol's flash model.
pub fn persisted_flash(board: &BoardFiles) -> RamFlash {
    let bytes = board
        .read_flash(0, FLASH_SIZE as usize)
        .expect("flash.bin readable");
    RamFlash {
        bytes,
        debug_locked: false,
    }
}

/// Writes a signed OS image into a powered-off board's persisted flash, as an update would.
pub fn install_os_offline(board: &BoardFiles, signed_os: &[u8]) {
    let mut flash = persisted_flash(board);
    flash
        .erase_range(
            OS_SLOT_ADDR,
            (IMAGE_HEADER_SPACE as usize + signed_os.len()) as u32,
        )
        .unwrap();
    flash
        .program(OS_SLOT_ADDR, &signed_os[..SIGNED_HEADER_LEN])
        .unwrap();
    flash
        .program(
            OS_SLOT_ADDR + IMAGE_HEADER_SPACE,
            &signed_os[SIGNED_HEADER_LEN..],
        )
        .unwrap();
    std::fs::write(board.flash_path(), &flash.bytes).unwrap();
}

/// A new board in its own temporary directory, powered on (halted).
pub struct TestBoard {
    /// The board.
    pub board: EmulatedBoard,
    /// Its unique ID.
    pub uid: Uid,
    _dir: Option<tempfile::TempDir>,
}

impl TestBoard {
    /// Creates and starts a blank board.
    pub fn new() -> Self {
        Self::with_options(StartOptions::default())
    }

    /// Creates and starts a blank board with `options`.
    pub fn with_options(options: StartOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let uid = EmulatedBoard::create(dir.path().join("board"), None).unwrap();
        let board = EmulatedBoard::start(dir.path().join("board"), options).unwrap();
        Self {
            board,
            uid,
            _dir: Some(dir),
        }
    }

    /// A board provisioned by the station's flow with `plan` (locked, hello verified), then
    /// `os` (a signed OS image) installed offline as an update would, powered on again and
    /// still halted: connect the UART, then resume.
    pub fn provisioned(
        plan: OrderPlan,
        issuer: Arc<dyn CertificateIssuer>,
        options: StartOptions,
        os: Option<&[u8]>,
    ) -> (Self, Provisioned) {
        let mut bay = TestBay::new("e2e").with_options(options.clone());
        let done = provision_within(&mut bay, plan, issuer, 2 * STEP_TIMEOUT)
            .expect("the station's flow provisions the board");
        assert!(
            done.locked && done.hello.is_some(),
            "locked, hello verified"
        );
        let files = bay.board_files(0);
        if let Some(os) = os {
            install_os_offline(&files, os);
        }
        let board = EmulatedBoard::start(files.dir(), options).expect("the board starts again");
        let uid = files.uid().expect("the board's uid");
        let tb = Self {
            board,
            uid,
            _dir: bay.into_dir(),
        };
        (tb, done)
    }

    /// Attaches a GDB probe, optionally recording all traffic.
    pub fn probe(&self, recorder: Option<Arc<TrafficRecorder>>) -> GdbProbe {
        let addr = self.board.gdb_addr().expect("board has a gdb port");
        GdbProbe::connect_with(
            addr,
            GdbProbeOptions {
                timeout: Duration::from_secs(20),
                tap: recorder.map(|r| r as _),
                ..GdbProbeOptions::default()
            },
        )
        .expect("gdb connects")
    }
}

impl Default for TestBoard {
    fn default() -> Self {
        Self::new()
    }
}
pub mod station_harness;
pub mod webdriver;
