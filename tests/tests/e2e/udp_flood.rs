//! A UDP flood at the data ingest, from 200 loopback source addresses, while stations lease
//! from the same coordinator process on a real etcd: leasing goes on during the flood, the
//! flood is refused (the ingest's counters say so), genuine records keep being accepted, and
//! the coordinator's memory stays bounded. Figures (leases/s before and during, genuine records
//! accepted per second without and with the flood, datagrams/s, RSS) are printed; the flood
//! mixes random bytes, records for unknown device ids, and forged records for registered
//! devices under random epochs (each a new key derivation unless bounded).
//!
//! The genuine records come from devices the stations certified: the race opens each device
//! key with its own loader secret, as a flash loader does, and seals v2 records with it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_coordinator::testing::operator_request;
use flashgate_proto::v1::{self, data_service_client::DataServiceClient};
use flashgate_protocol::data_stream::{self, CompactHeader, RecordHeader, RecordKind};
use flashgate_tests::chaos::{seed, Race};
use flashgate_tests::replicas::{endpoint_for, wait_serving, Replicas};
use flashgate_tests::station_harness::{free_port, EtcdProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PHASE: Duration = Duration::from_secs(6);
/// Genuine records per second, all genuine devices together (from their own source address).
const GENUINE_RATE: u64 = 100;
const GENUINE_DEVICES: usize = 4;
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

/// Sends sealed records of `devices` (serial, device key) from 127.0.0.250 at [`GENUINE_RATE`]
/// until `stop`; counters continue from `next` (one per device), so each record is fresh.
fn genuine_sender(
    devices: Arc<Vec<([u8; 16], [u8; 32])>>,
    next: Arc<Vec<AtomicU64>>,
    udp: SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.250:0").unwrap();
        let keys: Vec<_> = devices
            .iter()
            .map(|(_, key)| data_stream::epoch_key(key, data_stream::Direction::Up, 0))
            .collect();
        let mut out = [0u8; 64];
        let mut next_at = Instant::now();
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let d = i % devices.len();
            let counter = next[d].fetch_add(1, Ordering::Relaxed) as u32;
            let header =
                CompactHeader::new(&devices[d].0, 0, counter, RecordKind::Telemetry).unwrap();
            let len = data_stream::seal_compact(&keys[d], &header, b"genuine", &mut out).unwrap();
            if socket.send_to(&out[..len], udp).is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            i += 1;
            next_at += Duration::from_micros(1_000_000 / GENUINE_RATE);
            std::thread::sleep(next_at.saturating_duration_since(Instant::now()));
        }
    })
}

/// `read()` once it reaches `target`, or once it stops changing (three reads 200 ms apart),
/// at most 15 s after the call: the ingest counts a record when its batch is stored, which on
/// loaded cores can be a while after the datagram was read.
fn settled(target: Option<u64>, mut read: impl FnMut() -> u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut last, mut same) = (read(), 0);
    while Some(last) != target && same < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = read();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// The ingest's counters, read over the operator API.
fn ingest_stats(rt: &tokio::runtime::Runtime, endpoint: &str, token: &str) -> v1::IngestStats {
    rt.block_on(async {
        let channel = endpoint_for(endpoint, None)
            .unwrap()
            .connect()
            .await
            .unwrap();
        DataServiceClient::new(channel)
            .get_ingest_stats(operator_request(token, v1::GetIngestStatsRequest {}))
            .await
            .unwrap()
            .into_inner()
    })
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
    let known: Vec<[u8; 16]> = race
        .ledger
        .lock()
        .unwrap()
        .acknowledged
        .keys()
        .copied()
        .collect();
    let genuine: Arc<Vec<([u8; 16], [u8; 32])>> = Arc::new(
        race.ledger
            .lock()
            .unwrap()
            .device_keys
            .iter()
            .take(GENUINE_DEVICES)
            .map(|(serial, key)| (*serial, **key))
            .collect(),
    );
    assert!(!genuine.is_empty(), "no certified device key to send with");
    let counters: Arc<Vec<AtomicU64>> =
        Arc::new((0..genuine.len()).map(|_| AtomicU64::new(1)).collect());

    // Genuine records alone: the ingest's rate without a flood.
    let accepted_at =
        |rt: &tokio::runtime::Runtime| ingest_stats(rt, &endpoint, &replicas.token).accepted;
    let quiet_sent = Arc::new(AtomicU64::new(0));
    let quiet_stop = Arc::new(AtomicBool::new(false));
    let accepted_start = accepted_at(&rt);
    let quiet_start = Instant::now();
    let sender = genuine_sender(
        genuine.clone(),
        counters.clone(),
        udp,
        quiet_stop.clone(),
        quiet_sent.clone(),
    );
    std::thread::sleep(PHASE / 2);
    quiet_stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let quiet_secs = quiet_start.elapsed().as_secs_f64();
    let quiet_sent = quiet_sent.load(Ordering::Relaxed);
    let quiet_accepted = settled(Some(quiet_sent), || accepted_at(&rt) - accepted_start);
    let rss_before = rss_kib(pid);

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
    let genuine_sent = Arc::new(AtomicU64::new(0));
    let accepted_before_flood = accepted_at(&rt);
    let sender = genuine_sender(
        genuine.clone(),
        counters.clone(),
        udp,
        stop.clone(),
        genuine_sent.clone(),
    );
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
    sender.join().unwrap();
    let flood_secs = flood_start.elapsed().as_secs_f64();
    let sent = sent.load(Ordering::Relaxed);
    // What was read before the senders stopped may still be in batches being stored.
    settled(None, || {
        let stats = ingest_stats(&rt, &endpoint, &replicas.token);
        stats.accepted + stats.rejected.iter().map(|r| r.count).sum::<u64>()
    });
    let rss_after = rss_kib(pid);
    rt.block_on(race.stop());

    let stats = ingest_stats(&rt, &endpoint, &replicas.token);
    let genuine_sent = genuine_sent.load(Ordering::Relaxed);
    let flood_accepted = stats.accepted - accepted_before_flood;
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
    println!(
        "  genuine records ({} devices, {GENUINE_RATE}/s): {quiet_accepted} of {quiet_sent} accepted \
         without the flood ({:.1}/s), {flood_accepted} of {genuine_sent} during it ({:.1}/s, {:.2}×)",
        genuine.len(),
        quiet_accepted as f64 / quiet_secs,
        flood_accepted as f64 / flood_secs,
        (flood_accepted as f64 / flood_secs) / (quiet_accepted as f64 / quiet_secs).max(f64::EPSILON)
    );
    // Why batches were not stored, if any were (the coordinator logs each one).
    let log = std::fs::read_to_string(replicas.log_dir().join("replica0.log")).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("not stored")).take(3) {
        println!("  coordinator: {line}");
    }
    assert!(before > 0, "no lease was granted before the flood");
    assert!(during > 0, "leasing stalled under the flood");
    assert_eq!(
        quiet_accepted, quiet_sent,
        "a genuine record was lost without a flood"
    );
    // Only genuine records can be accepted: anything more is a forged datagram let in.
    assert!(
        flood_accepted <= genuine_sent,
        "{flood_accepted} records accepted during the flood, but only {genuine_sent} were genuine"
    );
    assert!(
        flood_accepted * 2 >= genuine_sent,
        "genuine records starved by the flood: {flood_accepted} of {genuine_sent} accepted"
    );
    assert!(
        refused > 0 && refused <= sent + genuine_sent,
        "the ingest counted {refused} refusals of {sent} datagrams"
    );
    assert!(
        rss_peak.saturating_sub(rss_before) < RSS_GROWTH_LIMIT_KIB,
        "the coordinator grew by {} KiB under the flood",
        rss_peak - rss_before
    );
}
