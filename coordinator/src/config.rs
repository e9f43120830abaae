//! The coordinator's tunables; the defaults suit production.

use std::time::Duration;

use rand_core::{OsRng, RngCore};

/// Limits and timings of one coordinator replica (leases, request signatures, housekeeping).
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Validity of a lease when the station asks for none.
    pub default_lease_validity: Duration,
    /// Longest validity a station may ask for.
    pub max_lease_validity: Duration,
    /// Most devices one lease may cover.
    pub max_lease_count: u32,
    /// How long after a lease's not-after installs done before it may still be reported.
    pub report_grace: Duration,
    /// Accepted clock difference for signed station requests (each side).
    pub auth_window: Duration,
    /// This replica's name in the housekeeping election.
    pub node_id: String,
    /// How often the leader looks for expired leases and stale nonces.
    pub sweep_interval: Duration,
    /// Station calls must come over mutual TLS with the station's identity certificate. Off
    /// only for a coordinator served with `--insecure-plaintext`.
    pub station_mtls: bool,
    /// Sealed data records per second one source address may send, sustained (with a burst
    /// of two seconds' worth); beyond it records are refused unread. Every device behind one
    /// NAT address shares it.
    pub data_source_rate: u32,
}

/// [`CoordinatorConfig::data_source_rate`] unless set (`--data-source-rate`).
pub const DEFAULT_DATA_SOURCE_RATE: u32 = 5_000;

impl Default for CoordinatorConfig {
    fn default() -> Self {
        let mut id = [0u8; 6];
        OsRng.fill_bytes(&mut id);
        Self {
            default_lease_validity: Duration::from_secs(8 * 3600),
            max_lease_validity: Duration::from_secs(7 * 24 * 3600),
            max_lease_count: 100_000,
            report_grace: Duration::from_secs(3600),
            auth_window: Duration::from_secs(120),
            node_id: format!("coordinator-{}", hex::encode(id)),
            sweep_interval: Duration::from_secs(2),
            station_mtls: true,
            data_source_rate: DEFAULT_DATA_SOURCE_RATE,
        }
    }
}
