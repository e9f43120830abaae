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
//! (as many keys, each compared and written, with the same key and value sizes, read back from
//! etcd after one call of that kind), each writer on its own keys. The goal is against the
//! one-key CAS, as the issue states it; the same-shape ratio shows what the coordinator adds
//! over etcd's cost for the writes the call must make. Station requests are signed before the
//! clock starts (a station signs on its own machine, not on the coordinator's cores); sending
//! them, TLS and HTTP/2 on the station's side included, is inside it.
//!
//! `cargo bench -p flashgate-coordinator --bench quota` (needs /usr/bin/etcd). `QUOTA_BENCH_N`
//! sets the number of operations per measurement (default 300).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a bench: a panic is how it reports a failure"
)]

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
    let telemetry = flashgate_telemetry::receiver::bench_switch("flashgate-coordinator");
    println!(
        "telemetry: {}",
        if telemetry.is_some() { "on" } else { "off" }
    );
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
    let result = run(n, &url).await;
    let _ = etcd.kill();
    let _ = etcd.wait();
    if let Some((telemetry, receiver)) = telemetry {
        telemetry.flush();
        println!("spans exported: {}", receiver.spans().len());
    }
    result
}

/// A figure, its same-run reference and its goal (`reference × goal` to pass).
struct Figure {
    case: String,
    ops: f64,
    per_op: u32,
    reference: f64,
    /// Raw etcd txn/s of the call's own shape, same run, same concurrency.
    shaped: f64,
    /// etcd requests the calls made, per call.
    etcd: EtcdRequests,
    goal: f64,
}

impl Figure {
    fn ratio(&self) -> f64 {
        self.ops * f64::from(self.per_op) / self.reference
    }

    fn print(&self) {
        let ratio = self.ratio();
        println!(
            "{:<44} {:>9.0} {:>11.0} {:>10.0} {:>7.2} {:>6} {:<4} {:>10.0} {:>7.2} {:>5.2} {:>5.2}",
            self.case,
            self.ops,
            self.ops * f64::from(self.per_op),
            self.reference,
            ratio,
            format!("≥{}", self.goal),
            if ratio >= self.goal { "ok" } else { "MISS" },
            self.shaped,
            self.ops / self.shaped,
            self.etcd.txn,
            self.etcd.range
        );
    }
}

fn header() {
    println!(
        "{:<44} {:>9} {:>11} {:>10} {:>7} {:>6} {:<4} {:>10} {:>7} {:>5} {:>5}",
        "case",
        "calls/s",
        "slots/s",
        "raw CAS/s",
        "ratio",
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
    raw_shaped(url, writers, per_writer, &Shape(vec![(16, 3)])).await
}

/// etcd's own count of the transactions and reads it answered (its `/metrics`), or per call.
#[derive(Clone, Copy, Debug, Default)]
struct EtcdRequests {
    txn: f64,
    range: f64,
}

impl EtcdRequests {
    /// The counts so far, from etcd's metrics on its client URL.
    fn read(url: &str) -> anyhow::Result<Self> {
        use std::io::{Read, Write};
        let address = url.trim_start_matches("http://");
        let mut tcp = std::net::TcpStream::connect(address)?;
        write!(tcp, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
        let mut text = String::new();
        tcp.read_to_string(&mut text)?;
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

/// The writes of one transaction: each key's and value's length.
#[derive(Clone, Debug)]
struct Shape(Vec<(usize, usize)>);

impl Shape {
    fn describe(&self) -> String {
        let bytes: usize = self.0.iter().map(|(k, v)| k + v).sum();
        format!("{} keys, {bytes} B", self.0.len())
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
            .map(|kv| (kv.key().len(), kv.value().len()))
            .collect(),
    );
    anyhow::ensure!(!shape.0.is_empty(), "no key written at revision {revision}");
    Ok(shape)
}

/// Raw etcd txn/s of `shape` with `writers` concurrent clients, each on its own keys: every
/// key compared on its mod revision and written, as the coordinator's guards and writes are.
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
            let writes: Vec<(String, Vec<u8>)> = shape
                .0
                .iter()
                .enumerate()
                .map(|(k, &(key_len, value_len))| {
                    let key = format!("/bench/shape-{w}-{k}-");
                    let pad = key_len.saturating_sub(key.len());
                    (format!("{key}{}", "k".repeat(pad)), vec![b'v'; value_len])
                })
                .collect();
            let mut revision = 0;
            for (key, value) in &writes {
                let put = client.put(key.clone(), value.clone(), None).await?;
                revision = put.header().map(|h| h.revision()).unwrap_or(0);
            }
            let mut revisions = vec![0; writes.len()];
            for (k, (key, _)) in writes.iter().enumerate() {
                let got = client.get(key.clone(), None).await?;
                revisions[k] = got
                    .kvs()
                    .first()
                    .map(|kv| kv.mod_revision())
                    .unwrap_or(revision);
            }
            start.wait().await;
            for _ in 0..per_writer {
                let txn = Txn::new()
                    .when(
                        writes
                            .iter()
                            .zip(&revisions)
                            .map(|((key, _), &r)| {
                                Compare::mod_revision(key.clone(), CompareOp::Equal, r)
                            })
                            .collect::<Vec<_>>(),
                    )
                    .and_then(
                        writes
                            .iter()
                            .map(|(key, value)| TxnOp::put(key.clone(), value.clone(), None))
                            .collect::<Vec<_>>(),
                    );
                let response = client.txn(txn).await?;
                anyhow::ensure!(response.succeeded(), "uncontended CAS failed");
                let r = response.header().map(|h| h.revision()).unwrap_or(0);
                revisions.iter_mut().for_each(|v| *v = r);
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

/// Certificates/s with every station of `stations` issuing `per_station` certificates under
/// its own lease (fresh chips, one loader key), concurrently.
async fn issue_concurrent(
    tc: &TestCoordinator,
    order_id: &str,
    stations: &[Station],
    per_station: u32,
) -> anyhow::Result<f64> {
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
/// live under `namespace`).
async fn figures(
    n: u32,
    url: &str,
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
    issue_concurrent(tc, &order.order_id, &all[..1], 1).await?;
    let issue_shape = last_txn_shape(url, namespace).await?;
    for (batch, shape) in &lease_shapes {
        println!("shape of AcquireLease count={batch}: {}", shape.describe());
    }
    println!(
        "shape of IssueDeviceCertificate: {}",
        issue_shape.describe()
    );
    let mut out = Vec::new();
    for stations in [1usize, 16] {
        let per = if stations == 1 { n } else { (n / 4).max(10) };
        let raw = raw_concurrent(url, stations, per).await?;
        for (batch, shape) in &lease_shapes {
            let shaped = raw_shaped(url, stations, per, shape).await?;
            let before = EtcdRequests::read(url)?;
            let ops = grants_concurrent(&order.order_id, &all[..stations], *batch, per).await?;
            let calls = f64::from(per) * stations as f64;
            out.push(Figure {
                etcd: EtcdRequests::per_call(url, before, calls)?,
                case: format!("AcquireLease count={batch} x{stations} ({transport})"),
                ops,
                per_op: *batch,
                reference: raw,
                shaped,
                goal: if *batch == 1 { 0.8 } else { 20.0 },
            });
        }
        let shaped = raw_shaped(url, stations, per, &issue_shape).await?;
        let before = EtcdRequests::read(url)?;
        let ops = issue_concurrent(tc, &order.order_id, &all[..stations], per).await?;
        let calls = f64::from(per) * stations as f64;
        out.push(Figure {
            etcd: EtcdRequests::per_call(url, before, calls)?,
            case: format!("IssueDeviceCertificate x{stations} ({transport})"),
            ops,
            per_op: 1,
            reference: raw,
            shaped,
            goal: 0.8,
        });
    }
    Ok(out)
}

async fn run(n: u32, url: &str) -> anyhow::Result<()> {
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
         same concurrency; {n} calls per station alone, {} each of 16",
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
        let figures = figures(n, url, namespace, &tc, transport).await?;
        for f in &figures {
            f.print();
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
