//! Provisioning: from an approved station to a registered device, with the count kept exact.
//!
//! Read in this order to follow one job:
//! 1. [`service`]: the `StationService` RPCs (each signed, checked by [`station_auth`]);
//! 2. [`leases`]: `AcquireLease` takes slots from the order's [`quota`] into a signed lease;
//! 3. [`certificates`]: `IssueDeviceCertificate` consumes one lease slot per chip and writes
//!    the device (CERTIFIED) into the [`registry`], its key sealed to the chip's loader;
//! 4. [`factory_packages`]: for an order with an OS, `GetFactoryPackage` gives each certified
//!    board its per-device package of that OS under its device key (the station relays it,
//!    ciphertext only);
//! 5. [`reports`]: `ReportInstall` marks the device INSTALLED once its hello proof and the
//!    status receipt of its OS install verify (or records a failed target); `ReturnLease`
//!    ([`leases`]) gives the unused slots back.
//!
//! [`leases`] grants through `grants` (one transaction per grant, or per group of concurrent
//! grants of one order; no store read in the steady state) and [`certificates`] issues the same
//! way; both take the caller as a [`signed_call::SignedCall`], whose station and nonce are guards
//! of that one transaction.
//!
//! [`stations`] holds enrolment and approval, [`nonces`] the replay cache, [`progress`] the
//! operators' view of each order. Expiry of abandoned
//! leases runs in `crate::housekeeping`, through [`leases::Leases::expire`].
//!
//! | key | value |
//! | --- | --- |
//! | `stations/{station_id}` | [`stations::StationRecord`] |
//! | `quota/{order_id}` | [`quota::QuotaRecord`]: slots neither consumed nor leased |
//! | `leases/{lease_id}` | [`leases::LeaseRecord`] (slots, reserved certificate sequence range) |
//! | `devices/{product_id:010}/{serial}` | [`registry::DeviceRecord`] (device key sealed under the KEK, certificate) |
//! | `failures/{order_id}/{lease_id}/{failed_at_ms:013}-{serial or "unknown"}` | [`registry::FailureRecord`] |
//! | `nonces/{station_id}/{nonce}` | [`nonces::NonceRecord`]: request timestamp |
//! | `factory_releases/{order_id}` | [`factory_packages::FactoryReleaseRecord`]: the campaign sealing the order's OS |
//! | `factory_installs/{product_id:010}/{serial}` | [`factory_packages::FactoryInstallRecord`]: the receipt challenge of a board's OS install |

pub mod certificates;
pub mod factory_packages;
mod grants;
pub mod leases;
pub mod nonces;
pub mod progress;
pub mod quota;
pub mod registry;
pub mod reports;
pub mod service;
pub mod signed_call;
pub mod station_auth;
pub mod stations;

use std::sync::Arc;

use ed25519_dalek::SigningKey;

use crate::access::EnrolmentTokens;
use crate::audit::AuditLog;
use crate::catalogue::Catalogue;
use crate::config::CoordinatorConfig;
use crate::keys::KekRing;
use crate::repository::Db;

pub use certificates::Certificates;
pub use factory_packages::FactoryPackages;
pub use leases::{LeaseRecord, LeaseState, Leases};
pub use progress::Progress;
pub use quota::{Quota, QuotaRecord};
pub use registry::{DeviceRecord, DeviceState, FailureRecord, Registry};
pub use reports::Reports;
pub use service::StationApi;
pub use station_auth::StationAuth;
pub use stations::{StationRecord, StationState, Stations};

/// The provisioning flow's parts over one store.
#[derive(Clone)]
pub struct Provisioning {
    /// Enrolment, approval and revocation of stations.
    pub stations: Stations,
    /// Checks the signature, clock and nonce of every station request.
    pub auth: StationAuth,
    /// What is left of each order.
    pub quota: Quota,
    /// How far each order has come (consumed, reserved, remaining, failed).
    pub progress: Progress,
    /// Issuing, returning and expiring leases.
    pub leases: Leases,
    /// Device certificates: one lease slot per chip.
    pub certificates: Certificates,
    /// The per-device packages of the orders' OS releases, and the check of their receipts.
    pub factory_packages: FactoryPackages,
    /// Install reports: a device registered, or a failure recorded.
    pub reports: Reports,
    /// The registered devices and recorded failures.
    pub registry: Registry,
}

impl Provisioning {
    /// The provisioning flow over `db` and `catalogue`; device and lease secrets are sealed with
    /// `kek`, leases signed with `signing_key`, changes audited in `audit`; stations may enrol
    /// with `tokens`.
    pub fn new(
        db: Db,
        catalogue: Catalogue,
        kek: Arc<KekRing>,
        signing_key: Arc<SigningKey>,
        config: Arc<CoordinatorConfig>,
        audit: AuditLog,
        tokens: EnrolmentTokens,
    ) -> Self {
        let stations = Stations::new(db.clone(), audit.clone());
        let auth = StationAuth::new(
            db.clone(),
            stations.clone(),
            tokens,
            config.auth_window,
            config.station_mtls,
        );
        let quota = Quota::new(db.clone(), catalogue.orders.clone(), audit.clone());
        let catalogue_products = catalogue.products.clone();
        let progress = Progress::new(db.clone(), catalogue.orders.clone(), quota.clone());
        let leases = Leases::new(
            db.clone(),
            catalogue.clone(),
            quota.clone(),
            signing_key,
            config.clone(),
            auth.clone(),
        );
        let registry = Registry::new(db.clone(), kek.clone());
        let certificates = Certificates::new(
            db.clone(),
            leases.clone(),
            catalogue_products,
            kek.clone(),
            audit.clone(),
            auth.clone(),
        );
        let factory_packages = FactoryPackages::new(
            db.clone(),
            catalogue,
            leases.clone(),
            registry.clone(),
            kek.clone(),
        );
        let reports = Reports::new(
            db,
            leases.clone(),
            factory_packages.clone(),
            kek,
            config,
            audit,
        );
        Self {
            stations,
            auth,
            quota,
            progress,
            leases,
            certificates,
            factory_packages,
            reports,
            registry,
        }
    }
}
