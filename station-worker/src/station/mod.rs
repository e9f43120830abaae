//! One run of the station (`flashgate-station run`): identity, the trust its enrolment bundle
//! left (CA, lease key, vendor keys: [`crate::enrolment`]), enrolment, journal replay (resume the open lease, re-send unsettled reports), one fixture
//! per probe, then the [`supervisor`] actor with one [`probe_actor`] per bay (`bays.rs`) until the order's
//! quota is spent, the requested number of devices is made or every probe is retired. What each
//! target goes through is the [`provisioning`](crate::provisioning) flow.

mod bays;
pub mod packages;
pub mod probe_actor;
pub mod supervisor;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;

pub use self::supervisor::{StopReason, Supervisor, SupervisorParts, SupervisorSettings};
use crate::config::ProbeSpec;
use crate::coordinator_client::CoordinatorClient;
use crate::enrolment::StationTrust;
use crate::events::{Event, EventFormat, EventSink, Summary};
use crate::fixture::{EmulatedFixture, TargetFixture};
use crate::identity::{StationIdentity, StationKek};
use crate::provisioning::journal::{Journal, JournalRecord, JournalState};
use crate::provisioning::{Lease, LoaderImage, ReleaseCache};

/// Everything one run needs.
pub struct StationOptions {
    /// Coordinator endpoint (`https://host:port`); empty: the one of the enrolment bundle.
    pub coordinator: String,
    /// Identity, journal, cached releases, emulated boards.
    pub state_dir: PathBuf,
    /// Seals the identity file.
    pub kek: StationKek,
    /// The order to work on (default: the first assigned one).
    pub order: Option<String>,
    /// Configured probes (GDB servers, USB probes).
    pub probes: Vec<ProbeSpec>,
    /// Emulated targets to add.
    pub emulate: usize,
    /// Fixtures brought by the program embedding the station (a line controller's own bays),
    /// after the configured and emulated ones. Each becomes one probe actor.
    pub fixtures: Vec<Box<dyn TargetFixture>>,
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
    /// Station name (enrolment).
    pub name: String,
    /// Factory (enrolment).
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
            fixtures: Vec::new(),
            loader: loader.into(),
            vendor_public: None,
            events: EventSink::new(EventFormat::Human),
            max_devices: None,
            lease_size: None,
            lease_validity_s: 0,
            step_timeout: Duration::from_secs(30),
            retry_every: Duration::from_millis(500),
            report_deadline: Duration::from_secs(30),
            retire_after: 3,
            name: "station".into(),
            factory: String::new(),
        }
    }
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
            enrolment_token: String::new(),
        })
        .await
}

/// Resumes the newest open lease of the journal that is still valid and has slots left; closes
/// the others (in the journal).
fn resume_lease(
    journal: &mut Journal,
    state: &JournalState,
    coordinator_key: &ed25519_dalek::VerifyingKey,
    identity: &StationIdentity,
) -> anyhow::Result<Option<Lease>> {
    let mut resumed: Option<Lease> = None;
    for (lease_id, encoded) in state.open_leases.iter().rev() {
        let used = state.installs_per_lease.get(lease_id).copied().unwrap_or(0);
        let opened = Lease::decode_journaled(encoded)
            .and_then(|signed| Lease::open(signed, coordinator_key, identity, now_ms(), used));
        let reason = match opened {
            Ok(lease) if resumed.is_none() && lease.ledger().free() > 0 => {
                resumed = Some(lease);
                continue;
            }
            Ok(lease) if lease.ledger().free() == 0 => "used up".to_owned(),
            Ok(_) => "superseded".to_owned(),
            Err(e) => e.to_string(),
        };
        journal.append(&JournalRecord::LeaseClosed {
            lease_id: lease_id.clone(),
            reason,
        })?;
    }
    Ok(resumed)
}

/// The probe fixtures of a run: configured probes, then emulated boards, then the embedder's.
fn fixtures(options: &mut StationOptions) -> anyhow::Result<Vec<Box<dyn TargetFixture>>> {
    let mut fixtures: Vec<Box<dyn TargetFixture>> = Vec::new();
    for spec in &options.probes {
        fixtures.push(crate::fixture::for_probe(spec)?);
    }
    for i in 0..options.emulate {
        let name = format!("emu-{i}");
        fixtures.push(Box::new(EmulatedFixture::new(
            name,
            options.state_dir.join("boards"),
        )));
    }
    fixtures.append(&mut options.fixtures);
    if fixtures.is_empty() {
        bail!("no probe: list probes in the configuration file or pass --emulate N");
    }
    Ok(fixtures)
}

/// Runs the station until it stops; blocking (starts its own actix system). Call it from a
/// plain thread, not from inside an async runtime.
pub fn run_station(options: StationOptions) -> anyhow::Result<Summary> {
    actix::System::new().block_on(run(options))
}

/// A station must pin the vendor key its releases verify under: without a pin it would install
/// whatever vendor key a lease names, so whoever writes the coordinator's store would choose
/// what the factory's boards trust.
#[derive(Debug, thiserror::Error)]
#[error(
    "this station pins no vendor key, so it would install whatever vendor key a lease names: \
     enrol it from a bundle that carries the vendor key (`flashgate station bundle --vendor-key HEX …`, \
     then `flashgate-station enrol --bundle FILE`), or give `--vendor-key HEX` \
     (`vendor_public_key` in the config)"
)]
pub struct NoVendorPin;

async fn run(mut options: StationOptions) -> anyhow::Result<Summary> {
    // Configuration first: a bad probe entry or loader fails before anything is sent.
    let fixtures = fixtures(&mut options)?;
    let loader = LoaderImage::from_file(&options.loader)
        .with_context(|| format!("flash loader {}", options.loader.display()))?;
    let identity = Arc::new(
        StationIdentity::load_or_create(&options.state_dir, &options.kek)
            .context("station identity")?,
    );
    let station_id = identity.station_id();
    let trust = StationTrust::load(&options.state_dir)?;
    let coordinator_key = trust
        .lease_key()
        .map_err(|e| anyhow::anyhow!("{}: {e}", crate::enrolment::TRUST_FILE))?;
    let mut pinned_vendors = trust
        .vendor_keys()
        .map_err(|e| anyhow::anyhow!("{}: {e}", crate::enrolment::TRUST_FILE))?;
    pinned_vendors.extend(options.vendor_public);
    if pinned_vendors.is_empty() {
        return Err(NoVendorPin.into());
    }
    let endpoint = if options.coordinator.is_empty() {
        trust.endpoint.clone()
    } else {
        options.coordinator.clone()
    };
    let client = CoordinatorClient::new(&endpoint, &trust.security(), identity.signer())?;
    match enrol(&client, &identity, &options.name, &options.factory).await {
        Ok(r) if r.state == v1::StationState::Approved as i32 => {}
        Ok(_) => bail!(
            "station {station_id} is enrolled but not approved: ask the operator to approve this fingerprint"
        ),
        Err(e) => tracing::warn!(error = %e.message(), "coordinator unreachable at start: working from the journal"),
    }

    let releases = ReleaseCache::new(
        options.state_dir.join("releases"),
        loader,
        pinned_vendors,
        identity.clone(),
    );
    let (mut journal, state) = Journal::open(&options.state_dir)?;
    let resumed = resume_lease(&mut journal, &state, &coordinator_key, &identity)?;

    let order_id = match (&options.order, &resumed) {
        (Some(order), _) => order.clone(),
        (None, Some(lease)) => lease.body().order_id.clone(),
        (None, None) => client
            .assigned_orders()
            .await
            .map_err(|e| anyhow::anyhow!("listing assigned orders: {}", e.message()))?
            .first()
            .map(|o| o.order_id.clone())
            .ok_or_else(|| anyhow::anyhow!("no order is assigned to station {station_id}"))?,
    };
    if let Some(lease) = &resumed {
        if lease.body().order_id != order_id {
            bail!(
                "the journal holds lease {} of order {}: finish it before working on {order_id}",
                lease.id(),
                lease.body().order_id
            );
        }
    }

    let names: Vec<String> = fixtures.iter().map(|f| f.name().to_owned()).collect();
    options.events.emit(Event::Started {
        station_id,
        order_id: order_id.clone(),
        probes: names.clone(),
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
        },
        issuer: Arc::new(crate::provisioning::CoordinatorIssuer::new(
            client.clone(),
            tokio::runtime::Handle::current(),
        )),
        client,
        identity,
        coordinator_key,
        journal,
        releases,
        lease: resumed,
        unreported: state.unreported,
        fixtures: names
            .into_iter()
            .zip(fixtures)
            .map(|(name, f)| (name, Arc::new(Mutex::new(f))))
            .collect(),
        events: options.events.clone(),
        done,
    });
    let _addr = actix::Actor::start(supervisor);
    finished
        .await
        .map_err(|_| anyhow::anyhow!("the supervisor stopped without a summary"))
}
