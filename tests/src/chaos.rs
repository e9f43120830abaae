//! The quota under chaos: stations racing for one order through coordinator replicas on a
//! faulty etcd cluster, what they saw (the [`Ledger`]), and the invariants checked against
//! the coordinator's own records afterwards ([`check_invariants`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashgate_proto::lease::verify_signed_lease;
use flashgate_proto::v1;
use flashgate_station::coordinator_client::{transient, CoordinatorClient};
use flashgate_station::identity::StationIdentity;
use rand::rngs::StdRng;
use rand::{Rng, RngCore};
use tonic::Code;

/// The run's seed: `FLASHGATE_CHAOS_SEED` (to replay a run), else a fresh one. Printed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("FLASHGATE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| rand::rngs::OsRng.next_u64());
    eprintln!(
        "chaos seed {seed} (replay: FLASHGATE_CHAOS_SEED={seed} cargo nextest run -p flashgate-tests -E 'test({test})')"
    );
    seed
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
            ledger
                .lock()
                .unwrap()
                .leases
                .insert(lease.lease_id.clone(), (station_id.clone(), lease.count));
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

    /// Reports one install, retrying on other replicas while the answer is lost.
    async fn report(&mut self, lease_id: &str, serial: [u8; 16], ledger: &Mutex<Ledger>) {
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
                failure_reason: String::new(),
            };
            match self.client().report_install(request).await {
                Ok(_) => {
                    ledger
                        .lock()
                        .unwrap()
                        .acknowledged
                        .insert(serial, lease_id.to_owned());
                    return;
                }
                // A retry that finds the serial registered: the lost answer's report landed.
                Err(s) if s.code() == Code::AlreadyExists => {
                    ledger
                        .lock()
                        .unwrap()
                        .acknowledged
                        .insert(serial, lease_id.to_owned());
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
