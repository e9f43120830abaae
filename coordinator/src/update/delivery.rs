//! Delivery: a device's package (its envelope, made now under its device key, the campaign's
//! chunks and a fresh receipt challenge) and the check of the receipt it sends back. A device
//! is marked updated only by a verified receipt that shows the target version running and
//! confirmed.

use std::sync::Arc;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::update::boot_state::Outcome;
use flashgate_protocol::update::package::{SealedRelease, CHUNK_SIZE, PACKAGE_NONCE_LEN, TAG_LEN};
use flashgate_protocol::update::receipt::{self, StatusReceipt};
use flashgate_protocol::ErrorCode;
use rand_core::{OsRng, RngCore};

use super::records::{
    content_key_aad, CampaignChunks, CampaignRecord, DeviceUpdateRecord, UpdateState,
};
use super::rollouts;
use crate::error::{CoordinatorError as E, Result};
use crate::genuineness::evidence::CloneEvidence;
use crate::ids::{CampaignId, ProductId, Serial};
use crate::keys::KekRing;
use crate::provisioning::registry::CloneSignal;
use crate::provisioning::Registry;
use crate::repository::{Attempt, CasRetry, Db, Stored, Txn};

/// A device's error code as text (its name when this build knows it).
pub(super) fn code_text(code: u32) -> String {
    ErrorCode::from_u32(code).map_or_else(|| format!("code {code:#x}"), |c| c.to_string())
}

/// Makes each targeted device's package and checks the receipts devices send back.
#[derive(Clone)]
pub struct Delivery {
    db: Db,
    registry: Registry,
    kek: Arc<KekRing>,
    evidence: Arc<CloneEvidence>,
}

impl Delivery {
    /// Delivery over `db`; device keys come from `registry`, content keys are opened with `kek`;
    /// a receipt that cannot come from the device that sent the earlier ones is written as clone
    /// evidence through `evidence`.
    pub fn new(
        db: Db,
        registry: Registry,
        kek: Arc<KekRing>,
        evidence: Arc<CloneEvidence>,
    ) -> Self {
        Self {
            db,
            registry,
            kek,
            evidence,
        }
    }

    async fn targeted(
        &self,
        product_id: ProductId,
        serial: Serial,
    ) -> Result<Stored<DeviceUpdateRecord>> {
        self.db
            .get::<DeviceUpdateRecord>(&(product_id, serial))
            .await?
            .ok_or_else(|| E::NotFound(format!("no update is published for device {serial}")))
    }

    /// The package of one device, with a fresh challenge for its receipt.
    pub async fn package(&self, product_id: u32, serial: &[u8]) -> Result<v1::UpdatePackage> {
        let (product_id, serial) = (ProductId(product_id), Serial::parse(serial)?);
        CasRetry::new("the device's update record")
            .run(|| self.try_package(product_id, serial))
            .await
    }

    async fn try_package(
        &self,
        product_id: ProductId,
        serial: Serial,
    ) -> Result<Attempt<v1::UpdatePackage>> {
        let stored = self.targeted(product_id, serial).await?;
        let rollout = rollouts::gate(&self.db, &stored.record).await?;
        let (package, challenge) = issue(
            &self.db,
            &self.kek,
            &self.registry,
            &stored.record.campaign_id,
            product_id,
            serial,
        )
        .await?;
        let mut record = stored.record.clone();
        record.challenge = Some(challenge);
        if record.state == UpdateState::Pending {
            record.state = UpdateState::Issued;
        }
        let mut txn = Txn::new().unchanged(&stored).replace(&stored, &record);
        if let Some(rollout) = &rollout {
            // Issued only while its wave is still open and the rollout not paused.
            txn = txn.unchanged(rollout);
        }
        let committed = self.db.commit(txn).await?;
        Ok(Attempt::committed(committed, package))
    }

    /// A fresh receipt challenge for a device whose update is under way (the last receipt
    /// showed the new OS on trial): the running OS answers it over the down-link, and its
    /// receipt goes through [`Self::report`] like any other. Replaces any outstanding one.
    pub async fn fresh_challenge(
        &self,
        product_id: u32,
        serial: &[u8],
    ) -> Result<[u8; receipt::CHALLENGE_LEN]> {
        let (product_id, serial) = (ProductId(product_id), Serial::parse(serial)?);
        CasRetry::new("the device's update record")
            .run(|| async {
                let stored = self.targeted(product_id, serial).await?;
                let challenge = receipt_challenge();
                let mut record = stored.record.clone();
                record.challenge = Some(challenge);
                let txn = Txn::new().unchanged(&stored).replace(&stored, &record);
                Ok(Attempt::committed(self.db.commit(txn).await?, challenge))
            })
            .await
    }

    /// Checks a device's receipt against its key and the outstanding challenge, and records
    /// what it says (or records the refusal the field tool reports instead).
    pub async fn report(&self, req: v1::ReportUpdateRequest) -> Result<v1::DeviceUpdateStatus> {
        let (product_id, serial) = (ProductId(req.product_id), Serial::parse(&req.serial)?);
        let status = CasRetry::new("the device's update record")
            .run(|| self.try_report(product_id, serial, &req))
            .await?;
        tracing::info!(%serial, state = %status.state, os_version = status.os_version, "update report");
        Ok(status)
    }

    async fn try_report(
        &self,
        product_id: ProductId,
        serial: Serial,
        req: &v1::ReportUpdateRequest,
    ) -> Result<Attempt<v1::DeviceUpdateStatus>> {
        let stored = self.targeted(product_id, serial).await?;
        let mut record = stored.record.clone();
        if req.receipt.is_empty() {
            record.state = UpdateState::Refused;
            record.detail = format!(
                "device refused the package (reported by the field tool): {}",
                code_text(req.refused_code)
            );
        } else {
            self.apply_receipt(&mut record, &req.receipt).await?;
        }
        let committed = self
            .db
            .commit(Txn::new().unchanged(&stored).replace(&stored, &record))
            .await?;
        Ok(Attempt::committed(committed, record.to_proto()))
    }

    async fn apply_receipt(&self, record: &mut DeviceUpdateRecord, raw: &[u8]) -> Result<()> {
        let challenge = record.challenge.ok_or_else(|| {
            E::FailedPrecondition(
                "no receipt challenge outstanding: fetch the package first".into(),
            )
        })?;
        let (product_id, serial) = (record.product_id, record.serial);
        let device_key = self.registry.device_key(product_id.0, &serial.0).await?;
        let r = verify_receipt(&device_key, &challenge, raw, product_id, serial)?;
        if let Some(detail) = went_back(record, &r) {
            self.evidence
                .record(product_id, serial, CloneSignal::ReceiptWentBack, &detail)
                .await?;
            return Err(E::FailedPrecondition(format!(
                "the receipt verifies but {detail}: it cannot come from the device that sent the \
                 earlier one (two devices behind one identity; clone evidence recorded)"
            )));
        }
        let now = now_ms();
        record.challenge = None;
        record.bootloader_version = r.bootloader_version;
        record.os_version = match r.state {
            DeviceState::OsRunning { version } => version,
            DeviceState::NoValidImage { .. } => 0,
        };
        record.rollback_floor = r.floor;
        record.last_outcome = Some(r.outcome.into());
        record.last_seen_ms = now;
        record.state = if runs_confirmed(&r, record.target_version) {
            record.updated_at_ms = now;
            UpdateState::Updated
        } else if r.outcome == Outcome::RolledBack && r.new_version == record.target_version {
            UpdateState::RolledBack
        } else {
            UpdateState::InProgress
        };
        record.detail = match r.state {
            DeviceState::NoValidImage { reason } => format!("no OS running: {reason}"),
            DeviceState::OsRunning { .. } if r.last_error != 0 => code_text(r.last_error),
            DeviceState::OsRunning { .. } => String::new(),
        };
        Ok(())
    }
}

/// A campaign's release rebuilt from the store: its record, and its chunks with the content key
/// opened from under the KEK, ready to make envelopes. Field updates and the factory's OS
/// installs (`crate::provisioning::factory_packages`) both deliver through it.
pub async fn sealed_release(
    db: &Db,
    kek: &KekRing,
    campaign_id: &CampaignId,
) -> Result<(CampaignRecord, SealedRelease)> {
    let campaign = db
        .get::<CampaignRecord>(campaign_id)
        .await?
        .ok_or_else(|| E::Internal(format!("campaign {campaign_id} is missing")))?
        .record;
    let content_key = kek.open_key(&content_key_aad(campaign_id), &campaign.sealed_content_key)?;
    let blob = db
        .get::<CampaignChunks>(campaign_id)
        .await?
        .ok_or_else(|| E::Internal(format!("the chunks of campaign {campaign_id} are missing")))?
        .record
        .0;
    let chunks: Vec<Vec<u8>> = blob
        .chunks(CHUNK_SIZE as usize + TAG_LEN)
        .map(<[u8]>::to_vec)
        .collect();
    let release = SealedRelease::from_parts(campaign.signed_header, chunks, content_key);
    Ok((campaign, release))
}

/// The package of campaign `campaign_id` for one device: its envelope made now under its
/// device key, the campaign's chunks, and a fresh receipt challenge (also returned, for the
/// caller to store). OS updates and apps (`super::apps`) are issued through it.
pub(super) async fn issue(
    db: &Db,
    kek: &KekRing,
    registry: &Registry,
    campaign_id: &CampaignId,
    product_id: ProductId,
    serial: Serial,
) -> Result<(v1::UpdatePackage, [u8; receipt::CHALLENGE_LEN])> {
    let (campaign, release) = sealed_release(db, kek, campaign_id).await?;
    let device_key = registry.device_key(product_id.0, &serial.0).await?;
    let envelope = envelope_for(&release, product_id, serial, &device_key)?;
    let challenge = receipt_challenge();
    let package = v1::UpdatePackage {
        campaign_id: campaign.campaign_id.to_string(),
        version: campaign.version,
        envelope,
        chunks: release.chunks,
        challenge: challenge.to_vec(),
    };
    Ok((package, challenge))
}

/// One device's envelope for `release`, made now under its device key with a fresh random
/// package nonce (`docs/protocol.md` §7): no two envelopes share a wrap key.
pub fn envelope_for(
    release: &SealedRelease,
    product_id: ProductId,
    serial: Serial,
    device_key: &[u8; 32],
) -> Result<Vec<u8>> {
    let mut nonce = [0u8; PACKAGE_NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    release
        .envelope_for(&serial.0, product_id.0, device_key, &nonce)
        .map(|e| e.to_vec())
        .map_err(|e| E::Internal(format!("envelope: {e}")))
}

/// A fresh challenge for a device's next status receipt.
pub fn receipt_challenge() -> [u8; receipt::CHALLENGE_LEN] {
    let mut challenge = [0u8; receipt::CHALLENGE_LEN];
    OsRng.fill_bytes(&mut challenge);
    challenge
}

/// The one check of a device's status receipt: it answers `challenge`, verifies under the
/// device's key and names that device. What it says is the caller's to judge
/// ([`runs_confirmed`]).
pub fn verify_receipt(
    device_key: &[u8; 32],
    challenge: &[u8; receipt::CHALLENGE_LEN],
    raw: &[u8],
    product_id: ProductId,
    serial: Serial,
) -> Result<StatusReceipt> {
    let r = receipt::verify(device_key, challenge, raw).map_err(|e| {
        E::PermissionDenied(format!("the receipt does not verify for this device: {e}"))
    })?;
    if r.serial != serial.0 || r.product_id != product_id.0 {
        return Err(E::PermissionDenied(
            "the receipt names another device".into(),
        ));
    }
    Ok(r)
}

/// Why verified receipt `r` cannot come from the device whose earlier verified receipt `record`
/// holds: its rollback floor and bootloader version never go down (the bootloader only raises
/// the floor, and refuses an older bootloader). `None`: no earlier receipt, or nothing went back.
pub fn went_back(record: &DeviceUpdateRecord, r: &StatusReceipt) -> Option<String> {
    if record.last_seen_ms == 0 {
        return None;
    }
    if r.floor < record.rollback_floor {
        return Some(format!(
            "shows rollback floor {}, below the {} an earlier receipt showed",
            r.floor, record.rollback_floor
        ));
    }
    (r.bootloader_version < record.bootloader_version).then(|| {
        format!(
            "shows bootloader version {}, below the {} an earlier receipt showed",
            r.bootloader_version, record.bootloader_version
        )
    })
}

/// True when a verified receipt shows OS `version` running, its update confirmed (not on
/// trial): what "updated" means, in the field and for a board leaving the factory.
pub fn runs_confirmed(r: &StatusReceipt, version: u32) -> bool {
    r.outcome == Outcome::Updated && !r.on_trial() && r.state == DeviceState::OsRunning { version }
}
