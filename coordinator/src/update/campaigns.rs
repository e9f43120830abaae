//! Publishing: an OS or app release is encrypted once into a campaign and the targeted devices
//! are marked pending (an OS campaign in their update record, an app campaign in their app
//! record, [`super::apps`]); operators follow them with the status queries.

use std::sync::Arc;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::update::package::SealedRelease;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::apps::DeviceAppRecord;
use super::records::{
    content_key_aad, CampaignChunks, CampaignRecord, DeviceUpdateRecord, UpdateState,
};
use crate::audit::{Actor, AuditLog, Entry};
use crate::catalogue::{ReleaseKind, ReleaseRecord, Releases};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{CampaignId, ProductId, Serial};
use crate::keys::KekRing;
use crate::provisioning::Registry;
use crate::repository::{Db, Scope, Txn};

/// Encrypts an OS release once under a fresh random content key, as campaign `campaign_id`
/// (the key sealed under the KEK, AAD [`content_key_aad`]) and its ciphertext chunks, ready to
/// be written. The field updates' campaigns and the factory's OS installs
/// (`crate::provisioning::factory_packages`) are both made here.
pub fn seal_campaign(
    kek: &KekRing,
    campaign_id: CampaignId,
    release: &ReleaseRecord,
    image: &[u8],
) -> Result<(CampaignRecord, CampaignChunks)> {
    let mut key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut key[..]);
    let sealed = SealedRelease::seal(image, key)
        .map_err(|e| E::Internal(format!("release cannot be sealed: {e}")))?;
    let campaign = CampaignRecord {
        sealed_content_key: kek.seal(&content_key_aad(&campaign_id), sealed.content_key()),
        campaign_id,
        product_id: release.product_id,
        release_digest: release.digest,
        version: release.version,
        signed_header: sealed.signed_header,
        created_at_ms: now_ms(),
    };
    Ok((campaign, CampaignChunks(sealed.chunks.concat())))
}

/// Which devices a campaign targets, as a request names them.
pub struct Targets<'a> {
    /// These devices (16-byte serials) …
    pub serials: &'a [Vec<u8>],
    /// … and every device registered under this order (when not empty) …
    pub order_id: &'a str,
    /// … or every registered device of the release's product.
    pub all_devices: bool,
}

/// Publishes OS releases as update campaigns: the release encrypted once under a fresh
/// content key, and the devices it targets.
#[derive(Clone)]
pub struct Campaigns {
    db: Db,
    releases: Releases,
    registry: Registry,
    kek: Arc<KekRing>,
    audit: AuditLog,
}

impl Campaigns {
    /// Campaigns over `db`, reading `releases` and `registry`; content keys are sealed with
    /// `kek`.
    pub fn new(
        db: Db,
        releases: Releases,
        registry: Registry,
        kek: Arc<KekRing>,
        audit: AuditLog,
    ) -> Self {
        Self {
            db,
            releases,
            registry,
            kek,
            audit,
        }
    }

    /// Encrypts an uploaded OS or app release once and targets devices with it.
    pub async fn publish(
        &self,
        by: &Actor,
        req: v1::PublishUpdateRequest,
    ) -> Result<v1::PublishUpdateResponse> {
        let (release, image) = self.releases.with_image(&req.release_digest).await?;
        if !matches!(release.kind, ReleaseKind::Os | ReleaseKind::App) {
            return Err(E::InvalidArgument(format!(
                "only OS and app releases can be published to devices, not {}",
                release.kind.described()
            )));
        }
        let targets = Targets {
            serials: &req.serials,
            order_id: &req.order_id,
            all_devices: req.all_devices,
        };
        let serials = self.targets(&release, &targets).await?;
        let campaign_id = CampaignId::random();
        self.launch(by, &campaign_id, &release, &image, &serials, Txn::new())
            .await?;
        Ok(v1::PublishUpdateResponse {
            campaign_id: campaign_id.to_string(),
            devices: serials.len() as u32,
            version: release.version,
        })
    }

    /// An uploaded OS release and its image (any other kind is refused).
    pub(super) async fn os_release(
        &self,
        digest: &[u8],
    ) -> Result<(ReleaseRecord, Zeroizing<Vec<u8>>)> {
        let (release, image) = self.releases.with_image(digest).await?;
        if release.kind != ReleaseKind::Os {
            return Err(E::InvalidArgument(
                "only OS releases can be published as updates".into(),
            ));
        }
        Ok((release, image))
    }

    /// The devices `targets` names, sorted, each once; refused if there are none.
    pub(super) async fn targets(
        &self,
        release: &ReleaseRecord,
        targets: &Targets<'_>,
    ) -> Result<Vec<Serial>> {
        let mut serials = targets
            .serials
            .iter()
            .map(|s| Serial::parse(s))
            .collect::<Result<Vec<_>>>()?;
        if targets.all_devices || !targets.order_id.is_empty() {
            serials.extend(
                self.registry
                    .devices(Some(release.product_id))
                    .await?
                    .into_iter()
                    .map(|d| d.record)
                    .filter(|d| targets.all_devices || d.order_id.as_str() == targets.order_id)
                    .map(|d| d.serial),
            );
        }
        serials.sort();
        serials.dedup();
        if serials.is_empty() {
            return Err(E::InvalidArgument(
                "no target devices: give serials, an order, or all devices".into(),
            ));
        }
        Ok(serials)
    }

    /// Seals `image` under a fresh content key as campaign `campaign_id` and marks `serials`
    /// pending, in one transaction with `txn`'s guards and writes (a rollout's record).
    pub(super) async fn launch(
        &self,
        by: &Actor,
        campaign_id: &CampaignId,
        release: &ReleaseRecord,
        image: &[u8],
        serials: &[Serial],
        txn: Txn,
    ) -> Result<()> {
        let (campaign, chunks) = seal_campaign(&self.kek, campaign_id.clone(), release, image)?;
        let mut txn = txn
            .absent::<CampaignRecord>(campaign_id)
            .put(campaign_id, &campaign)
            .put(campaign_id, &chunks);
        for serial in serials {
            txn = self.target(txn, campaign_id, release, *serial).await?;
        }
        let entry = Entry::new(by, "update published", campaign_id).detail(format!(
            "{} release {} (version {}) to {} devices",
            release.kind.described(),
            release.digest,
            release.version,
            serials.len()
        ));
        let txn = self.audit.append_global(txn, entry).await?;
        if !self.db.commit(txn).await? {
            return Err(E::Unavailable(
                "another trust change was recorded at the same moment; publish again".into(),
            ));
        }
        tracing::info!(campaign = %campaign_id, devices = serials.len(), version = release.version, "update published");
        Ok(())
    }

    /// Marks `serial` pending for `campaign_id` in `txn`: in its update record for an OS, in
    /// its app record for an app. A device keeps what its receipts said across campaigns.
    async fn target(
        &self,
        txn: Txn,
        campaign_id: &CampaignId,
        release: &ReleaseRecord,
        serial: Serial,
    ) -> Result<Txn> {
        let key = (release.product_id, serial);
        if release.kind == ReleaseKind::App {
            let existing = self.db.get::<DeviceAppRecord>(&key).await?;
            let record = DeviceAppRecord::targeted(
                existing.map(|s| s.record),
                serial,
                release.product_id,
                campaign_id.clone(),
                release.version,
            );
            return Ok(txn.put(&key, &record));
        }
        let record = match self.db.get::<DeviceUpdateRecord>(&key).await? {
            Some(existing) => DeviceUpdateRecord {
                campaign_id: campaign_id.clone(),
                target_version: release.version,
                state: UpdateState::Pending,
                challenge: None,
                detail: String::new(),
                ..existing.record
            },
            None => DeviceUpdateRecord::first_target(
                serial,
                release.product_id,
                campaign_id.clone(),
                release.version,
            ),
        };
        Ok(txn.put(&key, &record))
    }

    /// Every targeted device of a product (optionally of one campaign).
    pub async fn status(
        &self,
        product_id: u32,
        campaign_id: &str,
    ) -> Result<Vec<v1::DeviceUpdateStatus>> {
        Ok(self
            .db
            .list(Scope::<DeviceUpdateRecord>::under(&ProductId(product_id)))
            .await?
            .iter()
            .map(|r| &r.record)
            .filter(|r| campaign_id.is_empty() || r.campaign_id.as_str() == campaign_id)
            .map(DeviceUpdateRecord::to_proto)
            .collect())
    }

    /// One device's status (registered devices only; state "none" before any update).
    pub async fn device_status(
        &self,
        product_id: u32,
        serial: &[u8],
    ) -> Result<v1::DeviceUpdateStatus> {
        let device = self.registry.get_device(product_id, serial).await?;
        let key = (ProductId(product_id), Serial::parse(serial)?);
        let mut status = match self.db.get::<DeviceUpdateRecord>(&key).await? {
            Some(r) => r.record.to_proto(),
            None => v1::DeviceUpdateStatus {
                serial: serial.to_vec(),
                product_id,
                state: "none".into(),
                bootloader_version: device.bootloader_version,
                ..Default::default()
            },
        };
        match self.db.get::<DeviceAppRecord>(&key).await? {
            Some(app) => app.record.fill(&mut status),
            None => status.app_state = "none".into(),
        }
        Ok(status)
    }
}
