//! A UDP flood at the data ingest, from 200 loopback source addresses, while stations lease
//! from the same coordinator process on a real etcd: leasing goes on during the flood, the
//! flood is refused (the ingest's counters say so), and the coordinator's memory stays bounded.
//! Figures (leases/s before and during, datagrams/s, RSS) are printed; the flood mixes random
//! bytes, records for unknown device ids, and forged records for registered devices under
//! random epochs (each a new key derivation unless bounded).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_coordinator::testing::operator_request;
use flashgate_proto::v1::{self, data_service_client::DataServiceClient};
use flashgate_protocol::data_stream::{self, RecordHeader, RecordKind};
use flashgate_tests::chaos::{seed, Race};
use flashgate_tests::replicas::{endpoint_for, wait_serving, Replicas};
use flashgate_tests::station_harness::{free_port, EtcdProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PHASE: Duration = Duration::from_secs(6);
const SOURCES: u8 = 200;
/// Datagrams per second, all sources together.
const FLOOD_RATE: u64 = 10_000;
/// Growth allowed over the flood: the ingest's caches are bounded by count (65,536 unknown ids,
/// 16,384 stream keys, 4,096 sources), far below this.
const RSS_GROWTH_LIMIT_KIB: u64 = 96 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// One datagram of the flood: random bytes, an unknown device, or a registered one under a
/// random epoch — none of them sealed under a real key.
fn datagram(rng: &mut StdRng, known: &[[u8; 16]], out: &mut [u8; 256]) -> usize {
    match rng.gen_range(0..3) {
        0 => {
            let len = rng.gen_range(1..200);
            rng.fill(&mut out[..len]);
            len
        }
        kind => {
            let device_id = match (kind, known.is_empty()) {
                (2, false) => data_stream::device_id(&known[rng.gen_range(0..known.len())]),
                _ => rng.gen(),
            };
            let header = RecordHeader {
                device_id,
                epoch: rng.gen(),
                counter: rng.gen(),
            };
            let key: [u8; 32] = rng.gen();
            data_stream::seal(&key, &header, RecordKind::Telemetry, b"flood", out)
                .expect("a record fits 256 bytes")
        }
    }
}

#[test]
fn a_udp_flood_from_many_sources_neither_stalls_leasing_nor_grows_the_coordinator() {
    let seed = seed("a_udp_flood_from_many_sources");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd = EtcdProcess::start();
    rt.block_on(etcd.store("flood-probe"));
    let udp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let replicas = Replicas::start(
        1,
        &format!("etcd:{}", etcd.url),
        &["--data-udp", &udp.to_string()],
    );
    let endpoint = replicas.endpoint(0);
    assert!(
        rt.block_on(wait_serving(&endpoint, Duration::from_secs(60)))
            .is_some(),
        "the coordinator did not serve"
    );
    let pid = replicas.pid(0).expect("the replica runs");
    let mut race = rt.block_on(Race::open_on(&replicas, 4, 10_000_000, seed));

    // Before: leasing alone.
    let leases = |race: &Race| race.ledger.lock().unwrap().leases.len();
    let start = leases(&race);
    std::thread::sleep(PHASE);
    let before = leases(&race) - start;
    let rss_before = rss_kib(pid);
    let known: Vec<[u8; 16]> = race
        .ledger
        .lock()
        .unwrap()
        .acknowledged
        .keys()
        .copied()
        .collect();

    // During: the flood, from SOURCES addresses of 127.0.0.0/8.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..2u64)
        .map(|t| {
            let (stop, sent, known) = (stop.clone(), sent.clone(), known.clone());
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed ^ (t + 1));
                let sockets: Vec<UdpSocket> = (0..SOURCES / 2)
                    .map(|i| {
                        let source = format!("127.0.0.{}:0", 2 + t as u8 * (SOURCES / 2) + i);
                        UdpSocket::bind(source).unwrap()
                    })
                    .collect();
                let mut buf = [0u8; 256];
                // Paced (a burst every 10 ms), so the flooders' own CPU does not starve the
                // coordinator and etcd of the 2 cores they share here.
                let per_tick = (FLOOD_RATE / 2 / 100) as usize;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    for socket in sockets.iter().cycle().take(per_tick) {
                        let len = datagram(&mut rng, &known, &mut buf);
                        if socket.send_to(&buf[..len], udp).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    next += Duration::from_millis(10);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            })
        })
        .collect();
    let flood_start = Instant::now();
    let start = leases(&race);
    let mut rss_peak = rss_before;
    while flood_start.elapsed() < PHASE {
        std::thread::sleep(Duration::from_millis(100));
        rss_peak = rss_peak.max(rss_kib(pid));
    }
    let during = leases(&race) - start;
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    let flood_secs = flood_start.elapsed().as_secs_f64();
    let sent = sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_kib(pid);
    rt.block_on(race.stop());

    let stats = rt.block_on(async {
        let channel = endpoint_for(&endpoint, None)
            .unwrap()
            .connect()
            .await
            .unwrap();
        DataServiceClient::new(channel)
            .get_ingest_stats(operator_request(
                &replicas.token,
                v1::GetIngestStatsRequest {},
            ))
            .await
            .unwrap()
            .into_inner()
    });
    let refused: u64 = stats.rejected.iter().map(|r| r.count).sum();
    let phase = PHASE.as_secs_f64();
    println!(
        "udp flood (seed {seed}): {sent} datagrams from {SOURCES} sources in {flood_secs:.1} s \
         ({:.0}/s); ingest refused {refused}, accepted {} — by reason: {}",
        sent as f64 / flood_secs,
        stats.accepted,
        stats
            .rejected
            .iter()
            .map(|r| format!("{} {}", r.reason, r.count))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  leases/s: {:.1} before, {:.1} during the flood ({:.2}×); coordinator RSS: {} KiB \
         before, {} KiB peak, {} KiB after (+{} KiB)",
        before as f64 / phase,
        during as f64 / phase,
        during as f64 / before.max(1) as f64,
        rss_before,
        rss_peak,
        rss_after,
        rss_peak.saturating_sub(rss_before)
    );
    assert!(before > 0, "no lease was granted before the flood");
    assert!(during > 0, "leasing stalled under the flood");
    assert_eq!(stats.accepted, 0, "a forged datagram was accepted");
    assert!(
        refused > 0 && refused <= sent,
        "the ingest counted {refused} refusals of {sent} datagrams"
    );
    assert!(
        rss_peak.saturating_sub(rss_before) < RSS_GROWTH_LIMIT_KIB,
        "the coordinator grew by {} KiB under the flood",
        rss_peak - rss_before
    );
}
