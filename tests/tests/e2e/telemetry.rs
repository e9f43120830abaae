//! Telemetry end to end: the coordinator (in this process) and the station (its own process,
//! `flashgate-station run --otlp-endpoint … --metrics-listen …`) export to an in-process OTLP
//! receiver. Each registered device must be one trace spanning both processes and every phase;
//! the coordinator's Prometheus endpoint must count exactly the registry.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flashgate_telemetry::receiver::{OtlpReceiver, ReceivedSpan};
use flashgate_telemetry::{Telemetry, TelemetryOptions};
use flashgate_tests::station_harness::{free_port, Factory};
use flashgate_tests::{firmware_dir, station_binary};
use tracing_subscriber::prelude::*;

/// `GET /metrics` on `addr`; `None` while nothing answers.
fn scrape(addr: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The value of one sample line (`name{labels} value`) whose prefix is `series`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn spans_named<'a>(spans: &'a [ReceivedSpan], trace: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == name)
        .collect()
}

#[test]
fn one_trace_per_device_across_station_and_coordinator_and_metrics_match_the_registry() {
    let receiver = OtlpReceiver::start().expect("OTLP receiver");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    // The coordinator runs in this process: telemetry for it, as `serve` sets it up.
    let telemetry = Telemetry::start(&TelemetryOptions {
        service_name: "flashgate-coordinator".into(),
        otlp_endpoint: Some(receiver.endpoint()),
        metrics_listen: Some(metrics_addr.clone()),
    })
    .expect("telemetry starts");
    tracing_subscriber::registry()
        .with(telemetry.layer())
        .try_init()
        .expect("the only subscriber of this test process");

    let devices = 3;
    let factory = Factory::embedded(devices);
    let station_metrics = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(station_binary())
        .arg("run")
        .args(["--coordinator", &factory.proxy.endpoint()])
        .arg("--state-dir")
        .arg(factory.state_dir.path())
        .args(["--emulate", "2", "--json"])
        .args(["--order", &factory.order.order_id])
        .args(["--vendor-key", &hex::encode(factory.vendor.public())])
        .arg("--loader")
        .arg(firmware_dir().join("loader.bin"))
        .args(["--otlp-endpoint", &receiver.endpoint()])
        .args(["--metrics-listen", &station_metrics])
        .env("FLASHGATE_STATION_KEK", factory.station_kek_hex())
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("FLASHGATE_METRICS_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("station starts");
    // The station's endpoint serves while it runs (it exits when the quota is spent).
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut station_scrape = None;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if station_scrape.is_none() {
            station_scrape = scrape(&station_metrics).filter(|m| m.contains("flashgate_station_"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the station did not finish in 300 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "station exited with {status}");
    let station_scrape = station_scrape.expect("the station's /metrics answered while it ran");
    assert!(
        station_scrape.contains("# TYPE flashgate_station_rpc_duration_seconds histogram"),
        "{station_scrape}"
    );

    let registered = factory.registered();
    assert_eq!(registered.len(), devices as usize);

    // Metrics: the coordinator counted exactly the registry.
    let metrics = scrape(&metrics_addr).expect("coordinator /metrics");
    assert_eq!(
        sample(
            &metrics,
            "flashgate_coordinator_devices_registered_total{outcome=\"provisioned\"}"
        ),
        Some(registered.len() as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(
                "flashgate_coordinator_quota_remaining{{order=\"{}\"}}",
                factory.order.order_id
            )
        ),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "flashgate_coordinator_rpc_duration_seconds_count{method=\"AcquireLease\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    // Every device was written by at least one committed transaction (its certificate).
    assert!(
        sample(
            &metrics,
            "flashgate_coordinator_store_commit_duration_seconds_count{outcome=\"committed\"}"
        )
        .is_some_and(|n| n >= registered.len() as f64),
        "{metrics}"
    );

    // Traces: the station flushed on exit; flush ours, then wait for the receiver to have both.
    telemetry.flush();
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = receiver.spans();
        let reports = spans
            .iter()
            .filter(|s| s.name == "registry_write" && s.service == "flashgate-coordinator")
            .count();
        if reports >= registered.len() || Instant::now() > deadline {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    assert!(
        services.contains("flashgate-station") && services.contains("flashgate-coordinator"),
        "{services:?}"
    );

    let mut traces = BTreeSet::new();
    for device in &registered {
        let serial = hex::encode(&device.serial);
        let install = spans
            .iter()
            .find(|s| {
                s.service == "flashgate-station"
                    && s.name == "install"
                    && s.attribute("serial") == Some(serial.as_str())
            })
            .unwrap_or_else(|| panic!("no install span for {serial}"));
        assert!(install.parent_span_id.is_empty(), "install is the root");
        let trace = install.trace_id.as_str();
        assert!(traces.insert(trace.to_owned()), "one trace per device");
        // Station phases (no test app in this order: no `test` span).
        for phase in [
            "connect",
            "handshake",
            "transfer",
            "flash",
            "lock",
            "verify",
            "report",
        ] {
            assert!(
                spans_named(&spans, trace, phase)
                    .iter()
                    .any(|s| s.service == "flashgate-station"),
                "device {serial}: no station span {phase} in trace {trace}"
            );
        }
        assert!(spans_named(&spans, trace, "rpc_client")
            .iter()
            .any(|s| s.attribute("method") == Some("ReportInstall")));
        // Coordinator side, in the same trace: the RPC and the registry write.
        let grpc = spans_named(&spans, trace, "grpc");
        assert!(
            grpc.iter().any(|s| s.service == "flashgate-coordinator"
                && s.attribute("path")
                    .is_some_and(|p| p.ends_with("/ReportInstall"))),
            "device {serial}: no coordinator ReportInstall span in its trace"
        );
        let write = spans_named(&spans, trace, "registry_write");
        assert!(
            write.iter().any(|s| s.service == "flashgate-coordinator"
                && s.attribute("serial") == Some(serial.as_str())),
            "device {serial}: no registry write in its trace"
        );
        assert!(spans_named(&spans, trace, "rpc")
            .iter()
            .any(|s| s.attribute("method") == Some("ReportInstall")));
    }

    // Lease acquisition: its own trace, across both processes too.
    let lease = spans
        .iter()
        .find(|s| s.service == "flashgate-station" && s.name == "lease_acquire")
        .expect("a lease acquisition span");
    assert!(
        spans.iter().any(|s| s.trace_id == lease.trace_id
            && s.service == "flashgate-coordinator"
            && s.attribute("path")
                .is_some_and(|p| p.ends_with("/AcquireLease"))),
        "the coordinator's AcquireLease joins the station's lease trace"
    );
    assert!(!traces.contains(&lease.trace_id));

    // No secrets in spans: neither the station KEK nor any device key appears anywhere.
    let kek = factory.station_kek_hex().to_ascii_lowercase();
    let device_keys: Vec<String> = registered
        .iter()
        .map(|d| hex::encode(*factory.device_key(&d.serial.as_slice().try_into().unwrap())))
        .collect();
    for span in &spans {
        for (key, value) in &span.attributes {
            let value = value.to_ascii_lowercase();
            assert!(
                !value.contains(&kek) && !device_keys.iter().any(|k| value.contains(k)),
                "secret in span {} attribute {key}",
                span.name
            );
        }
    }
    drop(telemetry);
}
