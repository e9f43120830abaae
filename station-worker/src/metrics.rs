//! The station's Prometheus metrics (`--metrics-listen`), registered on first use once metrics
//! are on; with metrics off every function returns after one atomic load. Labels are probe names,
//! phases, failure steps, outcomes and RPC methods: never keys or serials.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};

use crate::provisioning::{Failed, Provisioned};

/// The station's metric families.
pub struct Metrics {
    /// `flashgate_station_devices_total{probe,outcome}`: installs journaled (per-probe
    /// throughput is its rate).
    pub devices: IntCounterVec,
    /// `flashgate_station_targets_failed_total{probe,step,at_fault}`.
    pub failed: IntCounterVec,
    /// `flashgate_station_install_duration_seconds{probe}`.
    pub install_seconds: HistogramVec,
    /// `flashgate_station_phase_duration_seconds{phase}`.
    pub phase_seconds: HistogramVec,
    /// `flashgate_station_rpc_duration_seconds{method,code}`.
    pub rpc_seconds: HistogramVec,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The metrics, when metrics are on.
#[inline]
pub fn get() -> Option<&'static Metrics> {
    if !flashgate_telemetry::metrics_enabled() {
        return None;
    }
    Some(METRICS.get_or_init(|| Metrics {
        devices: register_int_counter_vec!(
            "flashgate_station_devices_total",
            "targets provisioned and verified, by probe and outcome",
            &["probe", "outcome"]
        )
        .expect("metric registers once"),
        failed: register_int_counter_vec!(
            "flashgate_station_targets_failed_total",
            "targets that failed (nothing registered), by probe, failing step and who is at fault",
            &["probe", "step", "at_fault"]
        )
        .expect("metric registers once"),
        install_seconds: register_histogram_vec!(
            "flashgate_station_install_duration_seconds",
            "whole install flow of one target, by probe",
            &["probe"],
            flashgate_telemetry::LATENCY_BUCKETS.to_vec()
        )
        .expect("metric registers once"),
        phase_seconds: register_histogram_vec!(
            "flashgate_station_phase_duration_seconds",
            "time per install phase",
            &["phase"],
            flashgate_telemetry::LATENCY_BUCKETS.to_vec()
        )
        .expect("metric registers once"),
        rpc_seconds: register_histogram_vec!(
            "flashgate_station_rpc_duration_seconds",
            "coordinator call latency seen by the station (AcquireLease = lease latency), by method and code",
            &["method", "code"],
            flashgate_telemetry::LATENCY_BUCKETS.to_vec()
        )
        .expect("metric registers once"),
    }))
}

/// A target finished on `probe`.
pub fn target(probe: &str, result: &Result<Provisioned, Failed>) {
    let Some(m) = get() else { return };
    match result {
        Ok(done) => {
            let outcome = if done.test_failed() {
                "test_failed"
            } else {
                "provisioned"
            };
            m.devices.with_label_values(&[probe, outcome]).inc();
            m.install_seconds
                .with_label_values(&[probe])
                .observe(done.total.as_secs_f64());
            let p = &done.phases;
            for (phase, ms) in [
                ("connect", p.connect),
                ("handshake", p.handshake),
                ("transfer_flash", p.transfer_flash),
                ("test", p.test),
                ("lock", p.lock),
                ("verify", p.verify),
            ] {
                if ms > 0.0 {
                    m.phase_seconds
                        .with_label_values(&[phase])
                        .observe(ms / 1000.0);
                }
            }
        }
        Err(failed) => m
            .failed
            .with_label_values(&[
                probe,
                failed.step.as_str(),
                failed.error.at_fault().as_str(),
            ])
            .inc(),
    }
}

/// A coordinator call finished.
#[inline]
pub fn rpc(method: &str, code: tonic::Code, elapsed: Duration) {
    if let Some(m) = get() {
        m.rpc_seconds
            .with_label_values(&[method, &format!("{code:?}")])
            .observe(elapsed.as_secs_f64());
    }
}
