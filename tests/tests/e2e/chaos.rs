//! The exact quota under chaos: a three-member etcd cluster (real processes, a fault proxy on
//! every link), three `flashgate-coordinator` replicas (real processes) and sixteen stations
//! racing for one order through the real gRPC quota path, while members are killed and
//! restarted, paused, cut off, slowed, and replicas SIGKILLed and restarted (each checked to
//! serve again). The order is sized to run out during the faults, and the run asserts it did.
//! Afterwards every invariant of `coordinator/src/provisioning/quota.rs` is checked against
//! what the stations saw (`flashgate_tests::chaos::check_invariants`).
//!
//! Seeded: the seed is printed; `FLASHGATE_CHAOS_SEED=N` replays the same fault schedule and
//! station choices (timing still varies). A longer soak:
//! `FLASHGATE_CHAOS_SOAK_SECS=600 cargo nextest run -p flashgate-tests --run-ignored only -E 'test(chaos_soak)'`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flashgate_proto::v1;
use flashgate_tests::chaos::{assert_exact, order_status, seed, Race};
use flashgate_tests::etcd_cluster::EtcdCluster;
use flashgate_tests::fault_proxy::Fault;
use flashgate_tests::replicas::{wait_serving, Replicas};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STATIONS: usize = 16;
const REPLICAS: usize = 3;
const MEMBERS: usize = 3;

/// How big and how long one run is.
struct Size {
    order: u64,
    /// Faults go on at least this long, and until the order has run out.
    min_faults: Duration,
    /// The order must run out within this.
    max_faults: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_three_etcd_members_runs_the_order_out_and_the_count_stays_exact() {
    run(
        "chaos_on_three_etcd_members",
        Size {
            order: 240,
            min_faults: Duration::from_secs(20),
            max_faults: Duration::from_secs(150),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak: FLASHGATE_CHAOS_SOAK_SECS (default 600) of faults"]
async fn chaos_soak() {
    let secs = std::env::var("FLASHGATE_CHAOS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    run(
        "chaos_soak",
        Size {
            order: 40 * secs,
            min_faults: Duration::from_secs(secs),
            max_faults: Duration::from_secs(secs * 3),
        },
    )
    .await;
}

#[derive(Clone, Copy, Debug)]
enum Action {
    KillMember,
    PauseMember,
    BlackholeMember,
    DropMember,
    DelayMember,
    /// Two members paused at once: no quorum for a moment.
    LoseQuorum,
    KillReplica,
}

const ACTIONS: [Action; 7] = [
    Action::KillMember,
    Action::PauseMember,
    Action::BlackholeMember,
    Action::DropMember,
    Action::DelayMember,
    Action::LoseQuorum,
    Action::KillReplica,
];

async fn run(test: &str, size: Size) {
    let seed = seed(test);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut etcd = EtcdCluster::start(MEMBERS).await;
    let store = format!("etcd:{}", etcd.client_urls().join(","));
    let mut replicas = Replicas::start(
        REPLICAS,
        &store,
        &[
            "--etcd-namespace",
            "/chaos/",
            "--report-grace-secs",
            "1",
            "--sweep-secs",
            "1",
        ],
    );
    for i in 0..REPLICAS {
        wait_serving(&replicas.endpoint(i), Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("replica {i} never served"));
    }
    let endpoints: Vec<String> = (0..REPLICAS).map(|i| replicas.endpoint(i)).collect();
    let token = replicas.token.clone();
    let mut race = Race::open_on(&replicas, STATIONS, size.order, seed).await;
    let ledger = race.ledger.clone();

    // The faults, one at a time on the cluster (a replica kill may come on top), until the
    // order has run out and the minimum time has passed.
    let faults_started = Instant::now();
    let mut injected: BTreeMap<String, u32> = BTreeMap::new();
    let mut restarts = Vec::new();
    let mut ran_out_at = None;
    loop {
        let elapsed = faults_started.elapsed();
        if ran_out_at.is_none() {
            if let Some(s) = order_status(&endpoints, &token, &race.order_id).await {
                if s.consumed >= size.order {
                    ran_out_at = Some(elapsed);
                }
            }
        }
        if ran_out_at.is_some() && elapsed >= size.min_faults {
            break;
        }
        assert!(
            elapsed < size.max_faults,
            "the order did not run out in {:?} of faults (seed {seed}); etcd logs in {}, replica logs in {}",
            size.max_faults,
            etcd.log_dir().display(),
            replicas.log_dir().display()
        );
        for i in 0..REPLICAS {
            if replicas.revive_if_exited(i) {
                *injected
                    .entry("replica exited by itself, restarted".into())
                    .or_default() += 1;
            }
        }
        let action = ACTIONS[rng.gen_range(0..ACTIONS.len())];
        let member = rng.gen_range(0..MEMBERS);
        let hold = Duration::from_millis(rng.gen_range(500..2500));
        *injected.entry(format!("{action:?}")).or_default() += 1;
        match action {
            Action::KillMember => {
                etcd.kill(member);
                tokio::time::sleep(hold).await;
                etcd.restart(member);
            }
            Action::PauseMember => {
                etcd.pause(member);
                tokio::time::sleep(hold).await;
                etcd.resume(member);
            }
            Action::BlackholeMember | Action::DropMember | Action::DelayMember => {
                let fault = match action {
                    Action::BlackholeMember => Fault::Blackhole,
                    Action::DropMember => Fault::Drop,
                    _ => Fault::Delay(Duration::from_millis(rng.gen_range(20..200))),
                };
                etcd.isolate(member, fault);
                tokio::time::sleep(hold).await;
                etcd.heal_member(member);
            }
            Action::LoseQuorum => {
                let other = (member + 1) % MEMBERS;
                etcd.pause(member);
                etcd.pause(other);
                tokio::time::sleep(hold / 2).await;
                etcd.resume(member);
                etcd.resume(other);
            }
            Action::KillReplica => {
                let victim = rng.gen_range(0..REPLICAS);
                replicas.restart(victim);
                let endpoint = replicas.endpoint(victim);
                restarts.push((
                    victim,
                    tokio::spawn(
                        async move { wait_serving(&endpoint, Duration::from_secs(60)).await },
                    ),
                ));
                tokio::time::sleep(hold / 2).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..600))).await;
    }
    let fault_time = faults_started.elapsed();
    let first_exhausted = ledger.lock().unwrap().first_exhausted;
    etcd.heal();
    race.stop().await;

    // Every restarted replica served again.
    let mut back_in = Vec::new();
    for (victim, wait) in restarts {
        let took = wait.await.unwrap();
        assert!(
            took.is_some(),
            "replica {victim} did not serve within 60 s of its restart; logs in {}",
            replicas.log_dir().display()
        );
        back_in.push(took.unwrap());
    }
    for i in 0..REPLICAS {
        replicas.revive_if_exited(i);
        assert!(
            wait_serving(&replicas.endpoint(i), Duration::from_secs(60))
                .await
                .is_some(),
            "replica {i} does not serve after the run"
        );
    }

    // Every lease ended (returned or expired: validity ≤ 4 s, grace 1 s, sweep 1 s).
    let end = race
        .settle(&endpoints, &token, Duration::from_secs(60))
        .await;
    let ledger = ledger.lock().unwrap();
    let max_back_in = back_in.iter().max().copied().unwrap_or_default();
    eprintln!(
        "chaos seed {seed}: {:.1?} of faults {injected:?}; order of {} ran out after {:.1?} \
         (first RESOURCE_EXHAUSTED at {:.1?}, {} in all); {} leases ({} received, {} returned, \
         {} by expiry), {} devices, {} acknowledged reports, {} transient errors retried; \
         {} replica restarts, slowest back in {:.1?}; whole test {:.1?}",
        fault_time,
        size.order,
        ran_out_at.unwrap_or_default(),
        first_exhausted
            .map(|t| t - faults_started)
            .unwrap_or_default(),
        ledger.exhausted,
        end.leases.len(),
        ledger.leases.len(),
        ledger.returned,
        end.leases
            .iter()
            .filter(|l| l.state == v1::LeaseState::Expired as i32)
            .count(),
        end.devices.len(),
        ledger.acknowledged.len(),
        ledger.transient,
        back_in.len(),
        max_back_in,
        started.elapsed()
    );
    assert_exact(size.order, &end, &ledger, seed);
    // The limit was reached while the faults went on, not after.
    assert_eq!(end.status.consumed, size.order, "the order ran out");
    assert!(
        first_exhausted.is_some_and(|t| t - faults_started < fault_time),
        "no lease request was refused for want of quota during the faults"
    );
    assert!(injected.values().sum::<u32>() >= 10, "{injected:?}");
    assert!(!back_in.is_empty(), "no replica was killed: {injected:?}");
}

/// The embedded-store coordinator SIGKILLed again and again under a write load (eight stations
/// acquiring, reporting, returning): each time the store opens again and the replica serves,
/// and at the end nothing acknowledged is lost — every lease a station received is stored,
/// every acknowledged report registered — and every quota invariant holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_embedded_store_coordinator_sigkilled_mid_write_loses_nothing_acknowledged() {
    const KILLS: usize = 15;
    const ORDER: u64 = 400;
    let seed = seed("chaos_embedded_store_coordinator_sigkilled");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("embedded:{}", dir.path().join("store").display());
    let mut replicas = Replicas::start(
        1,
        &store,
        &["--report-grace-secs", "1", "--sweep-secs", "1"],
    );
    wait_serving(&replicas.endpoint(0), Duration::from_secs(60))
        .await
        .expect("the coordinator serves");
    let endpoints = vec![replicas.endpoint(0)];
    let token = replicas.token.clone();
    let mut race = Race::open_on(&replicas, 8, ORDER, seed).await;
    let mut back_in = Vec::new();
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1200))).await;
        replicas.restart(0);
        let took = wait_serving(&replicas.endpoint(0), Duration::from_secs(30))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "kill {kill}: the store did not open again (seed {seed}); log in {}",
                    replicas.log_dir().display()
                )
            });
        back_in.push(took);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    race.stop().await;
    let end = race
        .settle(&endpoints, &token, Duration::from_secs(60))
        .await;
    let ledger = race.ledger.lock().unwrap();
    let log = std::fs::read_to_string(replicas.log_dir().join("replica0.log")).unwrap_or_default();
    let torn = log.matches("cut off a torn record").count();
    eprintln!(
        "embedded store (seed {seed}): {KILLS} SIGKILLs under load, {torn} of them tore a record \
         (cut at replay), slowest back in {:.1?}; {} leases ({} received), {} devices, {} \
         acknowledged reports, {} transient errors retried, order {ORDER}: consumed {}, \
         remaining {}; {:.1?}",
        back_in.iter().max().copied().unwrap_or_default(),
        end.leases.len(),
        ledger.leases.len(),
        end.devices.len(),
        ledger.acknowledged.len(),
        ledger.transient,
        end.status.consumed,
        end.status.remaining,
        started.elapsed()
    );
    assert_exact(ORDER, &end, &ledger, seed);
    assert!(
        ledger.acknowledged.len() > 50 && ledger.transient > 0,
        "the load was too light to mean anything"
    );
}

/// Three replicas whose clocks disagree by ±20 s (libfaketime), on one etcd, eight stations
/// racing with short leases (2–4 s) while the replicas are killed and restarted, so leases are
/// issued, checked and expired by different clocks and the housekeeping leader changes. No
/// slot is granted twice (every quota invariant holds), no device is registered with an
/// install time past its lease's deadline, and every lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_skewed_replica_clocks_grant_nothing_twice_and_honour_lease_expiry() {
    const SKEW_SECS: [i64; 3] = [-20, 0, 20];
    const ORDER: u64 = 300;
    let seed = seed("chaos_skewed_replica_clocks");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let etcd = EtcdCluster::start(1).await;
    let store = format!("etcd:{}", etcd.client_urls().join(","));
    let mut replicas = Replicas::start_skewed(
        &SKEW_SECS,
        &store,
        &[
            "--etcd-namespace",
            "/skew/",
            "--report-grace-secs",
            "1",
            "--sweep-secs",
            "1",
        ],
    );
    let endpoints: Vec<String> = (0..SKEW_SECS.len()).map(|i| replicas.endpoint(i)).collect();
    for endpoint in &endpoints {
        wait_serving(endpoint, Duration::from_secs(60))
            .await
            .expect("a replica serves");
    }
    let token = replicas.token.clone();
    let mut race = Race::open_on(&replicas, 8, ORDER, seed).await;
    let mut kills = Vec::new();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(2000..4000))).await;
        let victim = rng.gen_range(0..SKEW_SECS.len());
        replicas.restart(victim);
        wait_serving(&endpoints[victim], Duration::from_secs(60))
            .await
            .expect("a restarted replica serves");
        kills.push(victim);
    }
    race.stop().await;
    let end = race
        .settle(&endpoints, &token, Duration::from_secs(90))
        .await;
    let ledger = race.ledger.lock().unwrap();
    let (min_skew, max_skew) = ledger
        .issued_skew_ms
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
    let late: Vec<&v1::Device> = end
        .devices
        .iter()
        .filter(|d| {
            end.leases
                .iter()
                .find(|l| l.lease_id == d.lease_id)
                .is_none_or(|l| d.installed_at_ms > l.not_after_ms)
        })
        .collect();
    eprintln!(
        "skewed clocks (seed {seed}): replicas at {SKEW_SECS:?} s, lease issue times seen from \
         {min_skew} to {max_skew} ms off the stations' clock; replicas killed {kills:?}; {} \
         leases ({} expired), {} devices, order {ORDER}: consumed {}, remaining {}; {:.1?}",
        end.leases.len(),
        end.leases
            .iter()
            .filter(|l| l.state == v1::LeaseState::Expired as i32)
            .count(),
        end.devices.len(),
        end.status.consumed,
        end.status.remaining,
        started.elapsed()
    );
    assert!(
        min_skew < -15_000 && max_skew > 15_000,
        "the replicas' clocks were not skewed (libfaketime not applied?)"
    );
    assert_exact(ORDER, &end, &ledger, seed);
    assert!(
        late.is_empty(),
        "devices registered after their lease's deadline: {late:?}"
    );
    assert!(end.devices.len() > 20, "the race did too little");
}
