//! Exact-quota reservations per second through the coordinator (loopback gRPC, signed station
//! requests, etcd store) beside raw etcd compare-and-swap transactions per second, measured in
//! the same run on the same etcd; for single-device and batched leases. Then device-certificate
//! issuance (`IssueDeviceCertificate`: one lease slot per chip, one store transaction) at 1 and
//! 16 concurrent stations beside raw CAS txn/s at the same concurrency (each writer its own key,
//! as each station its own lease). Goal: ≥ 0.8× raw at both.
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
        let order = grants(&tc, n, raw, if tls { "TLS" } else { "plain text" }).await?;
        if tls {
            certificates(n, url, &tc, &order).await?;
        }
        tc.stop().await;
    }
    Ok(())
}

async fn grants(
    tc: &TestCoordinator,
    n: u32,
    raw: f64,
    transport: &str,
) -> anyhow::Result<v1::Order> {
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
    Ok(order)
}

/// Raw CAS txn/s with `writers` concurrent clients, each on its own key.
async fn raw_concurrent(url: &str, writers: usize, per_writer: u32) -> anyhow::Result<f64> {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for w in 0..writers {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect([url], None).await?;
            let key = format!("/bench/raw-{w}");
            let put = client.put(key.clone(), "0", None).await?;
            let mut revision = put.header().map(|h| h.revision()).unwrap_or(0);
            for i in 0..per_writer {
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        key.clone(),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then([TxnOp::put(key.clone(), i.to_string(), None)]);
                let response = client.txn(txn).await?;
                anyhow::ensure!(response.succeeded(), "uncontended CAS failed");
                revision = response.header().map(|h| h.revision()).unwrap_or(0);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(f64::from(per_writer) * writers as f64 / started.elapsed().as_secs_f64())
}

/// Certificates/s with `stations` concurrent stations, each issuing `per_station` certificates
/// under its own lease (fresh chips, fresh loader keys).
async fn issue_concurrent(
    tc: &TestCoordinator,
    order: &v1::Order,
    signers: &[(Arc<StationSigner>, SigningKey)],
    per_station: u32,
) -> anyhow::Result<f64> {
    let mut leases = Vec::new();
    for (signer, key) in signers {
        let mut station = tc.station_client_for(key).await?;
        let signed = station
            .acquire_lease(signer.sign(
                methods::ACQUIRE_LEASE,
                v1::AcquireLeaseRequest {
                    order_id: order.order_id.clone(),
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
        leases.push((station, body.lease_id));
    }
    let loader = PublicKey::from(&StaticSecret::random_from_rng(OsRng)).to_bytes();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ((signer, _), (mut station, lease_id)) in signers.iter().cloned().zip(leases) {
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_station {
                let mut serial = [0u8; 16];
                rand_core::RngCore::fill_bytes(&mut OsRng, &mut serial);
                station
                    .issue_device_certificate(signer.sign(
                        methods::ISSUE_DEVICE_CERTIFICATE,
                        v1::IssueDeviceCertificateRequest {
                            lease_id: lease_id.clone(),
                            serial: serial.to_vec(),
                            loader_public_key: loader.to_vec(),
                        },
                    ))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(f64::from(per_station) * signers.len() as f64 / started.elapsed().as_secs_f64())
}

async fn certificates(
    n: u32,
    url: &str,
    tc: &TestCoordinator,
    order: &v1::Order,
) -> anyhow::Result<()> {
    let mut signers: Vec<(Arc<StationSigner>, SigningKey)> = Vec::new();
    for i in 0..16 {
        let key = SigningKey::generate(&mut OsRng);
        let signer = StationSigner::new(key.clone());
        let x = StaticSecret::random_from_rng(OsRng);
        tc.station_client_for(&key)
            .await?
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
        signers.push((Arc::new(signer), key));
    }
    // The demo order names one station: make one that admits the factory.
    let mut op = tc.operator_client().await?;
    let order = op
        .create_order(tc.operator_request(v1::CreateOrderRequest {
            product_id: order.product_id,
            bootloader_digest: order.bootloader_digest.clone(),
            factory: "bench".into(),
            count: 1_000_000_000,
            ..Default::default()
        }))
        .await?
        .into_inner();
    println!();
    println!("device certificates (one lease slot each), {n} per measurement, one etcd, loopback");
    println!(
        "{:<34} {:>12} {:>12} {:>8} {:>6}",
        "case", "certs/s", "raw CAS/s", "ratio", "goal"
    );
    for stations in [1usize, 16] {
        let per = (n / stations as u32).max(10);
        let raw = raw_concurrent(url, stations, per).await?;
        let issued = issue_concurrent(tc, &order, &signers[..stations], per).await?;
        let ratio = issued / raw;
        println!(
            "{:<34} {:>12.0} {:>12.0} {:>8.2} {:>6}",
            format!("IssueDeviceCertificate x{stations}"),
            issued,
            raw,
            ratio,
            if ratio >= 0.8 {
                "≥0.8 ok"
            } else {
                "≥0.8 MISS"
            }
        );
    }
    Ok(())
}
