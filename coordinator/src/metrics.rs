//! The coordinator's Prometheus metrics, registered on first use once telemetry turned metrics on
//! (`--metrics-listen`); with metrics off every function returns after one atomic load.
//! Labels are method names, status codes, outcomes and order ids: never keys.

use std::sync::OnceLock;

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec, HistogramVec,
    IntCounterVec, IntGaugeVec,
};

/// The coordinator's metric families.
pub struct Metrics {
    /// `flashgate_coordinator_rpc_total{method,code}`.
    pub rpcs: IntCounterVec,
    /// `flashgate_coordinator_rpc_duration_seconds{method}`.
    pub rpc_seconds: HistogramVec,
    /// `flashgate_coordinator_store_commit_duration_seconds{outcome}`: one write transaction's
    /// round trip to the store, inside the handler's latency.
    pub store_commit_seconds: HistogramVec,
    /// `flashgate_coordinator_devices_registered_total{outcome}`.
    pub devices: IntCounterVec,
    /// `flashgate_coordinator_reports_refused_total{code}`.
    pub reports_refused: IntCounterVec,
    /// `flashgate_coordinator_quota_remaining{order}`.
    pub quota_remaining: IntGaugeVec,
    /// `flashgate_coordinator_leases_granted_total`, `…_slots_granted_total` by order.
    pub leases_granted: IntCounterVec,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The metrics, when metrics are on.
#[inline]
pub fn get() -> Option<&'static Metrics> {
    if !flashgate_telemetry::metrics_enabled() {
        return None;
    }
    Some(METRICS.get_or_init(|| {
        Metrics {
            rpcs: register_int_counter_vec!(
                "flashgate_coordinator_rpc_total",
                "gRPC calls served, by method and status code",
                &["method", "code"]
            )
            .expect("metric registers once"),
            rpc_seconds: register_histogram_vec!(
                "flashgate_coordinator_rpc_duration_seconds",
                "gRPC call latency (handler), by method",
                &["method"],
                flashgate_telemetry::LATENCY_BUCKETS.to_vec()
            )
            .expect("metric registers once"),
            store_commit_seconds: register_histogram_vec!(
                "flashgate_coordinator_store_commit_duration_seconds",
                "write transactions' store round trip, by outcome (committed, refused, failed)",
                &["outcome"],
                flashgate_telemetry::LATENCY_BUCKETS.to_vec()
            )
            .expect("metric registers once"),
            devices: register_int_counter_vec!(
                "flashgate_coordinator_devices_registered_total",
                "devices written to the registry, by install outcome",
                &["outcome"]
            )
            .expect("metric registers once"),
            reports_refused: register_int_counter_vec!(
                "flashgate_coordinator_reports_refused_total",
                "install reports refused, by status code",
                &["code"]
            )
            .expect("metric registers once"),
            quota_remaining: register_int_gauge_vec!(
                "flashgate_coordinator_quota_remaining",
                "unreserved slots left per order (as of this replica's last change to it)",
                &["order"]
            )
            .expect("metric registers once"),
            leases_granted: register_int_counter_vec!(
                "flashgate_coordinator_slots_granted_total",
                "lease slots granted, by order",
                &["order"]
            )
            .expect("metric registers once"),
        }
    }))
}

/// One RPC finished.
#[inline]
pub fn rpc(method: &str, code: tonic::Code, seconds: f64) {
    if let Some(m) = get() {
        m.rpcs
            .with_label_values(&[method, &format!("{code:?}")])
            .inc();
        m.rpc_seconds.with_label_values(&[method]).observe(seconds);
    }
}

/// How a write transaction sent to the store came out.
#[derive(Clone, Copy, Debug)]
pub enum CommitOutcome {
    /// Its guards held and it was applied.
    Committed,
    /// A guard did not hold; nothing was written.
    Refused,
    /// The store did not answer (or answered with an error).
    Failed,
}

impl CommitOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Committed => "committed",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// One write transaction's store round trip finished.
#[inline]
pub fn store_commit(outcome: CommitOutcome, seconds: f64) {
    if let Some(m) = get() {
        m.store_commit_seconds
            .with_label_values(&[outcome.label()])
            .observe(seconds);
    }
}

/// A report's result.
#[inline]
pub fn report(result: Result<&flashgate_proto::v1::ReportInstallResponse, &tonic::Status>) {
    let Some(m) = get() else { return };
    match result {
        Ok(response) => {
            let outcome = response
                .device
                .as_ref()
                .and_then(|d| flashgate_proto::v1::InstallOutcome::try_from(d.outcome).ok())
                .map(|o| {
                    o.as_str_name()
                        .trim_start_matches("INSTALL_OUTCOME_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|| "unknown".into());
            m.devices.with_label_values(&[&outcome]).inc();
        }
        Err(status) => m
            .reports_refused
            .with_label_values(&[&format!("{:?}", status.code())])
            .inc(),
    }
}

/// An order's unreserved slots after a committed change.
#[inline]
pub fn quota_remaining(order_id: &str, remaining: u64) {
    if let Some(m) = get() {
        m.quota_remaining
            .with_label_values(&[order_id])
            .set(remaining.min(i64::MAX as u64) as i64);
    }
}

/// Slots granted under a new lease.
#[inline]
pub fn granted(order_id: &str, slots: u32) {
    if let Some(m) = get() {
        m.leases_granted
            .with_label_values(&[order_id])
            .inc_by(u64::from(slots));
    }
}
