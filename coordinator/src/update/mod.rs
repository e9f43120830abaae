//! Updates in the field (`docs/protocol.md` §7): publishing an OS or app release to registered
//! devices ([`campaigns`]), issuing each device its package and checking the status receipts
//! devices send back ([`delivery`]; for apps, the app receipts: [`apps`]), in waves when it is
//! a staged rollout of an OS ([`rollouts`]). What is stored is in [`records`] (and
//! [`rollouts::record`], [`apps::DeviceAppRecord`]).
//!
//! The release is encrypted once at publish; a device's envelope (228 bytes: the content key
//! wrapped under a key derived from its device key) is made when its package is asked for.

pub mod apps;
pub mod campaigns;
pub mod delivery;
pub mod records;
pub mod rollouts;
pub mod service;

use std::sync::Arc;

use flashgate_proto::v1;

use crate::audit::AuditLog;
use crate::catalogue::Releases;
use crate::error::Result;
use crate::genuineness::evidence::CloneEvidence;
use crate::ids::CampaignId;
use crate::keys::KekRing;
use crate::provisioning::Registry;
use crate::repository::Db;

pub use apps::AppDelivery;
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
    /// App packages for devices and the app receipts they send back.
    pub apps: AppDelivery,
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
            apps: AppDelivery::new(db.clone(), registry.clone(), kek.clone()),
            delivery: Delivery::new(db, registry, kek, evidence),
        }
    }
}

impl Updates {
    /// Records what a device reports (a receipt, or a refusal: [`Delivery::report`]) and steps
    /// its rollout at once, as the receipt may pass a wave's gate or trip its threshold. The
    /// field tool's RPC and the device gateway both report through here.
    pub async fn report(&self, req: v1::ReportUpdateRequest) -> Result<v1::DeviceUpdateStatus> {
        let status = self.delivery.report(req).await?;
        self.step_rollout(&status.campaign_id).await;
        Ok(status)
    }

    /// The report is committed already, so a failure here only delays the step to the
    /// housekeeping sweep.
    async fn step_rollout(&self, campaign_id: &str) {
        let Ok(id) = CampaignId::parse(campaign_id) else {
            return;
        };
        if let Err(error) = rollouts::advance(self.rollouts.db(), self.rollouts.audit(), &id).await
        {
            tracing::warn!(rollout = %id, %error, "rollout step after a report failed; the sweep retries");
        }
    }
}
