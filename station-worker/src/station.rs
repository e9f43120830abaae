//! One run of the station: identity, coordinator, journal replay, probe fixtures, then the
//! supervisor actor until the order's quota is spent, the lease expires, the requested number of
//! devices is made or every probe is retired.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use flashgate_proto::v1;
use flashgate_protocol::image::SignedImageHeader;
use sha2::{Digest, Sha256};

use crate::actors::supervisor::{share_fixture, Supervisor, SupervisorParts, SupervisorSettings};
use crate::coordinator_client::CoordinatorClient;
use crate::events::{Event, EventSink, Summary};
use crate::fixture::{EmulatedFixture, FixtureFault, GdbFixture, TargetFixture};
use crate::identity::{StationIdentity, StationKek};
use crate::install_flow::OrderImages;
use crate::journal::{Journal, JournalRecord};
use crate::lease::ActiveLease;
use crate::provisioning::LoaderImage;

/// Current unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A probe from the configuration file.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Name shown in progress lines.
    pub name: String,
    /// The GDB server of the probe.
    pub gdb: SocketAddr,
    /// The target's UART (TCP), for the post-lock `hello`.
    #[serde(default)]
    pub uart: Option<SocketAddr>,
}

/// Everything one run needs.
pub struct StationOptions {
    /// Coordinator endpoint (`http://host:port`).
    pub coordinator: String,
    /// Identity, journal, cached releases, emulated boards.
    pub state_dir: PathBuf,
    /// Seals the identity file.
    pub kek: StationKek,
    /// The order to work on (default: the first assigned one).
    pub order: Option<String>,
    /// Configured probes.
    pub probes: Vec<ProbeSpec>,
    /// Emulated targets to add.
    pub emulate: usize,
    /// Fault injected into the first emulated fixture.
    pub emulated_fault: Option<FixtureFault>,
    /// The RAM flash loader binary.
    pub loader: PathBuf,
    /// Optional pin of the product's vendor key. The key used is the one in the signed lease
    /// (`LeaseBody.vendor_public_key`); when pinned, a lease naming another key is refused.
    /// Also the key for journaled leases issued before leases carried one.
    pub vendor_public: Option<[u8; 32]>,
    /// Where events go.
    pub events: EventSink,
    /// Stop after this many devices.
    pub max_devices: Option<u32>,
    /// Slots per lease (default: 2 per probe).
    pub lease_size: Option<u32>,
    /// Requested lease validity in seconds (0 = coordinator default).
    pub lease_validity_s: u32,
    /// Time per loader turn / link operation.
    pub step_timeout: Duration,
    /// Pause between retries while the coordinator is unreachable.
    pub retry_every: Duration,
    /// How long to keep re-sending reports at the end.
    pub report_deadline: Duration,
    /// Failures in a row before a probe is retired.
    pub retire_after: u32,
    /// Fault injection: stop like a crash after this many journaled installs.
    pub crash_after_journaled: Option<u32>,
    /// Station name and factory (enrolment).
    pub name: String,
    /// Factory.
    pub factory: String,
}

impl StationOptions {
    /// Defaults for everything but the essentials.
    pub fn new(
        coordinator: impl Into<String>,
        state_dir: impl Into<PathBuf>,
        kek: StationKek,
        loader: impl Into<PathBuf>,
    ) -> Self {
        Self {
            coordinator: coordinator.into(),
            state_dir: state_dir.into(),
            kek,
            order: None,
            probes: Vec::new(),
            emulate: 0,
            emulated_fault: None,
            loader: loader.into(),
            vendor_public: None,
            events: EventSink::new(crate::events::EventFormat::Human),
            max_devices: None,
            lease_size: None,
            lease_validity_s: 0,
            step_timeout: Duration::from_secs(30),
            retry_every: Duration::from_millis(500),
            report_deadline: Duration::from_secs(30),
            retire_after: 3,
            crash_after_journaled: None,
            name: "station".into(),
            factory: String::new(),
        }
    }
}

/// Where the supervisor gets release images (cached under the state directory, so a station
/// can resume a journaled lease while the coordinator is down).
#[derive(Clone)]
pub struct ImageSource {
    cache_dir: PathBuf,
    loader: LoaderImage,
    /// The pinned vendor key, if any.
    vendor_public: Option<[u8; 32]>,
}

/// The vendor key the lease's releases must verify under: the one the coordinator signed into
/// the lease, cross-checked against the station's pin when there is one.
pub fn lease_vendor_key(
    body: &v1::LeaseBody,
    pinned: Option<[u8; 32]>,
) -> anyhow::Result<[u8; 32]> {
    if body.vendor_public_key.is_empty() {
        // A journaled lease from a coordinator that did not sign the key in yet.
        return pinned.ok_or_else(|| {
            anyhow::anyhow!(
                "lease {} carries no vendor key and none is pinned (--vendor-key)",
                body.lease_id
            )
        });
    }
    let from_lease: [u8; 32] = body.vendor_public_key.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "lease {} carries a vendor key of {} bytes, not 32",
            body.lease_id,
            body.vendor_public_key.len()
        )
    })?;
    if let Some(pinned) = pinned {
        if pinned != from_lease {
            bail!(
                "lease {} names vendor key {} but this station is pinned to {}: refusing to install",
                body.lease_id,
                hex::encode(from_lease),
                hex::encode(pinned)
            );
        }
    }
    Ok(from_lease)
}

async fn fetch_cached(
    client: &CoordinatorClient,
    cache_dir: &Path,
    digest: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let path = cache_dir.join(format!("{}.img", hex::encode(digest)));
    if let Ok(bytes) = std::fs::read(&path) {
        if Sha256::digest(&bytes).as_slice() == digest {
            return Ok(bytes);
        }
    }
    let image = client
        .fetch_release(digest)
        .await
        .with_context(|| format!("fetching release {}", hex::encode(digest)))?;
    if Sha256::digest(&image).as_slice() != digest {
        bail!(
            "release {} does not hash to its digest",
            hex::encode(digest)
        );
    }
    std::fs::create_dir_all(cache_dir)?;
    std::fs::write(&path, &image)?;
    Ok(image)
}

/// Fetches (or reads from the cache) the lease's bootloader and test application and checks
/// them against the vendor key named by the lease.
pub async fn load_images(
    client: &CoordinatorClient,
    source: &ImageSource,
    body: &v1::LeaseBody,
) -> anyhow::Result<OrderImages> {
    let vendor_public = lease_vendor_key(body, source.vendor_public)?;
    let bootloader = fetch_cached(client, &source.cache_dir, &body.bootloader_digest).await?;
    let header = SignedImageHeader::parse(&bootloader)
        .map_err(|e| anyhow::anyhow!("bootloader release: {e}"))?;
    header.verify(&vendor_public).map_err(|e| {
        anyhow::anyhow!("bootloader release does not verify under the lease's vendor key: {e}")
    })?;
    let test_app = if body.test_app_digest.is_empty() {
        None
    } else {
        let app = fetch_cached(client, &source.cache_dir, &body.test_app_digest).await?;
        SignedImageHeader::parse(&app)
            .and_then(|h| h.verify(&vendor_public).map(|_| ()))
            .map_err(|e| anyhow::anyhow!("test application release: {e}"))?;
        Some(app)
    };
    Ok(OrderImages {
        loader: source.loader.clone(),
        bootloader_version: header.header.version,
        bootloader,
        test_app,
        product_id: body.product_id,
        vendor_public,
        rollback_floor: 1,
    })
}

/// Registers the station's public keys with the coordinator (idempotent).
pub async fn enrol(
    client: &CoordinatorClient,
    identity: &StationIdentity,
    name: &str,
    factory: &str,
) -> Result<v1::EnrolResponse, tonic::Status> {
    client
        .enrol(v1::EnrolRequest {
            ed25519_public_key: identity.ed25519_public().to_vec(),
            x25519_public_key: identity.x25519_public().to_vec(),
            name: name.to_owned(),
            factory: factory.to_owned(),
        })
        .await
}

const COORDINATOR_KEY_FILE: &str = "coordinator-lease-key.hex";

/// The coordinator's lease key: asked for, and pinned in the state directory on first contact
/// (later runs refuse a different key, and can start while the coordinator is down).
async fn coordinator_key(
    client: &CoordinatorClient,
    state_dir: &Path,
) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let path = state_dir.join(COORDINATOR_KEY_FILE);
    let pinned = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| hex::decode(t.trim()).ok())
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok());
    match (client.lease_key().await, pinned) {
        (Ok(key), Some(pinned)) if key != pinned => bail!(
            "the coordinator at {} signs leases with another key than the one pinned in {}: wrong coordinator?",
            client.endpoint(),
            path.display()
        ),
        (Ok(key), _) => {
            std::fs::write(&path, hex::encode(key.to_bytes()))?;
            Ok(key)
        }
        (Err(_), Some(pinned)) => Ok(pinned),
        (Err(e), None) => bail!(
            "coordinator {} unreachable ({}) and no lease key pinned yet",
            client.endpoint(),
            e.message()
        ),
    }
}

/// Runs the station until it stops; blocking (starts its own actix system). Call it from a
/// plain thread, not from inside an async runtime.
pub fn run_station(options: StationOptions) -> anyhow::Result<Summary> {
    actix::System::new().block_on(run(options))
}

async fn run(options: StationOptions) -> anyhow::Result<Summary> {
    let identity = Arc::new(
        StationIdentity::load_or_create(&options.state_dir, &options.kek)
            .context("station identity")?,
    );
    let station_id = identity.station_id();
    let client = CoordinatorClient::new(&options.coordinator, identity.signer())?;
    let coordinator_key = coordinator_key(&client, &options.state_dir).await?;
    match enrol(&client, &identity, &options.name, &options.factory).await {
        Ok(r) if r.state == v1::StationState::Approved as i32 => {}
        Ok(_) => bail!(
            "station {station_id} is enrolled but not approved: ask the operator to approve this fingerprint"
        ),
        Err(e) => tracing::warn!(error = %e.message(), "coordinator unreachable at start: working from the journal"),
    }

    let loader = LoaderImage::from_file(&options.loader)
        .with_context(|| format!("flash loader {}", options.loader.display()))?;
    let images = ImageSource {
        cache_dir: options.state_dir.join("releases"),
        loader,
        vendor_public: options.vendor_public,
    };
    let (mut journal, state) = Journal::open(&options.state_dir)?;

    // Resume the newest open lease that is still valid and has slots left; close the others.
    let mut resumed: Option<ActiveLease> = None;
    for (lease_id, encoded) in state.open_leases.iter().rev() {
        let used = state.installs_per_lease.get(lease_id).copied().unwrap_or(0);
        let opened = ActiveLease::decode_journaled(encoded)
            .and_then(|signed| ActiveLease::open(signed, &coordinator_key, &identity, now_ms()));
        let reason = match opened {
            Ok(mut lease) if resumed.is_none() && used < lease.body.count => {
                lease.used = used;
                resumed = Some(lease);
                continue;
            }
            Ok(lease) if used >= lease.body.count => "used up".to_owned(),
            Ok(_) => "superseded".to_owned(),
            Err(e) => e.to_string(),
        };
        journal.append(&JournalRecord::LeaseClosed {
            lease_id: lease_id.clone(),
            reason,
        })?;
    }

    let order_id = match (&options.order, &resumed) {
        (Some(order), _) => order.clone(),
        (None, Some(lease)) => lease.body.order_id.clone(),
        (None, None) => client
            .assigned_orders()
            .await
            .map_err(|e| anyhow::anyhow!("listing assigned orders: {}", e.message()))?
            .first()
            .map(|o| o.order_id.clone())
            .ok_or_else(|| anyhow::anyhow!("no order is assigned to station {station_id}"))?,
    };
    if let Some(lease) = &resumed {
        if lease.body.order_id != order_id {
            bail!(
                "the journal holds lease {} of order {}: finish it before working on {order_id}",
                lease.id(),
                lease.body.order_id
            );
        }
    }
    let current_images = match &resumed {
        Some(lease) => Some(Arc::new(load_images(&client, &images, &lease.body).await?)),
        None => None,
    };

    let mut fixtures: Vec<(String, Box<dyn TargetFixture>)> = Vec::new();
    for i in 0..options.emulate {
        let name = format!("emu-{i}");
        let mut fixture = EmulatedFixture::new(&name, options.state_dir.join("boards"));
        if i == 0 {
            if let Some(fault) = options.emulated_fault.clone() {
                fixture = fixture.with_fault(fault);
            }
        }
        fixtures.push((name, Box::new(fixture)));
    }
    for spec in &options.probes {
        fixtures.push((
            spec.name.clone(),
            Box::new(GdbFixture::new(&spec.name, spec.gdb, spec.uart)),
        ));
    }
    if fixtures.is_empty() {
        bail!("no probe: list probes in the configuration file or pass --emulate N");
    }

    options.events.emit(Event::Started {
        station_id,
        order_id: order_id.clone(),
        probes: fixtures.iter().map(|(n, _)| n.clone()).collect(),
        unreported_in_journal: state.unreported.len(),
    });
    let probes = fixtures.len() as u32;
    let (done, finished) = tokio::sync::oneshot::channel();
    let supervisor = Supervisor::new(SupervisorParts {
        settings: SupervisorSettings {
            order_id,
            lease_size: options.lease_size.unwrap_or(2 * probes).max(1),
            lease_validity_s: options.lease_validity_s,
            max_devices: options.max_devices,
            step_timeout: options.step_timeout,
            retry_every: options.retry_every,
            report_deadline: options.report_deadline,
            retire_after: options.retire_after.max(1),
            crash_after_journaled: options.crash_after_journaled,
        },
        client,
        identity,
        coordinator_key,
        journal,
        images,
        current_images,
        lease: resumed,
        pending: state.unreported,
        fixtures: fixtures
            .into_iter()
            .map(|(n, f)| (n, share_fixture(f)))
            .collect(),
        events: options.events.clone(),
        done,
    });
    let _addr = actix::Actor::start(supervisor);
    finished
        .await
        .map_err(|_| anyhow::anyhow!("the supervisor stopped without a summary"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease_with(key: &[u8]) -> v1::LeaseBody {
        v1::LeaseBody {
            lease_id: "lease-1".into(),
            vendor_public_key: key.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn the_vendor_key_comes_from_the_lease_and_a_pin_must_match() {
        let key = [7u8; 32];
        assert_eq!(lease_vendor_key(&lease_with(&key), None).unwrap(), key);
        assert_eq!(lease_vendor_key(&lease_with(&key), Some(key)).unwrap(), key);
        let err = lease_vendor_key(&lease_with(&key), Some([8u8; 32])).unwrap_err();
        assert!(err.to_string().contains("pinned"), "{err}");
        assert!(lease_vendor_key(&lease_with(&[7u8; 31]), None).is_err());
        // An older lease without the key: only the pin can stand in.
        assert!(lease_vendor_key(&lease_with(&[]), None).is_err());
        assert_eq!(lease_vendor_key(&lease_with(&[]), Some(key)).unwrap(), key);
    }
}
