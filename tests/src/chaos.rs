//! The quota under chaos: stations racing for one order through coordinator replicas on a
//! faulty etcd cluster, what they saw (the [`Ledger`]), and the invariants checked against
//! the coordinator's own records afterwards ([`check_invariants`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashgate_coordinator::testing::operator_request;
use flashgate_proto::lease::verify_signed_lease;
use flashgate_proto::v1::{self, operator_service_client::OperatorServiceClient};
use flashgate_station::coordinator_client::{transient, CoordinatorClient};
use flashgate_station::identity::{StationIdentity, StationKek};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tonic::transport::Channel;
use tonic::Code;
use zeroize::Zeroizing;

/// The run's seed: `FLASHGATE_CHAOS_SEED` (to replay a run), else a fresh one. Printed.
pub fn seed(test: &str) -> u64 {
    seed_from("FLASHGATE_CHAOS_SEED", "chaos", test)
}

/// A test's seed: `$var` (to replay a run), else a fresh one; printed with the command that
/// replays `test`.
pub fn seed_from(var: &str, what: &str, test: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| rand::rngs::OsRng.next_u64());
    eprintln!(
        "{what} seed {seed} (replay: {var}={seed} cargo nextest run -p flashgate-tests -E 'test({test})')"
    );
    seed
}

/// The device key in an issuance answer, opened as the chip's loader would.
fn open_device_key(
    loader_secret: &x25519_dalek::StaticSecret,
    serial: &[u8; 16],
    issued: &v1::IssueDeviceCertificateResponse,
) -> Option<Zeroizing<[u8; 32]>> {
    use flashgate_protocol::certificate::DeviceCertificate;
    use flashgate_protocol::codec::Codec;
    let certificate = DeviceCertificate::read_bytes(&issued.certificate).ok()?;
    let sealed = issued.sealed_device_key.as_slice().try_into().ok()?;
    flashgate_protocol::device_key_transport::open(loader_secret, serial, &certificate, sealed).ok()
}

/// What the stations saw: leases granted to them, serials they made, reports acknowledged.
#[derive(Default)]
pub struct Ledger {
    /// Lease id → (station, slots granted), from the signed leases received.
    pub leases: HashMap<String, (String, u32)>,
    /// Every serial a station tried to report, with its lease.
    pub attempted: HashMap<[u8; 16], String>,
    /// Serials whose report was acknowledged (or found already registered on a retry).
    pub acknowledged: HashMap<[u8; 16], String>,
    /// The device key of each registered serial (its install report acknowledged), opened with
    /// the race's own loader secret as a flash loader would: what a genuine device seals its
    /// data records with.
    pub device_keys: HashMap<[u8; 16], Zeroizing<[u8; 32]>>,
    /// `RESOURCE_EXHAUSTED` answers to lease requests.
    pub exhausted: u64,
    /// When the first of them came.
    pub first_exhausted: Option<Instant>,
    /// Answers a station did not expect (`code: message`).
    pub unexpected: Vec<String>,
    /// Calls that failed for want of a coordinator (retried).
    pub transient: u64,
    /// Leases given back by `ReturnLease`.
    pub returned: u64,
    /// Per lease received: its `issued_at_ms` minus the station's clock (the granting
    /// replica's clock skew, plus the call's latency).
    pub issued_skew_ms: Vec<i64>,
}

/// A simulated station: the station crate's identity and signed client (real gRPC), one client
/// per replica, no boards. It takes leases, reports a random number of installs under each,
/// then returns the lease or abandons it to expiry.
pub struct RacingStation {
    /// Its identity.
    pub identity: StationIdentity,
    /// One client per replica.
    pub clients: Vec<CoordinatorClient>,
    /// Its random choices.
    pub rng: StdRng,
}

impl RacingStation {
    fn client(&mut self) -> CoordinatorClient {
        let i = self.rng.gen_range(0..self.clients.len());
        self.clients[i].clone()
    }

    /// Races until `stop`.
    pub async fn race(
        mut self,
        order_id: String,
        lease_key: ed25519_dalek::VerifyingKey,
        ledger: Arc<Mutex<Ledger>>,
        stop: Arc<AtomicBool>,
    ) {
        let station_id = self.identity.station_id();
        while !stop.load(Ordering::Relaxed) {
            let count = self.rng.gen_range(1..=6);
            let validity = self.rng.gen_range(2..=4);
            let signed = match self
                .client()
                .acquire_lease(&order_id, count, validity)
                .await
            {
                Ok(signed) => signed,
                Err(status) => {
                    {
                        let mut ledger = ledger.lock().unwrap();
                        if status.code() == Code::ResourceExhausted {
                            ledger.exhausted += 1;
                            ledger.first_exhausted.get_or_insert_with(Instant::now);
                        } else {
                            note(&mut ledger, &status);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let lease = verify_signed_lease(&signed, &lease_key).expect("leases verify");
            assert!(lease.count >= 1 && lease.count <= count, "{lease:?}");
            assert_eq!(lease.station_id, station_id);
            {
                let mut ledger = ledger.lock().unwrap();
                ledger
                    .leases
                    .insert(lease.lease_id.clone(), (station_id.clone(), lease.count));
                ledger
                    .issued_skew_ms
                    .push(lease.issued_at_ms - flashgate_proto::clock::now_ms());
            }
            let installs = self.rng.gen_range(0..=lease.count);
            for _ in 0..installs {
                let serial: [u8; 16] = self.rng.gen();
                ledger
                    .lock()
                    .unwrap()
                    .attempted
                    .insert(serial, lease.lease_id.clone());
                self.report(&lease.lease_id, serial, &ledger).await;
            }
            if self.rng.gen_bool(0.5) {
                for _ in 0..5 {
                    let answer = self.client().return_lease(&lease.lease_id).await;
                    match answer {
                        Ok(_) => {
                            ledger.lock().unwrap().returned += 1;
                            break;
                        }
                        Err(s) if transient(&s) => note(&mut ledger.lock().unwrap(), &s),
                        // Already ended (an earlier attempt landed, or it expired).
                        Err(s) if s.code() == Code::FailedPrecondition => break,
                        Err(s) => {
                            note(&mut ledger.lock().unwrap(), &s);
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Certifies one chip (the step that consumes its slot), then reports its install,
    /// retrying on other replicas while an answer is lost.
    async fn report(&mut self, lease_id: &str, serial: [u8; 16], ledger: &Mutex<Ledger>) {
        let loader_secret = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
        let loader = x25519_dalek::PublicKey::from(&loader_secret).to_bytes();
        let mut certified = None;
        for _ in 0..6 {
            match self
                .client()
                .issue_device_certificate(lease_id, &serial, &loader)
                .await
            {
                Ok(issued) => {
                    // A retry of a lost answer gets the same certificate (no second slot).
                    ledger
                        .lock()
                        .unwrap()
                        .acknowledged
                        .insert(serial, lease_id.to_owned());
                    certified = Some(open_device_key(&loader_secret, &serial, &issued));
                    break;
                }
                // The lease ended or is used up: no certificate, no device.
                Err(s)
                    if matches!(s.code(), Code::FailedPrecondition | Code::ResourceExhausted) =>
                {
                    return
                }
                Err(s) => {
                    note(&mut ledger.lock().unwrap(), &s);
                    if !transient(&s) {
                        return;
                    }
                }
            }
        }
        let Some(device_key) = certified else {
            return;
        };
        let registered = |ledger: &Mutex<Ledger>| {
            let mut ledger = ledger.lock().unwrap();
            ledger.acknowledged.insert(serial, lease_id.to_owned());
            if let Some(key) = &device_key {
                ledger.device_keys.insert(serial, key.clone());
            }
        };
        for _ in 0..6 {
            let request = v1::ReportInstallRequest {
                lease_id: lease_id.to_owned(),
                serial: serial.to_vec(),
                bootloader_version: 1,
                test_result: Some(v1::TestResult {
                    outcome: v1::TestOutcome::Pass as i32,
                    log: "ok".into(),
                }),
                outcome: v1::InstallOutcome::Provisioned as i32,
                installed_at_ms: flashgate_proto::clock::now_ms(),
                ..Default::default()
            };
            match self.client().report_install(request).await {
                Ok(_) => {
                    registered(ledger);
                    return;
                }
                // A retry that finds the serial registered: the lost answer's report landed.
                Err(s) if s.code() == Code::AlreadyExists => {
                    registered(ledger);
                    return;
                }
                // The lease ended (expired while the station waited) or is full: the device
                // is not counted, as a real station would journal it as unreported.
                Err(s) if s.code() == Code::FailedPrecondition => return,
                Err(s) => {
                    note(&mut ledger.lock().unwrap(), &s);
                    if !transient(&s) {
                        return;
                    }
                }
            }
        }
    }
}

fn note(ledger: &mut Ledger, status: &tonic::Status) {
    if transient(status) {
        ledger.transient += 1;
    } else {
        ledger
            .unexpected
            .push(format!("{:?}: {}", status.code(), status.message()));
    }
}

/// What the coordinator holds for the order at the end.
pub struct Final {
    /// Its status.
    pub status: v1::OrderStatus,
    /// Every lease of the order.
    pub leases: Vec<v1::LeaseInfo>,
    /// Every device registered under it.
    pub devices: Vec<v1::Device>,
}

/// The invariants of an exact quota, checked against what the stations saw. Returns every
/// violation (empty when all hold).
pub fn check_invariants(ordered: u64, end: &Final, ledger: &Ledger) -> Vec<String> {
    let mut bad = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            bad.push(what);
        }
    };
    let status = &end.status;
    let granted: u64 = end.leases.iter().map(|l| u64::from(l.count)).sum();
    let used: u64 = end.leases.iter().map(|l| u64::from(l.used)).sum();
    let released: u64 = end.leases.iter().map(|l| u64::from(l.released)).sum();
    check(
        granted == used + released,
        format!("granted {granted} != used {used} + released {released}"),
    );
    check(
        status.consumed + status.remaining == ordered,
        format!(
            "consumed {} + remaining {} != ordered {ordered}",
            status.consumed, status.remaining
        ),
    );
    check(
        status.reserved == 0 && status.active_leases == 0,
        format!(
            "{} slots still reserved by {} active leases",
            status.reserved, status.active_leases
        ),
    );
    check(
        end.devices.len() as u64 == status.consumed,
        format!(
            "registered {} != consumed {}",
            end.devices.len(),
            status.consumed
        ),
    );
    check(
        used == status.consumed,
        format!("Σ used {used} != consumed {}", status.consumed),
    );
    check(
        status.consumed <= ordered,
        format!("consumed {} > ordered {ordered}", status.consumed),
    );

    let mut serials = HashSet::new();
    let mut per_lease: BTreeMap<&str, u32> = BTreeMap::new();
    for device in &end.devices {
        let serial: [u8; 16] = device.serial.as_slice().try_into().unwrap_or([0; 16]);
        check(
            serials.insert(serial),
            format!("serial {} registered twice", hex::encode(serial)),
        );
        *per_lease.entry(device.lease_id.as_str()).or_default() += 1;
        check(
            ledger.attempted.get(&serial) == Some(&device.lease_id),
            format!(
                "serial {} registered under {} that no station reported there",
                hex::encode(serial),
                device.lease_id
            ),
        );
    }
    for (serial, lease) in &ledger.acknowledged {
        let registered = end
            .devices
            .iter()
            .any(|d| d.serial == serial && d.lease_id == *lease);
        check(
            registered,
            format!(
                "acknowledged serial {} is not registered",
                hex::encode(serial)
            ),
        );
    }
    let stored: HashMap<&str, &v1::LeaseInfo> = end
        .leases
        .iter()
        .map(|l| (l.lease_id.as_str(), l))
        .collect();
    check(
        stored.len() == end.leases.len(),
        "a lease id listed twice".into(),
    );
    for lease in &end.leases {
        check(
            lease.count == lease.used + lease.released,
            format!(
                "lease {}: count {} != used {} + released {}",
                lease.lease_id, lease.count, lease.used, lease.released
            ),
        );
        check(
            lease.state != v1::LeaseState::Active as i32,
            format!("lease {} still active", lease.lease_id),
        );
        let devices = per_lease.get(lease.lease_id.as_str()).copied().unwrap_or(0);
        check(
            devices == lease.used,
            format!(
                "lease {}: {devices} devices registered, used says {}",
                lease.lease_id, lease.used
            ),
        );
        if !ledger.leases.contains_key(&lease.lease_id) {
            // Granted, but the answer was lost with its replica: nothing may be used under it.
            check(
                lease.used == 0,
                format!(
                    "lease {} never reached a station but has {} used",
                    lease.lease_id, lease.used
                ),
            );
        }
    }
    for (id, (station, count)) in &ledger.leases {
        match stored.get(id.as_str()) {
            Some(l) => check(
                l.station_id == *station && l.count == *count,
                format!("lease {id} stored as {l:?}, granted to {station} for {count}"),
            ),
            None => check(false, format!("lease {id} granted but not stored")),
        }
    }
    for lease_id in per_lease.keys() {
        check(
            stored.contains_key(lease_id),
            format!("devices registered under unknown lease {lease_id}"),
        );
    }
    bad
}

/// An operator client of `endpoint` (short timeouts: a replica may be down).
pub async fn operator(endpoint: &str) -> Option<OperatorServiceClient<Channel>> {
    let channel = crate::replicas::endpoint_for(endpoint, None)?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .ok()?;
    Some(OperatorServiceClient::new(channel))
}

/// The order's status from the first of `endpoints` that answers.
pub async fn order_status(
    endpoints: &[String],
    token: &str,
    order_id: &str,
) -> Option<v1::OrderStatus> {
    for endpoint in endpoints {
        let Some(mut op) = operator(endpoint).await else {
            continue;
        };
        let request = v1::GetOrderStatusRequest {
            order_id: order_id.to_owned(),
        };
        if let Ok(s) = op.get_order_status(operator_request(token, request)).await {
            return Some(s.into_inner());
        }
    }
    None
}

/// Stations racing for one order (see [`Race::open`]).
pub struct Race {
    /// The order.
    pub order_id: String,
    /// What the stations saw.
    pub ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _state_dirs: Vec<tempfile::TempDir>,
}

impl Race {
    /// [`Race::open`] through every replica of `replicas`, with their token and lease key.
    pub async fn open_on(
        replicas: &crate::replicas::Replicas,
        stations: usize,
        count: u64,
        seed: u64,
    ) -> Self {
        let key = replicas.signing.verifying_key();
        Self::open(
            &replicas.endpoints(),
            &replicas.token,
            key,
            stations,
            count,
            seed,
        )
        .await
    }

    /// A product and release, `stations` enrolled and approved stations (each with a client
    /// per endpoint), an order of `count` for them; the stations start racing.
    pub async fn open(
        endpoints: &[String],
        token: &str,
        lease_key: ed25519_dalek::VerifyingKey,
        stations: usize,
        count: u64,
        seed: u64,
    ) -> Self {
        const PRODUCT: u32 = 51;
        let mut op = operator(&endpoints[0]).await.expect("operator client");
        let vendor = crate::Vendor::new(PRODUCT);
        let product = op
            .create_product(operator_request(
                token,
                v1::CreateProductRequest {
                    product_id: PRODUCT,
                    name: "chaos board".into(),
                    vendor_public_key: vendor.public().to_vec(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let anchors = flashgate_protocol::trust_anchors::TrustAnchors {
            vendor_public: vendor.public(),
            authority_public: product.authority_public_key.as_slice().try_into().unwrap(),
        };
        let image = vendor.sign_bootloader_pinning(
            &flashgate_protocol::trust_anchors::pinning(b"chaos bootloader", &anchors),
            1,
            &anchors,
        );
        let release = op
            .upload_release(operator_request(token, v1::UploadReleaseRequest { image }))
            .await
            .unwrap()
            .into_inner();
        let state_dirs: Vec<tempfile::TempDir> = (0..stations)
            .map(|_| tempfile::tempdir().unwrap())
            .collect();
        let mut racers = Vec::new();
        for (i, dir) in state_dirs.iter().enumerate() {
            let identity =
                StationIdentity::load_or_create(dir.path(), &StationKek::generate()).unwrap();
            let clients: Vec<CoordinatorClient> = endpoints
                .iter()
                .map(|e| {
                    CoordinatorClient::new(e, &crate::replicas::security(), identity.signer())
                        .unwrap()
                })
                .collect();
            flashgate_station::station::enrol(
                &clients[i % clients.len()],
                &identity,
                "chaos",
                "f1",
            )
            .await
            .expect("enrol");
            op.approve_station(operator_request(
                token,
                v1::ApproveStationRequest {
                    station_id: identity.station_id(),
                },
            ))
            .await
            .unwrap();
            racers.push(RacingStation {
                identity,
                clients,
                rng: StdRng::seed_from_u64(seed.wrapping_add(1 + i as u64)),
            });
        }
        let order = op
            .create_order(operator_request(
                token,
                v1::CreateOrderRequest {
                    product_id: PRODUCT,
                    bootloader_digest: release.digest,
                    station_ids: racers.iter().map(|s| s.identity.station_id()).collect(),
                    factory: "f1".into(),
                    count,
                    order_id: "chaos-order".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = racers
            .into_iter()
            .map(|s| {
                tokio::spawn(s.race(
                    order.order_id.clone(),
                    lease_key,
                    ledger.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Self {
            order_id: order.order_id,
            ledger,
            stop,
            tasks,
            _state_dirs: state_dirs,
        }
    }

    /// Stops the stations and waits for them.
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks.drain(..) {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("a station hung")
                .expect("a station panicked");
        }
    }

    /// Once every lease has ended (returned or expired), the coordinator's records of the
    /// order, read through `endpoints`.
    pub async fn settle(&self, endpoints: &[String], token: &str, limit: Duration) -> Final {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = order_status(endpoints, token, &self.order_id).await {
                if s.active_leases == 0 {
                    break s;
                }
            }
            assert!(Instant::now() < deadline, "leases never all ended");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let mut op = operator(&endpoints[0]).await.expect("operator client");
        let devices = op
            .list_devices(operator_request(
                token,
                v1::ListDevicesRequest {
                    order_id: self.order_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .devices;
        let leases = op
            .list_leases(operator_request(
                token,
                v1::ListLeasesRequest {
                    order_id: self.order_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .leases;
        Final {
            status,
            leases,
            devices,
        }
    }
}

/// Panics with every broken invariant ([`check_invariants`]) or unexpected answer of a run.
pub fn assert_exact(ordered: u64, end: &Final, ledger: &Ledger, seed: u64) {
    let violations = check_invariants(ordered, end, ledger);
    assert!(
        violations.is_empty(),
        "invariants broken (seed {seed}):\n  {}",
        violations.join("\n  ")
    );
    assert!(
        ledger.unexpected.is_empty(),
        "unexpected answers (seed {seed}): {:?}",
        ledger.unexpected
    );
}
