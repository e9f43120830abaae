//! `flashgate-demo`: the whole main job in one process, on the embedded default.
//!
//! Starts a coordinator on its embedded file store, creates a product, uploads the bootloader,
//! the factory test application and the demo OS signed by a freshly generated vendor key,
//! creates an order (6 devices by default) whose boards leave running that OS, enrols and
//! approves a station, runs it with 4 emulated boards (each board gets the OS as its own
//! encrypted package after the lock, and counts only once its receipt shows the OS running), and
//! prints the registry and the summary. Build the firmware first (`cargo xtask firmware`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ed25519_dalek::SigningKey;
use flashgate_coordinator::keys::Kek;
use flashgate_coordinator::store::embedded::EmbeddedStore;
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_coordinator::CoordinatorConfig;
use flashgate_proto::v1;
use flashgate_protocol::image::{sign_image, ImageKind};
use flashgate_station::events::{EventFormat, EventSink};
use flashgate_station::identity::{StationIdentity, StationKek};
use flashgate_station::station::{run_station, StationOptions};

#[derive(Parser)]
#[command(
    name = "flashgate-demo",
    about = "coordinator + station + emulated boards, end to end"
)]
struct Cli {
    /// Devices in the order.
    #[arg(long, default_value_t = 6)]
    devices: u64,
    /// Emulated boards (one probe actor each).
    #[arg(long, default_value_t = 4)]
    emulate: usize,
    /// Where the firmware is (default target/firmware).
    #[arg(long, default_value = "target/firmware")]
    firmware: PathBuf,
    /// Keep everything in this directory instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Station events as JSON lines.
    #[arg(long)]
    json: bool,
    /// Run a factory test application on every board.
    #[arg(long, default_value_t = true)]
    test_app: bool,
    /// Boards leave with the bootloader only (no OS in the order).
    #[arg(long)]
    no_os: bool,
}

/// The demo OS's release version.
const OS_VERSION: u32 = 2;

const PRODUCT_ID: u32 = 7;

fn main() -> anyhow::Result<()> {
    // The in-process coordinator logs every refused RPC; the one the demo expects (the order's
    // quota spent) is already the summary's last line, so its service log starts at errors.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,flashgate_coordinator::service=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let temp = tempfile::tempdir()?;
    let dir = cli.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let read = |name: &str| {
        std::fs::read(cli.firmware.join(name)).with_context(|| {
            format!(
                "{}: build the firmware first with `cargo xtask firmware`",
                cli.firmware.join(name).display()
            )
        })
    };
    let bootloader_body = read("bootloader.bin")?;
    let test_app_body = read("test-app.bin")?;
    let os_body = read("demo-os.bin")?;

    let rt = tokio::runtime::Runtime::new()?;
    let coordinator = rt.block_on(TestCoordinator::start(
        Arc::new(EmbeddedStore::open(dir.join("coordinator"))?),
        CoordinatorConfig::default(),
        SigningKey::generate(&mut rand::rngs::OsRng),
        Kek::generate(),
    ))?;
    println!(
        "coordinator (embedded store in {}) at {} (TLS, its own CA)",
        dir.display(),
        coordinator.endpoint
    );

    let vendor = SigningKey::generate(&mut rand::rngs::OsRng);
    let kek = StationKek::generate();
    let station_dir = dir.join("station");
    std::fs::create_dir_all(&station_dir)?;
    let kek_file = dir.join("station-kek.hex");
    if !kek_file.exists() {
        kek.write_to(&kek_file)?;
    }
    let kek = StationKek::load(Some(&kek_file))?;
    let identity = StationIdentity::load_or_create(&station_dir, &kek)?;
    let station_id = identity.station_id();

    let order = rt.block_on(async {
        let mut op = coordinator.operator_client().await?;
        let req = |m| coordinator.operator_request(m);
        let product = op
            .create_product(req(v1::CreateProductRequest {
                product_id: PRODUCT_ID,
                name: "demo board".into(),
                vendor_public_key: vendor.verifying_key().to_bytes().to_vec(),
            }))
            .await?
            .into_inner();
        // The bootloader pins the vendor key and the product's authority key (what
        // `flashgate image sign --vendor-pub … --authority-pub …` does).
        let anchors = flashgate_protocol::trust_anchors::TrustAnchors {
            vendor_public: vendor.verifying_key().to_bytes(),
            authority_public: product
                .authority_public_key
                .as_slice()
                .try_into()
                .map_err(|_| anyhow::anyhow!("the coordinator returned no authority key"))?,
        };
        let mut bootloader_body = bootloader_body.clone();
        flashgate_protocol::trust_anchors::embed(&mut bootloader_body, &anchors)
            .map_err(|e| anyhow::anyhow!("the bootloader has no trust-anchor block: {e}"))?;
        let bootloader = op
            .upload_release(coordinator.operator_request(v1::UploadReleaseRequest {
                image: sign_image(
                    ImageKind::Bootloader,
                    PRODUCT_ID,
                    1,
                    0,
                    &bootloader_body,
                    &vendor,
                ),
            }))
            .await?
            .into_inner();
        let test_app = op
            .upload_release(coordinator.operator_request(v1::UploadReleaseRequest {
                image: sign_image(
                    ImageKind::TestApp,
                    PRODUCT_ID,
                    1,
                    flashgate_protocol::layout::TEST_APP_ADDR,
                    &test_app_body,
                    &vendor,
                ),
            }))
            .await?
            .into_inner();
        // The order's OS pins the same keys: the coordinator refuses an OS that pins none.
        let mut os_body = os_body.clone();
        flashgate_protocol::trust_anchors::embed(&mut os_body, &anchors)
            .map_err(|e| anyhow::anyhow!("the OS has no trust-anchor block: {e}"))?;
        let os = op
            .upload_release(coordinator.operator_request(v1::UploadReleaseRequest {
                image: sign_image(
                    ImageKind::Os,
                    PRODUCT_ID,
                    OS_VERSION,
                    flashgate_protocol::layout::OS_SLOT_ADDR
                        + flashgate_protocol::layout::IMAGE_HEADER_SPACE,
                    &os_body,
                    &vendor,
                ),
            }))
            .await?
            .into_inner();
        // What `flashgate station bundle` writes and `flashgate-station enrol --bundle` reads.
        let mut bundle = coordinator.enrolment_bundle("demo station").await?;
        bundle.vendor_public_keys = vec![hex::encode(vendor.verifying_key().to_bytes())];
        flashgate_station::enrolment::enrol_with_bundle(
            &identity,
            &station_dir,
            &bundle,
            None,
            "demo station",
            "demo-factory",
        )
        .await?;
        println!("station {station_id} enrolled with a one-time bundle (mutual TLS) and approved");
        let order = op
            .create_order(coordinator.operator_request(v1::CreateOrderRequest {
                product_id: PRODUCT_ID,
                bootloader_digest: bootloader.digest,
                test_app_digest: if cli.test_app {
                    test_app.digest
                } else {
                    vec![]
                },
                station_ids: vec![station_id.clone()],
                factory: "demo-factory".into(),
                count: cli.devices,
                os_release_digest: if cli.no_os { vec![] } else { os.digest },
                ..Default::default()
            }))
            .await?
            .into_inner();
        anyhow::Ok(order)
    })?;
    println!(
        "order {} for {} devices of product {PRODUCT_ID}{}; running the station with {} emulated boards\n",
        order.order_id,
        order.count,
        match order.os_version {
            0 => String::new(),
            v => format!(", leaving with OS version {v}"),
        },
        cli.emulate
    );

    let mut options = StationOptions::new(
        coordinator.endpoint.clone(),
        &station_dir,
        kek,
        cli.firmware.join("loader.bin"),
    );
    options.emulate = cli.emulate;
    options.order = Some(order.order_id.clone());
    options.name = "demo station".into();
    options.factory = "demo-factory".into();
    options.events = EventSink::new(if cli.json {
        EventFormat::Json
    } else {
        EventFormat::Human
    });
    let summary = std::thread::spawn(move || run_station(options))
        .join()
        .map_err(|_| anyhow::anyhow!("station thread panicked"))??;

    let (devices, status) = rt.block_on(async {
        let mut op = coordinator.operator_client().await?;
        let devices = op
            .list_devices(coordinator.operator_request(v1::ListDevicesRequest {
                order_id: order.order_id.clone(),
                ..Default::default()
            }))
            .await?
            .into_inner()
            .devices;
        let status = op
            .get_order_status(coordinator.operator_request(v1::GetOrderStatusRequest {
                order_id: order.order_id.clone(),
            }))
            .await?
            .into_inner();
        anyhow::Ok((devices, status))
    })?;
    println!("\nregistry of order {}:", order.order_id);
    println!(
        "{:<34} {:<34} {:>10} {:>4} {:<6} {:<12}",
        "serial", "station", "bootloader", "os", "test", "outcome"
    );
    for d in &devices {
        let test = d
            .test_result
            .as_ref()
            .and_then(|t| v1::TestOutcome::try_from(t.outcome).ok())
            .map(|o| match o {
                v1::TestOutcome::Pass => "pass",
                v1::TestOutcome::Fail => "FAIL",
                _ => "none",
            })
            .unwrap_or("none");
        let outcome = v1::InstallOutcome::try_from(d.outcome)
            .map(|o| {
                o.as_str_name()
                    .trim_start_matches("INSTALL_OUTCOME_")
                    .to_lowercase()
            })
            .unwrap_or_default();
        let os = match d.os_version {
            0 => "-".to_owned(),
            v => v.to_string(),
        };
        println!(
            "{:<34} {:<34} {:>10} {:>4} {:<6} {:<12}",
            hex::encode(&d.serial),
            d.station_id,
            d.bootloader_version,
            os,
            test,
            outcome
        );
    }
    // The station's own summary line is above; this adds what only the coordinator knows.
    let running_os = devices
        .iter()
        .filter(|d| d.os_version != 0 && d.os_version == order.os_version)
        .count();
    println!(
        "\norder: {} ordered, {} consumed, {} reserved, {} remaining{}; {:.0} devices/hour",
        order.count,
        status.consumed,
        status.reserved,
        status.remaining,
        match order.os_version {
            0 => String::new(),
            v => format!(
                "; {running_os} of {} registered boards boot OS version {v} (their receipts verified)",
                devices.len()
            ),
        },
        f64::from(summary.provisioned) * 3600.0 / summary.elapsed_s.max(0.001),
    );
    rt.block_on(coordinator.stop());
    Ok(())
}
