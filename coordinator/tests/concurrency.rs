//! Three coordinator processes on one etcd, sixteen simulated stations acquiring, reporting and
//! returning (or abandoning) leases at random while replicas are SIGKILLed and restarted. At the
//! end: registry count == consumed quota, never above the order, and no slot lost once every
//! lease has been returned or has expired.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use flashgate_coordinator::testing::operator_request;
use flashgate_proto::lease::verify_signed_lease;
use flashgate_proto::v1::{self, operator_service_client::OperatorServiceClient};
use rand::Rng;
use rand_core::OsRng;
use tonic::Code;

use crate::support::{
    channel, free_port, loopback_tls, now_ms, product_with_bootloader, random_serial, EtcdProcess,
    SimStation,
};

const TOKEN: &str = "concurrency-token";
const ORDER_COUNT: u64 = 400;

struct Replica {
    child: Option<Child>,
    port: u16,
}

struct Cluster {
    replicas: Vec<Replica>,
    etcd_url: String,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn spawn(&self, port: u16) -> Child {
        Command::new(env!("CARGO_BIN_EXE_flashgate-coordinator"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--store", &format!("etcd:{}", self.etcd_url)])
            .args(["--etcd-namespace", "/race/"])
            .arg("--kek-file")
            .arg(self.dir.path().join("kek"))
            .arg("--signing-key-file")
            .arg(self.dir.path().join("signing"))
            .arg("--operator-token-file")
            .arg(self.dir.path().join("token"))
            .arg("--tls-cert")
            .arg(self.dir.path().join("server.pem"))
            .arg("--tls-key")
            .arg(self.dir.path().join("server.key"))
            .args(["--report-grace-secs", "1", "--sweep-secs", "1"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("coordinator binary starts")
    }

    fn endpoint(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.replicas[i].port)
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.replicas[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self, i: usize) {
        self.kill(i);
        let child = self.spawn(self.replicas[i].port);
        self.replicas[i].child = Some(child);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            self.kill(i);
        }
    }
}

async fn operator(endpoint: &str, ca: &str) -> OperatorServiceClient<tonic::transport::Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(channel) = channel(endpoint, ca, None).await {
            return OperatorServiceClient::new(channel);
        }
        assert!(
            Instant::now() < deadline,
            "coordinator at {endpoint} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_stations_race_and_the_count_stays_exact() {
    let etcd = EtcdProcess::start();
    etcd.store("/race/").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kek"), hex::encode([0x11u8; 32])).unwrap();
    let signing = SigningKey::generate(&mut OsRng);
    std::fs::write(dir.path().join("signing"), hex::encode(signing.to_bytes())).unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let ca = loopback_tls(dir.path());
    let mut cluster = Cluster {
        replicas: (0..3)
            .map(|_| Replica {
                child: None,
                port: free_port(),
            })
            .collect(),
        etcd_url: etcd.url.clone(),
        dir,
    };
    for i in 0..3 {
        cluster.restart(i);
    }
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();

    // Catalogue, order, 16 approved stations.
    let mut op = operator(&endpoints[0], &ca).await;
    let (_vendor, release) = product_with_bootloader(&mut op, TOKEN, 42).await;
    let order = op
        .create_order(operator_request(
            TOKEN,
            v1::CreateOrderRequest {
                product_id: 42,
                bootloader_digest: release.digest,
                factory: "f1".into(),
                count: ORDER_COUNT,
                order_id: "race-order".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut stations = Vec::new();
    for i in 0..16 {
        let mut station = SimStation::connect(&endpoints[i % 3], &ca).await;
        station.enrol().await.unwrap();
        op.approve_station(operator_request(
            TOKEN,
            v1::ApproveStationRequest {
                station_id: station.id(),
            },
        ))
        .await
        .unwrap();
        stations.push(station);
    }
    let coordinator_key = signing.verifying_key();

    // The race.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut station in stations {
        let endpoints = endpoints.clone();
        let ca = ca.clone();
        let stop = stop.clone();
        let acknowledged = acknowledged.clone();
        let order_id = order.order_id.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (pick, count, validity) = {
                    let mut rng = rand::thread_rng();
                    (rng.gen_range(0..3), rng.gen_range(1..=8u32), rng.gen_range(1..=3u32))
                };
                if let Ok(channel) = channel(&endpoints[pick], &ca, Some(&station.signing_key)).await {
                    station.client = flashgate_proto::v1::station_service_client::StationServiceClient::new(channel);
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let signed = match station.acquire(&order_id, count, validity).await {
                    Ok(signed) => signed,
                    Err(status) => {
                        assert!(
                            matches!(status.code(), Code::ResourceExhausted | Code::Unavailable | Code::Unknown | Code::Cancelled),
                            "unexpected refusal: {status:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let lease = verify_signed_lease(&signed, &coordinator_key).expect("leases verify");
                assert!(lease.count <= count);
                let installs = rand::thread_rng().gen_range(0..=lease.count);
                for _ in 0..installs {
                    let serial = random_serial();
                    // A report whose answer was lost to a killed replica is retried; the retry
                    // may find the serial already registered.
                    for _ in 0..5 {
                        match station.report(&lease.lease_id, serial, now_ms()).await {
                            Ok(_) => {
                                acknowledged.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(s) if s.code() == Code::AlreadyExists => break,
                            Err(s) if s.code() == Code::FailedPrecondition => break,
                            Err(_) => {
                                let pick = rand::thread_rng().gen_range(0..3);
                                if let Ok(c) = channel(&endpoints[pick], &ca, Some(&station.signing_key)).await {
                                    station.client = flashgate_proto::v1::station_service_client::StationServiceClient::new(c);
                                }
                            }
                        }
                    }
                }
                // Return about half of the leases; abandon the rest to expiry.
                if rand::random::<bool>() {
                    let _ = station.return_lease(&lease.lease_id).await;
                }
            }
        }));
    }

    // Kill and restart replicas while the stations work.
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let victim = rand::thread_rng().gen_range(0..3);
        cluster.restart(victim);
        kills += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a station task panicked");
    }
    assert!(kills >= 5);

    // Wait for every lease to be returned or expired (validity ≤ 3 s, grace 1 s, sweep 1 s).
    let mut op = operator(&endpoints[0], &ca).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(status) = op
            .get_order_status(operator_request(
                TOKEN,
                v1::GetOrderStatusRequest {
                    order_id: order.order_id.clone(),
                },
            ))
            .await
        {
            let status = status.into_inner();
            if status.active_leases == 0 {
                break status;
            }
        }
        assert!(Instant::now() < deadline, "leases never all ended");
        tokio::time::sleep(Duration::from_millis(300)).await;
        op = operator(&endpoints[0], &ca).await;
    };
    let devices = op
        .list_devices(operator_request(
            TOKEN,
            v1::ListDevicesRequest {
                order_id: order.order_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .devices;
    let leases = op
        .list_leases(operator_request(
            TOKEN,
            v1::ListLeasesRequest {
                order_id: order.order_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .leases;
    let used: u64 = leases.iter().map(|l| u64::from(l.used)).sum();
    let released: u64 = leases.iter().map(|l| u64::from(l.released)).sum();
    let granted: u64 = leases.iter().map(|l| u64::from(l.count)).sum();
    eprintln!(
        "race: {} leases, {} devices, {} acknowledged reports, {} remaining, {} replica restarts",
        leases.len(),
        devices.len(),
        acknowledged.load(Ordering::Relaxed),
        status.remaining,
        kills
    );
    assert!(
        leases.len() > 20,
        "the race did too little to mean anything"
    );
    assert_eq!(status.reserved, 0);
    assert_eq!(
        devices.len() as u64,
        status.consumed,
        "registry count == consumed quota"
    );
    assert_eq!(used, status.consumed);
    assert!(status.consumed <= ORDER_COUNT, "never exceeds the order");
    assert!(
        acknowledged.load(Ordering::Relaxed) <= status.consumed,
        "every acknowledged report is registered"
    );
    assert_eq!(
        status.consumed + status.remaining,
        ORDER_COUNT,
        "no slot lost or duplicated"
    );
    assert_eq!(
        granted,
        used + released,
        "each lease's unused slots came back exactly once"
    );
    for lease in &leases {
        assert!(lease.used <= lease.count);
        assert_ne!(lease.state, v1::LeaseState::Active as i32);
    }
}
