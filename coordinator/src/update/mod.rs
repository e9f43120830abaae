//! Updates in the field (`docs/protocol.md` §7): publishing an OS release to registered devices
//! ([`campaigns`]), issuing each device its package and checking the status receipts devices
//! send back ([`delivery`]), in waves when it is a staged rollout ([`rollouts`]). What is
//! stored is in [`records`] (and [`rollouts::record`]).
//!
//! The release is encrypted once at publish; a device's envelope (228 bytes: the content key
//! wrapped under a key derived from its device key) is made when its package is asked for.

pub mod campaigns;
pub mod delivery;
pub mod records;
pub mod rollouts;
pub mod service;

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::catalogue::Releases;
use crate::genuineness::evidence::CloneEvidence;
use crate::keys::KekRing;
use crate::provisioning::Registry;
use crate::repository::Db;

pub use campaigns::Campaigns;
pub use delivery::Delivery;
pub use rollouts::Rollouts;
pub use service::UpdateApi;

/// The update flow's parts.
#[derive(Clone)]
pub struct Updates {
    /// Publishing releases to devices.
    pub campaigns: Campaigns,
    /// Packages for devices and the receipts they send back.
    pub delivery: Delivery,
    /// Campaigns delivered in waves.
    pub rollouts: Rollouts,
}

impl Updates {
    /// The update flow over `db`, publishing `releases` to devices in `registry`; secrets are
    /// sealed with `kek`.
    pub fn new(
        db: Db,
        releases: Releases,
        registry: Registry,
        kek: Arc<KekRing>,
        audit: AuditLog,
        evidence: Arc<CloneEvidence>,
    ) -> Self {
        let campaigns = Campaigns::new(
            db.clone(),
            releases,
            registry.clone(),
            kek.clone(),
            audit.clone(),
        );
        Self {
            rollouts: Rollouts::new(db.clone(), campaigns.clone(), registry.clone(), audit),
            campaigns,
            delivery: Delivery::new(db, registry, kek, evidence),
        }
    }
}
