//! Exact-quota reservations per second through the coordinator (loopback gRPC, signed station
//! requests, etcd store) beside raw etcd compare-and-swap transactions per second, measured in
//! the same run on the same etcd; for single-device and batched leases.
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
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use flashgate_coordinator::keys::Kek;
use flashgate_coordinator::store::etcd::EtcdStore;
use flashgate_coordinator::testing::{test_config, TestCoordinator};
use flashgate_proto::station_auth::{methods, StationSigner};
use flashgate_proto::v1;
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

async fn run(n: u32, url: &str) -> anyhow::Result<()> {
    let mut client = loop {
        if let Ok(mut c) = Client::connect([url], None).await {
            if c.get("probe", None).await.is_ok() {
                break c;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Raw etcd: a counter decremented by compare-and-swap on its mod revision.
    let put = client.put("/bench/raw", "1000000000", None).await?;
    let mut revision = put.header().map(|h| h.revision()).unwrap_or(0);
    let started = Instant::now();
    for i in 0..n {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                "/bench/raw",
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(
                "/bench/raw",
                (1_000_000_000 - i - 1).to_string(),
                None,
            )]);
        let response = client.txn(txn).await?;
        anyhow::ensure!(response.succeeded(), "uncontended CAS failed");
        revision = response.header().map(|h| h.revision()).unwrap_or(0);
    }
    let raw = f64::from(n) / started.elapsed().as_secs_f64();

    println!("exact-quota reservations, {n} sequential operations each, one etcd, loopback");
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "case", "ops/s", "slots/s", "vs raw"
    );
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>8}",
        "raw etcd CAS txn", raw, raw, "1.00"
    );
    // Through the coordinator: TLS (mutual, station certificate) and plain text, same run.
    for tls in [true, false] {
        let namespace = if tls {
            "/bench/coordinator-tls/"
        } else {
            "/bench/coordinator-plain/"
        };
        let store = Arc::new(EtcdStore::connect(&[url.to_owned()], namespace).await?);
        let start = if tls {
            TestCoordinator::start(
                store,
                test_config(),
                SigningKey::generate(&mut OsRng),
                Kek::generate(),
            )
            .await
        } else {
            TestCoordinator::start_insecure_plaintext_on(
                store,
                test_config(),
                SigningKey::generate(&mut OsRng),
                Kek::generate(),
            )
            .await
        };
        let tc = start?;
        grants(&tc, n, raw, if tls { "TLS" } else { "plain text" }).await?;
        tc.stop().await;
    }
    Ok(())
}

async fn grants(tc: &TestCoordinator, n: u32, raw: f64, transport: &str) -> anyhow::Result<()> {
    let signing_key = SigningKey::generate(&mut OsRng);
    let signer = StationSigner::new(signing_key.clone());
    let x = StaticSecret::random_from_rng(OsRng);
    let mut station = tc.station_client_for(&signing_key).await?;
    station
        .enrol(signer.sign(
            methods::ENROL,
            v1::EnrolRequest {
                ed25519_public_key: signing_key.verifying_key().to_bytes().to_vec(),
                x25519_public_key: PublicKey::from(&x).to_bytes().to_vec(),
                name: "bench".into(),
                factory: "bench".into(),
                ..Default::default()
            },
        ))
        .await?;
    tc.approve(signer.station_id()).await?;
    let vendor = SigningKey::generate(&mut OsRng);
    let order = tc
        .create_demo_order(
            1,
            &vendor,
            vec![signer.station_id().to_owned()],
            1_000_000_000,
        )
        .await?;

    for batch in [1u32, 100] {
        let started = Instant::now();
        for _ in 0..n {
            station
                .acquire_lease(signer.sign(
                    methods::ACQUIRE_LEASE,
                    v1::AcquireLeaseRequest {
                        order_id: order.order_id.clone(),
                        count: batch,
                        ..Default::default()
                    },
                ))
                .await?;
        }
        let ops = f64::from(n) / started.elapsed().as_secs_f64();
        let slots = ops * f64::from(batch);
        println!(
            "{:<44} {:>14.0} {:>14.0} {:>8.2}",
            format!("coordinator AcquireLease count={batch} ({transport})"),
            ops,
            slots,
            slots / raw
        );
    }
    Ok(())
}
