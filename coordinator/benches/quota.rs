//! Exact-quota reservations per second through the coordinator (loopback gRPC, signed station
//! requests, etcd store) beside raw etcd compare-and-swap transactions per second, measured in
//! the same run on the same etcd just before, at the same concurrency (each raw writer on its
//! own key): single-device leases (goal ≥ 0.8× raw), 100-device leases (goal ≥ 20× raw per
//! slot) and device-certificate issuance (`IssueDeviceCertificate`: one lease slot per chip;
//! goal ≥ 0.8×), each with 1 and with 16 concurrent stations (the 16 share one order, each
//! issues under its own lease). All of it over TLS (mutual, station certificates) and over
//! plain text, with the TLS cost per case at the end.
//!
//! A second reference sits beside each figure: raw etcd transactions of the call's own shape
//! (the keys one call of that kind wrote, read back from etcd: as many keys with the same key
//! and value sizes; a replaced key compared on its revision and rewritten, a created one fresh
//! each time and compared absent), each writer on its own keys. The goal is against the
//! one-key CAS, as the issue states it; the same-shape ratio shows what the coordinator adds
//! over etcd's cost for the writes the call must make. Station requests are signed before the
//! clock starts (a station signs on its own machine, not on the coordinator's cores); sending
//! them, TLS and HTTP/2 on the station's side included, is inside it.
//!
//! Where one call's time goes is read from the coordinator's own metrics
//! (`--metrics-listen`'s `/metrics`, on for the run): the handler's latency and the store
//! commit's inside it, beside the wall time per call at the station and the raw references'
//! latency at the same concurrency.
//!
//! Every measurement is taken `QUOTA_BENCH_ROUNDS` times (default 3), the cases interleaved,
//! and each figure is the median of its rounds: on a shared machine one window swings.
//!
//! `cargo bench -p flashgate-coordinator --bench quota` (needs /usr/bin/etcd). `QUOTA_BENCH_N`
//! sets the number of operations per measurement (default 300).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a bench: a panic is how it reports a failure"
)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use flashgate_coordinator::keys::Kek;
use flashgate_coordinator::store::etcd::EtcdStore;
use flashgate_coordinator::testing::{test_config, TestCoordinator};
use flashgate_proto::station_auth::{methods, StationSigner};
use flashgate_proto::v1::{self, station_service_client::StationServiceClient};
use rand_core::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: u32 = std::env::var("QUOTA_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    // FLASHGATE_BENCH_TELEMETRY=1: traces exported (in-process OTLP receiver) and metrics on.
    let rounds: usize = std::env::var("QUOTA_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let telemetry = flashgate_telemetry::receiver::bench_switch("flashgate-coordinator");
    println!("traces: {}", if telemetry.is_some() { "on" } else { "off" });
    // Metrics on as `--metrics-listen` turns them on: the time split is read from /metrics.
    let metrics_only = match telemetry {
        Some(_) => None,
        None => Some(flashgate_telemetry::Telemetry::start(
            &flashgate_telemetry::TelemetryOptions {
                service_name: "flashgate-coordinator".into(),
                otlp_endpoint: None,
                metrics_listen: Some("127.0.0.1:0".into()),
            },
        )?),
    };
    let metrics_addr = metrics_only
        .as_ref()
        .or(telemetry.as_ref().map(|(t, _)| t))
        .and_then(flashgate_telemetry::Telemetry::metrics_addr)
        .ok_or_else(|| anyhow::anyhow!("the metrics endpoint did not start"))?;
    let dir = tempfile::tempdir()?;
    let (client_port, peer_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let mut etcd = Command::new("/usr/bin/etcd")
        .arg("--data-dir")
        .arg(dir.path().join("etcd"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("default={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = run(n, rounds, &url, metrics_addr).await;
    let _ = etcd.kill();
    let _ = etcd.wait();
    if let Some((telemetry, receiver)) = telemetry {
        telemetry.flush();
        println!("spans exported: {}", receiver.spans().len());
    }
    result
}

/// A figure, its same-run reference and its goal (`reference × goal` to pass).
#[derive(Clone)]
struct Figure {
    case: String,
    stations: usize,
    ops: f64,
    per_op: u32,
    reference: f64,
    /// Raw etcd txn/s of the call's own shape, same run, same concurrency.
    shaped: f64,
    /// etcd requests the calls made, per call.
    etcd: EtcdRequests,
    /// The coordinator's own split of one call's time.
    spent: CallTimes,
    goal: f64,
    /// The ratios of the rounds this figure is the median of (empty for one round's figure).
    round_ratios: Vec<f64>,
}

impl Figure {
    /// Calls (or slots) per raw CAS: the median of the rounds' ratios, each round's own
    /// figure over its own reference.
    fn ratio(&self) -> f64 {
        if self.round_ratios.is_empty() {
            self.ops * f64::from(self.per_op) / self.reference
        } else {
            median(self.round_ratios.clone())
        }
    }

    /// Each number the median of its rounds (`rounds` hold one case each, all alike).
    fn median(rounds: &[Figure]) -> Figure {
        let of = |field: fn(&Figure) -> f64| median(rounds.iter().map(field).collect());
        Figure {
            ops: of(|f| f.ops),
            reference: of(|f| f.reference),
            shaped: of(|f| f.shaped),
            etcd: EtcdRequests {
                txn: of(|f| f.etcd.txn),
                range: of(|f| f.etcd.range),
            },
            spent: CallTimes {
                handler_ms: of(|f| f.spent.handler_ms),
                commit_ms: of(|f| f.spent.commit_ms),
            },
            round_ratios: rounds.iter().map(Figure::ratio).collect(),
            ..rounds[0].clone()
        }
    }

    fn print(&self) {
        let ratio = self.ratio();
        println!(
            "{:<44} {:>9.0} {:>11.0} {:>10.0} {:>7.2} {:>11} {:>6} {:<4} {:>10.0} {:>7.2} {:>5.2} {:>5.2}",
            self.case,
            self.ops,
            self.ops * f64::from(self.per_op),
            self.reference,
            ratio,
            format!("{:.2}–{:.2}", lowest(&self.round_ratios), highest(&self.round_ratios)),
            format!("≥{}", self.goal),
            if ratio >= self.goal { "ok" } else { "MISS" },
            self.shaped,
            self.ops / self.shaped,
            self.etcd.txn,
            self.etcd.range
        );
    }

    /// Milliseconds per call: at the station (wall time ÷ calls in flight), in the handler,
    /// in its store commit; beside one raw CAS and one raw txn of the call's shape.
    fn print_spent(&self) {
        let per = |per_second: f64| self.stations as f64 / per_second * 1e3;
        let wall = per(self.ops);
        println!(
            "{:<44} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            self.case,
            wall,
            self.spent.handler_ms,
            self.spent.commit_ms,
            self.spent.handler_ms - self.spent.commit_ms,
            wall - self.spent.handler_ms,
            per(self.reference),
            per(self.shaped)
        );
    }
}

fn lowest(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn highest(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn spent_header() {
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "ms per call", "station", "handler", "commit", "own", "hop", "raw CAS", "shape tx"
    );
}

fn header() {
    println!(
        "{:<44} {:>9} {:>11} {:>10} {:>7} {:>11} {:>6} {:<4} {:>10} {:>7} {:>5} {:>5}",
        "case",
        "calls/s",
        "slots/s",
        "raw CAS/s",
        "ratio",
        "rounds",
        "goal",
        "",
        "shape tx/s",
        "ratio",
        "txn",
        "range"
    );
}

/// Raw CAS txn/s with `writers` concurrent clients, each on its own key (each connected and
/// its key written before the clock starts): [`raw_shaped`] with one short key and value.
async fn raw_concurrent(url: &str, writers: usize, per_writer: u32) -> anyhow::Result<f64> {
    let one = Written {
        key_len: 16,
        value_len: 3,
        created: false,
    };
    raw_shaped(url, writers, per_writer, &Shape(vec![one])).await
}

/// etcd's own count of the transactions and reads it answered (its `/metrics`), or per call.
#[derive(Clone, Copy, Debug, Default)]
struct EtcdRequests {
    txn: f64,
    range: f64,
}

/// The text a Prometheus `/metrics` endpoint at `address` (host:port) answers.
fn scrape(address: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(address)?;
    write!(tcp, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut text = String::new();
    tcp.read_to_string(&mut text)?;
    Ok(text)
}

/// One call's time as the coordinator's metrics split it, in milliseconds: its handler
/// (`flashgate_coordinator_rpc_duration_seconds`) and the store commits inside it
/// (`flashgate_coordinator_store_commit_duration_seconds`, committed ones).
#[derive(Clone, Copy, Debug, Default)]
struct CallTimes {
    handler_ms: f64,
    commit_ms: f64,
}

/// The coordinator's running sums behind [`CallTimes`], for one method.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    handler_s: f64,
    calls: f64,
    commit_s: f64,
}

impl Sums {
    fn read(metrics: SocketAddr, method: &str) -> anyhow::Result<Self> {
        let text = scrape(&metrics.to_string())?;
        let sample = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(0.0)
        };
        let rpc = format!("{{method=\"{method}\"}}");
        let committed = "{outcome=\"committed\"}";
        Ok(Self {
            handler_s: sample(&format!(
                "flashgate_coordinator_rpc_duration_seconds_sum{rpc}"
            )),
            calls: sample(&format!(
                "flashgate_coordinator_rpc_duration_seconds_count{rpc}"
            )),
            commit_s: sample(&format!(
                "flashgate_coordinator_store_commit_duration_seconds_sum{committed}"
            )),
        })
    }

    /// Per call of `method` since `before` (the store commits are every method's, and only
    /// this one ran meanwhile).
    fn since(metrics: SocketAddr, method: &str, before: Self) -> anyhow::Result<CallTimes> {
        let after = Self::read(metrics, method)?;
        let calls = (after.calls - before.calls).max(1.0);
        Ok(CallTimes {
            handler_ms: (after.handler_s - before.handler_s) / calls * 1e3,
            commit_ms: (after.commit_s - before.commit_s) / calls * 1e3,
        })
    }
}

impl EtcdRequests {
    /// The counts so far, from etcd's metrics on its client URL.
    fn read(url: &str) -> anyhow::Result<Self> {
        let text = scrape(url.trim_start_matches("http://"))?;
        let count = |method: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with("grpc_server_handled_total{"))
                .filter(|l| l.contains("grpc_code=\"OK\""))
                .filter(|l| l.contains(&format!("grpc_method=\"{method}\"")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Ok(Self {
            txn: count("Txn"),
            range: count("Range"),
        })
    }

    /// What `calls` calls asked of etcd between `before` and now, per call.
    fn per_call(url: &str, before: Self, calls: f64) -> anyhow::Result<Self> {
        let after = Self::read(url)?;
        Ok(Self {
            txn: (after.txn - before.txn) / calls,
            range: (after.range - before.range) / calls,
        })
    }
}

/// One key a transaction wrote.
#[derive(Clone, Copy, Debug)]
struct Written {
    key_len: usize,
    value_len: usize,
    /// The transaction created the key (guarded absent) rather than replaced it.
    created: bool,
}

/// The writes of one transaction.
#[derive(Clone, Debug)]
struct Shape(Vec<Written>);

impl Shape {
    fn describe(&self) -> String {
        let bytes: usize = self.0.iter().map(|w| w.key_len + w.value_len).sum();
        let created = self.0.iter().filter(|w| w.created).count();
        format!("{} keys ({created} created), {bytes} B", self.0.len())
    }
}

/// The shape of the transaction that made etcd's latest revision under `namespace` (the keys
/// it wrote, read back by their mod revision). Deletes leave no key and are not in it.
async fn last_txn_shape(url: &str, namespace: &str) -> anyhow::Result<Shape> {
    let mut client = Client::connect([url], None).await?;
    let head = client
        .get(
            namespace,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    let revision = head.header().map(|h| h.revision()).unwrap_or(0);
    let written = client
        .get(
            namespace,
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_min_mod_revision(revision)
                    .with_max_mod_revision(revision),
            ),
        )
        .await?;
    let shape = Shape(
        written
            .kvs()
            .iter()
            .map(|kv| Written {
                key_len: kv.key().len(),
                value_len: kv.value().len(),
                created: kv.version() == 1,
            })
            .collect(),
    );
    anyhow::ensure!(!shape.0.is_empty(), "no key written at revision {revision}");
    Ok(shape)
}

/// Raw etcd txn/s of `shape` with `writers` concurrent clients, each on its own keys, as the
/// coordinator's guards and writes are: a key the call replaced is compared on its mod
/// revision and written again; a key the call created is a fresh key each time, compared
/// absent.
async fn raw_shaped(
    url: &str,
    writers: usize,
    per_writer: u32,
    shape: &Shape,
) -> anyhow::Result<f64> {
    let start = Arc::new(tokio::sync::Barrier::new(writers + 1));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (url, start, shape) = (url.to_owned(), start.clone(), shape.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect([url], None).await?;
            let named = |w: &Written, prefix: String| {
                let pad = w.key_len.saturating_sub(prefix.len());
                format!("{prefix}{}", "k".repeat(pad))
            };
            // Keys the call replaces: written once before the clock, then compared and
            // rewritten each time.
            let mut replaced = Vec::new();
            for (k, written) in shape.0.iter().enumerate().filter(|(_, w)| !w.created) {
                let key = named(written, format!("/bench/shape-{w}-{k}-"));
                let value = vec![b'v'; written.value_len];
                let put = client.put(key.clone(), value.clone(), None).await?;
                let revision = put.header().map(|h| h.revision()).unwrap_or(0);
                replaced.push((key, value, revision));
            }
            let run: u64 = rand_core::RngCore::next_u64(&mut OsRng);
            start.wait().await;
            for i in 0..per_writer {
                let created: Vec<(String, Vec<u8>)> = shape
                    .0
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.created)
                    .map(|(k, written)| {
                        let key = named(written, format!("/bench/new-{run:x}-{w}-{k}-{i}-"));
                        (key, vec![b'v'; written.value_len])
                    })
                    .collect();
                let guards = replaced
                    .iter()
                    .map(|(key, _, r)| Compare::mod_revision(key.clone(), CompareOp::Equal, *r))
                    .chain(
                        created
                            .iter()
                            .map(|(key, _)| Compare::version(key.clone(), CompareOp::Equal, 0)),
                    )
                    .collect::<Vec<_>>();
                let puts = replaced
                    .iter()
                    .map(|(key, value, _)| TxnOp::put(key.clone(), value.clone(), None))
                    .chain(
                        created
                            .iter()
                            .map(|(key, value)| TxnOp::put(key.clone(), value.clone(), None)),
                    )
                    .collect::<Vec<_>>();
                let response = client.txn(Txn::new().when(guards).and_then(puts)).await?;
                anyhow::ensure!(response.succeeded(), "uncontended CAS failed");
                let r = response.header().map(|h| h.revision()).unwrap_or(0);
                replaced.iter_mut().for_each(|(_, _, v)| *v = r);
            }
            anyhow::Ok(())
        }));
    }
    start.wait().await;
    let started = Instant::now();
    for t in tasks {
        t.await??;
    }
    Ok(f64::from(per_writer) * writers as f64 / started.elapsed().as_secs_f64())
}

type Station = (
    Arc<StationSigner>,
    StationServiceClient<tonic::transport::Channel>,
);

/// `count` approved stations of the factory "bench", each with its own connection.
async fn stations(tc: &TestCoordinator, count: usize) -> anyhow::Result<Vec<Station>> {
    let mut out = Vec::new();
    for i in 0..count {
        let key = SigningKey::generate(&mut OsRng);
        let signer = StationSigner::new(key.clone());
        let x = StaticSecret::random_from_rng(OsRng);
        let mut client = tc.station_client_for(&key).await?;
        client
            .enrol(signer.sign(
                methods::ENROL,
                v1::EnrolRequest {
                    ed25519_public_key: key.verifying_key().to_bytes().to_vec(),
                    x25519_public_key: PublicKey::from(&x).to_bytes().to_vec(),
                    name: format!("bench {i}"),
                    factory: "bench".into(),
                    ..Default::default()
                },
            ))
            .await?;
        tc.approve(signer.station_id()).await?;
        out.push((Arc::new(signer), client));
    }
    Ok(out)
}

/// Lease grants/s with every station of `stations` acquiring `per_station` leases of `batch`
/// slots each, concurrently, on one order.
async fn grants_concurrent(
    order_id: &str,
    stations: &[Station],
    batch: u32,
    per_station: u32,
) -> anyhow::Result<f64> {
    // Signed before the clock: a station signs on its own machine, not on the coordinator's.
    let signed: Vec<_> = stations
        .iter()
        .map(|(signer, client)| {
            let requests: Vec<_> = (0..per_station)
                .map(|_| {
                    signer.sign(
                        methods::ACQUIRE_LEASE,
                        v1::AcquireLeaseRequest {
                            order_id: order_id.to_owned(),
                            count: batch,
                            ..Default::default()
                        },
                    )
                })
                .collect();
            (client.clone(), requests)
        })
        .collect();
    per_second(signed, |mut client, request| async move {
        client.acquire_lease(request).await.map(drop)
    })
    .await
}

/// A station, its connection and the id of a lease it holds.
type Leased = (
    Arc<StationSigner>,
    StationServiceClient<tonic::transport::Channel>,
    String,
);

/// One lease of `per_station` slots for every station of `stations`, on `order_id`.
async fn leases_for(
    tc: &TestCoordinator,
    order_id: &str,
    stations: &[Station],
    per_station: u32,
) -> anyhow::Result<Vec<Leased>> {
    let mut leases = Vec::new();
    for (signer, client) in stations.iter().cloned() {
        let mut client = client;
        let signed = client
            .acquire_lease(signer.sign(
                methods::ACQUIRE_LEASE,
                v1::AcquireLeaseRequest {
                    order_id: order_id.to_owned(),
                    count: per_station,
                    ..Default::default()
                },
            ))
            .await?
            .into_inner()
            .lease
            .unwrap();
        let body = flashgate_proto::lease::verify_signed_lease(
            &signed,
            &tc.coordinator.lease_verifying_key(),
        )?;
        leases.push((signer, client, body.lease_id));
    }
    Ok(leases)
}

/// Certificates/s with every station of `leases` issuing `per_station` certificates under
/// its lease (fresh chips, one loader key), concurrently.
async fn issue_concurrent(leases: Vec<Leased>, per_station: u32) -> anyhow::Result<f64> {
    let loader = PublicKey::from(&StaticSecret::random_from_rng(OsRng)).to_bytes();
    // Signed before the clock, as in `grants_concurrent`.
    let signed: Vec<_> = leases
        .into_iter()
        .map(|(signer, client, lease_id)| {
            let requests: Vec<_> = (0..per_station)
                .map(|_| {
                    let mut serial = [0u8; 16];
                    rand_core::RngCore::fill_bytes(&mut OsRng, &mut serial);
                    signer.sign(
                        methods::ISSUE_DEVICE_CERTIFICATE,
                        v1::IssueDeviceCertificateRequest {
                            lease_id: lease_id.clone(),
                            serial: serial.to_vec(),
                            loader_public_key: loader.to_vec(),
                        },
                    )
                })
                .collect();
            (client, requests)
        })
        .collect();
    per_second(signed, |mut client, request| async move {
        client.issue_device_certificate(request).await.map(drop)
    })
    .await
}

/// Calls/s with every station sending its requests (signed beforehand) one after another,
/// all stations at once; only the sending is timed.
async fn per_second<R, F, Fut>(
    signed: Vec<(
        StationServiceClient<tonic::transport::Channel>,
        Vec<tonic::Request<R>>,
    )>,
    call: F,
) -> anyhow::Result<f64>
where
    R: Send + 'static,
    F: Fn(StationServiceClient<tonic::transport::Channel>, tonic::Request<R>) -> Fut
        + Copy
        + Send
        + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let calls: usize = signed.iter().map(|(_, requests)| requests.len()).sum();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (client, requests) in signed {
        tasks.push(tokio::spawn(async move {
            for request in requests {
                call(client.clone(), request).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(calls as f64 / started.elapsed().as_secs_f64())
}

/// Every figure through one coordinator (`transport` names how stations reach it, its keys
/// live under `namespace`), each the median of `rounds`.
async fn figures(
    n: u32,
    rounds: usize,
    url: &str,
    metrics: SocketAddr,
    namespace: &str,
    tc: &TestCoordinator,
    transport: &str,
) -> anyhow::Result<Vec<Figure>> {
    let all = stations(tc, 16).await?;
    let vendor = SigningKey::generate(&mut OsRng);
    let demo = tc
        .create_demo_order(1, &vendor, vec![all[0].0.station_id().to_owned()], 1)
        .await?;
    let mut op = tc.operator_client().await?;
    let order = op
        .create_order(tc.operator_request(v1::CreateOrderRequest {
            product_id: demo.product_id,
            bootloader_digest: demo.bootloader_digest.clone(),
            factory: "bench".into(),
            count: 1_000_000_000,
            ..Default::default()
        }))
        .await?
        .into_inner();
    // One call of each kind, alone, and the shape of the transaction it committed.
    let mut lease_shapes = Vec::new();
    for batch in [1u32, 100] {
        grants_concurrent(&order.order_id, &all[..1], batch, 1).await?;
        lease_shapes.push((batch, last_txn_shape(url, namespace).await?));
    }
    issue_concurrent(leases_for(tc, &order.order_id, &all[..1], 1).await?, 1).await?;
    let issue_shape = last_txn_shape(url, namespace).await?;
    for (batch, shape) in &lease_shapes {
        println!("shape of AcquireLease count={batch}: {}", shape.describe());
    }
    println!(
        "shape of IssueDeviceCertificate: {}",
        issue_shape.describe()
    );
    let mut by_round = Vec::new();
    for _ in 0..rounds {
        let mut out = Vec::new();
        for stations in [1usize, 16] {
            let per = if stations == 1 { n } else { (n / 4).max(10) };
            let calls = f64::from(per) * stations as f64;
            let raw = raw_concurrent(url, stations, per).await?;
            for (batch, shape) in &lease_shapes {
                let shaped = raw_shaped(url, stations, per, shape).await?;
                let before = (
                    EtcdRequests::read(url)?,
                    Sums::read(metrics, "AcquireLease")?,
                );
                let ops = grants_concurrent(&order.order_id, &all[..stations], *batch, per).await?;
                out.push(Figure {
                    etcd: EtcdRequests::per_call(url, before.0, calls)?,
                    spent: Sums::since(metrics, "AcquireLease", before.1)?,
                    case: format!("AcquireLease count={batch} x{stations} ({transport})"),
                    stations,
                    ops,
                    per_op: *batch,
                    reference: raw,
                    shaped,
                    goal: if *batch == 1 { 0.8 } else { 20.0 },
                    round_ratios: Vec::new(),
                });
            }
            let method = "IssueDeviceCertificate";
            let shaped = raw_shaped(url, stations, per, &issue_shape).await?;
            // Leases (and their commits) first, so the sums cover only the certificates.
            let leases = leases_for(tc, &order.order_id, &all[..stations], per).await?;
            let before = (EtcdRequests::read(url)?, Sums::read(metrics, method)?);
            let ops = issue_concurrent(leases, per).await?;
            out.push(Figure {
                etcd: EtcdRequests::per_call(url, before.0, calls)?,
                spent: Sums::since(metrics, method, before.1)?,
                case: format!("{method} x{stations} ({transport})"),
                stations,
                ops,
                per_op: 1,
                reference: raw,
                shaped,
                goal: 0.8,
                round_ratios: Vec::new(),
            });
        }
        by_round.push(out);
    }
    Ok((0..by_round[0].len())
        .map(|case| {
            let rounds: Vec<Figure> = by_round.iter().map(|r| r[case].clone()).collect();
            Figure::median(&rounds)
        })
        .collect())
}

async fn run(n: u32, rounds: usize, url: &str, metrics: SocketAddr) -> anyhow::Result<()> {
    loop {
        if let Ok(mut c) = Client::connect([url], None).await {
            if c.get("probe", None).await.is_ok() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "lease grants and device certificates through the coordinator (loopback gRPC, signed \
         station requests, one etcd) beside raw etcd CAS txn/s and raw txn/s of the call's own \
         shape (last two columns), measured just before, at the \
         same concurrency; {n} calls per station alone, {} each of 16; each figure the median \
         of {rounds} interleaved rounds (their ratios' range beside it)",
        (n / 4).max(10)
    );
    let mut by_transport = Vec::new();
    for tls in [true, false] {
        let (namespace, transport) = if tls {
            ("/bench/coordinator-tls/", "TLS")
        } else {
            ("/bench/coordinator-plain/", "plain text")
        };
        let store = Arc::new(EtcdStore::connect(&[url.to_owned()], namespace).await?);
        let (signing, kek) = (SigningKey::generate(&mut OsRng), Kek::generate());
        let tc = if tls {
            TestCoordinator::start(store, test_config(), signing, kek).await?
        } else {
            TestCoordinator::start_insecure_plaintext_on(store, test_config(), signing, kek).await?
        };
        println!();
        header();
        let figures = figures(n, rounds, url, metrics, namespace, &tc, transport).await?;
        for f in &figures {
            f.print();
        }
        println!();
        println!(
            "where one call's time goes ({transport}, medians): at the station, in the handler, \
             in its store commit, the handler's own (handler − commit), the hop (station − \
             handler: gRPC both ways, the station's side); one raw CAS and one raw txn of the \
             call's shape at the same concurrency"
        );
        spent_header();
        for f in &figures {
            f.print_spent();
        }
        tc.stop().await;
        by_transport.push(figures);
    }
    println!();
    println!("TLS cost on the grant path (same run): calls/s over TLS ÷ plain text");
    for (tls, plain) in by_transport[0].iter().zip(&by_transport[1]) {
        println!(
            "{:<44} {:>9.0} {:>9.0} {:>7.2}",
            tls.case.trim_end_matches(" (TLS)"),
            tls.ops,
            plain.ops,
            tls.ops / plain.ops
        );
    }
    Ok(())
}
