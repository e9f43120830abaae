//! Apps delivered like OS updates: an app release is published as a campaign (encrypted once,
//! [`super::campaigns`]), each targeted device gets its package (its own envelope, the shared
//! chunks) and a fresh app receipt challenge, and an app counts as installed only when the
//! device's app receipt, verified under its key, shows the target version in its slot.
//!
//! | key | value |
//! | --- | --- |
//! | `device_apps/{product_id:010}/{serial}` | [`DeviceAppRecord`] |
//!
//! An app campaign has its own per-device record, so publishing an app never disturbs an OS
//! campaign of the same device (and the reverse).

use std::sync::Arc;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::app::receipt::{self, AppReceipt, CHALLENGE_LEN};
use serde::{Deserialize, Serialize};

use super::delivery::{code_text, issue};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{CampaignId, ProductId, Serial};
use crate::keys::KekRing;
use crate::provisioning::Registry;
use crate::repository::{hex, Attempt, CasRetry, Db, JsonRecord, Stored, Txn};

/// Where a targeted device is with its app, as shown to operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppState {
    /// Targeted; its package was not fetched yet.
    Pending,
    /// Its package was fetched; no receipt yet.
    Issued,
    /// The device refused the package (reported by the field tool, unauthenticated).
    Refused,
    /// A verified receipt shows another app (or none) in the slot.
    InProgress,
    /// A verified receipt shows the target version in the slot.
    Installed,
}

impl AppState {
    /// The state's name as the API and the CLI show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Issued => "issued",
            Self::Refused => "refused",
            Self::InProgress => "in-progress",
            Self::Installed => "installed",
        }
    }
}

/// `device_apps/{product_id:010}/{serial}`: a device's latest app campaign and what its app
/// receipts said.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceAppRecord {
    /// The device.
    pub serial: Serial,
    /// Its product.
    pub product_id: ProductId,
    /// The latest app campaign that targets it.
    pub campaign_id: CampaignId,
    /// The app version that campaign delivers.
    pub target_version: u32,
    /// Where the device is with that app.
    pub state: AppState,
    /// The challenge the next app receipt must answer (`""` when none is outstanding).
    #[serde(with = "hex::optional")]
    pub challenge: Option<[u8; CHALLENGE_LEN]>,
    /// The app version its last verified receipt showed in the slot (0: none).
    pub app_version: u32,
    /// Its app floor, per its last receipt.
    pub app_floor: u32,
    /// When its last receipt was verified (Unix milliseconds; 0: never).
    pub last_seen_ms: i64,
    /// When a receipt last showed the target version installed (0: not yet).
    pub installed_at_ms: i64,
    /// What went wrong, if anything: a refusal, why no app verifies.
    pub detail: String,
}

impl JsonRecord for DeviceAppRecord {
    const PREFIX: &'static str = "device_apps/";
    type Key = (ProductId, Serial);
}

impl DeviceAppRecord {
    /// The device targeted by app campaign `campaign_id` (version `target_version`): pending;
    /// what earlier receipts said is kept.
    pub fn targeted(
        existing: Option<Self>,
        serial: Serial,
        product_id: ProductId,
        campaign_id: CampaignId,
        target_version: u32,
    ) -> Self {
        let known = existing.unwrap_or(Self {
            serial,
            product_id,
            campaign_id: campaign_id.clone(),
            target_version,
            state: AppState::Pending,
            challenge: None,
            app_version: 0,
            app_floor: 0,
            last_seen_ms: 0,
            installed_at_ms: 0,
            detail: String::new(),
        });
        Self {
            campaign_id,
            target_version,
            state: AppState::Pending,
            challenge: None,
            detail: String::new(),
            ..known
        }
    }

    /// Adds the app fields to a device's update status.
    pub fn fill(&self, status: &mut v1::DeviceUpdateStatus) {
        status.app_campaign_id = self.campaign_id.to_string();
        status.app_target_version = self.target_version;
        status.app_state = self.state.as_str().to_owned();
        status.app_version = self.app_version;
        status.app_floor = self.app_floor;
        status.app_detail = self.detail.clone();
        status.app_installed_at_ms = self.installed_at_ms;
    }
}

/// Makes each targeted device's app package and checks the app receipts devices send back.
#[derive(Clone)]
pub struct AppDelivery {
    db: Db,
    registry: Registry,
    kek: Arc<KekRing>,
}

impl AppDelivery {
    /// App delivery over `db`; device keys come from `registry`, content keys are opened with
    /// `kek`.
    pub fn new(db: Db, registry: Registry, kek: Arc<KekRing>) -> Self {
        Self { db, registry, kek }
    }

    async fn targeted(
        &self,
        product_id: ProductId,
        serial: Serial,
    ) -> Result<Stored<DeviceAppRecord>> {
        self.db
            .get::<DeviceAppRecord>(&(product_id, serial))
            .await?
            .ok_or_else(|| E::NotFound(format!("no app is published for device {serial}")))
    }

    /// The app package of one device, with a fresh challenge for its app receipt.
    pub async fn package(&self, product_id: u32, serial: &[u8]) -> Result<v1::UpdatePackage> {
        let (product_id, serial) = (ProductId(product_id), Serial::parse(serial)?);
        CasRetry::new("the device's app record")
            .run(|| self.try_package(product_id, serial))
            .await
    }

    async fn try_package(
        &self,
        product_id: ProductId,
        serial: Serial,
    ) -> Result<Attempt<v1::UpdatePackage>> {
        let stored = self.targeted(product_id, serial).await?;
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
        if record.state == AppState::Pending {
            record.state = AppState::Issued;
        }
        let committed = self
            .db
            .commit(Txn::new().unchanged(&stored).replace(&stored, &record))
            .await?;
        Ok(Attempt::committed(committed, package))
    }

    /// Checks a device's app receipt against its key and the outstanding challenge and records
    /// what it says (or records the refusal the field tool reports instead). Returns the
    /// device's whole update status.
    pub async fn report(&self, req: v1::ReportUpdateRequest) -> Result<DeviceAppRecord> {
        let (product_id, serial) = (ProductId(req.product_id), Serial::parse(&req.serial)?);
        let record = CasRetry::new("the device's app record")
            .run(|| self.try_report(product_id, serial, &req))
            .await?;
        tracing::info!(%serial, state = record.state.as_str(), app_version = record.app_version, "app report");
        Ok(record)
    }

    async fn try_report(
        &self,
        product_id: ProductId,
        serial: Serial,
        req: &v1::ReportUpdateRequest,
    ) -> Result<Attempt<DeviceAppRecord>> {
        let stored = self.targeted(product_id, serial).await?;
        let mut record = stored.record.clone();
        if req.receipt.is_empty() {
            record.state = AppState::Refused;
            record.detail = format!(
                "device refused the app package (reported by the field tool): {}",
                code_text(req.refused_code)
            );
        } else {
            let challenge = record.challenge.ok_or_else(|| {
                E::FailedPrecondition(
                    "no app receipt challenge outstanding: fetch the app package first".into(),
                )
            })?;
            let device_key = self.registry.device_key(product_id.0, &serial.0).await?;
            let r = verify_app_receipt(&device_key, &challenge, &req.receipt, product_id, serial)?;
            apply(&mut record, &r, now_ms());
        }
        let committed = self
            .db
            .commit(Txn::new().unchanged(&stored).replace(&stored, &record))
            .await?;
        Ok(Attempt::committed(committed, record))
    }
}

/// What a verified app receipt says, recorded: the challenge is spent.
fn apply(record: &mut DeviceAppRecord, r: &AppReceipt, now: i64) {
    record.challenge = None;
    record.app_version = r.version;
    record.app_floor = r.floor;
    record.last_seen_ms = now;
    record.state = if r.version == record.target_version && r.reason.is_none() {
        record.installed_at_ms = now;
        AppState::Installed
    } else {
        AppState::InProgress
    };
    record.detail = match r.reason {
        Some(reason) => format!("no app verifies in the slot: {reason}"),
        None if r.version != record.target_version => {
            format!("version {} is in the slot", r.version)
        }
        None => String::new(),
    };
}

/// The one check of an app receipt: it answers `challenge`, verifies under the device's key
/// and names that device.
fn verify_app_receipt(
    device_key: &[u8; 32],
    challenge: &[u8; CHALLENGE_LEN],
    raw: &[u8],
    product_id: ProductId,
    serial: Serial,
) -> Result<AppReceipt> {
    let r = receipt::verify(device_key, challenge, raw).map_err(|e| {
        E::PermissionDenied(format!(
            "the app receipt does not verify for this device: {e}"
        ))
    })?;
    if r.serial != serial.0 || r.product_id != product_id.0 {
        return Err(E::PermissionDenied(
            "the app receipt names another device".into(),
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_receipt_showing_the_target_version_marks_the_app_installed() {
        let serial = Serial([1; 16]);
        let campaign = CampaignId::random();
        let mut record = DeviceAppRecord::targeted(None, serial, ProductId(7), campaign, 4);
        record.challenge = Some([2; 32]);
        let shown = |version, reason| AppReceipt {
            serial: serial.0,
            product_id: 7,
            version,
            floor: version,
            reason,
        };
        apply(&mut record, &shown(3, None), 10);
        assert_eq!(record.state, AppState::InProgress);
        assert_eq!(record.detail, "version 3 is in the slot");
        assert_eq!(record.challenge, None);
        apply(
            &mut record,
            &shown(0, Some(flashgate_protocol::ErrorCode::NoValidImage)),
            11,
        );
        assert_eq!(
            (record.state, record.installed_at_ms),
            (AppState::InProgress, 0)
        );
        apply(&mut record, &shown(4, None), 12);
        assert_eq!(
            (record.state, record.app_version, record.installed_at_ms),
            (AppState::Installed, 4, 12)
        );
        // A new campaign keeps what the receipts said and starts pending.
        let next =
            DeviceAppRecord::targeted(Some(record), serial, ProductId(7), CampaignId::random(), 5);
        assert_eq!(
            (next.state, next.app_version, next.target_version),
            (AppState::Pending, 4, 5)
        );
    }
}
