//! What the update flow stores.
//!
//! | key | value |
//! | --- | --- |
//! | `update_campaigns/{campaign_id}` | [`CampaignRecord`] (content key sealed under the KEK) |
//! | `update_chunks/{campaign_id}` | [`CampaignChunks`]: the release's ciphertext chunks, concatenated |
//! | `device_updates/{product_id:010}/{serial}` | [`DeviceUpdateRecord`] |

use flashgate_proto::v1;
use flashgate_protocol::image::SIGNED_HEADER_LEN;
use flashgate_protocol::update::boot_state::Outcome;
use flashgate_protocol::update::receipt::CHALLENGE_LEN;
use serde::{Deserialize, Serialize};

use crate::ids::{CampaignId, Digest, ProductId, Serial};
use crate::repository::{hex, JsonRecord, Record};

/// AAD binding a sealed content key to its campaign.
pub fn content_key_aad(campaign_id: &CampaignId) -> Vec<u8> {
    [
        b"flashgate-update-content-key-v1:".as_slice(),
        campaign_id.as_str().as_bytes(),
    ]
    .concat()
}

/// `update_campaigns/{campaign_id}`: one OS release encrypted once, for a set of devices.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CampaignRecord {
    /// The campaign's id, chosen by the coordinator.
    pub campaign_id: CampaignId,
    /// The product whose devices it targets.
    pub product_id: ProductId,
    /// The OS release it delivers.
    pub release_digest: Digest,
    /// That release's version: a device is updated once it runs it, confirmed.
    pub version: u32,
    /// The release's vendor-signed header, sent in clear in every package.
    #[serde(with = "hex")]
    pub signed_header: [u8; SIGNED_HEADER_LEN],
    /// The content key sealed under the KEK, AAD [`content_key_aad`].
    #[serde(with = "hex")]
    pub sealed_content_key: Vec<u8>,
    /// When it was published (Unix milliseconds).
    pub created_at_ms: i64,
}

impl JsonRecord for CampaignRecord {
    const PREFIX: &'static str = "update_campaigns/";
    type Key = CampaignId;
}

/// `update_chunks/{campaign_id}`: ciphertext chunks of `CHUNK_SIZE + TAG_LEN` bytes (the last
/// one shorter), stored as one value.
pub struct CampaignChunks(pub Vec<u8>);

impl Record for CampaignChunks {
    const PREFIX: &'static str = "update_chunks/";
    type Key = CampaignId;
    fn encode(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        Ok(Self(bytes.to_vec()))
    }
}

/// Where a targeted device is in its update, as shown to operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateState {
    /// Targeted; its package was not fetched yet.
    Pending,
    /// Its package was fetched; no receipt yet.
    Issued,
    /// The device refused the package (reported by the field tool).
    Refused,
    /// A verified receipt shows the update under way (trial boot, or another version running).
    InProgress,
    /// A verified receipt shows the target version running and confirmed.
    Updated,
    /// A verified receipt shows the device went back from the target version.
    RolledBack,
}

impl UpdateState {
    /// The state's name as the API and the CLI show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Issued => "issued",
            Self::Refused => "refused",
            Self::InProgress => "in-progress",
            Self::Updated => "updated",
            Self::RolledBack => "rolled-back",
        }
    }
}

/// The outcome a device's boot state reported (in its last verified receipt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportedOutcome {
    /// No update yet.
    None,
    /// The new image runs and confirmed itself.
    Updated,
    /// The new image failed; the bootloader restored the old one.
    RolledBack,
    /// An install was under way when the receipt was made.
    InProgress,
}

impl From<Outcome> for ReportedOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::None => Self::None,
            Outcome::Updated => Self::Updated,
            Outcome::RolledBack => Self::RolledBack,
            Outcome::InProgress => Self::InProgress,
        }
    }
}

impl ReportedOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Updated => "updated",
            Self::RolledBack => "rolled-back",
            Self::InProgress => "in-progress",
        }
    }
}

/// `device_updates/{product_id:010}/{serial}`: a targeted device's latest campaign and what its
/// receipts said.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceUpdateRecord {
    /// The device.
    pub serial: Serial,
    /// Its product.
    pub product_id: ProductId,
    /// The latest campaign that targets it.
    pub campaign_id: CampaignId,
    /// The OS version that campaign delivers.
    pub target_version: u32,
    /// Where the device is in that update.
    pub state: UpdateState,
    /// The challenge the next receipt must answer (`""` when none is outstanding).
    #[serde(with = "hex::optional")]
    pub challenge: Option<[u8; CHALLENGE_LEN]>,
    /// The bootloader version its last verified receipt showed.
    pub bootloader_version: u32,
    /// The OS version its last verified receipt showed running (0: none runs).
    pub os_version: u32,
    /// `""` until a receipt was verified.
    #[serde(with = "hex::or_empty")]
    pub last_outcome: Option<ReportedOutcome>,
    /// The lowest OS version its bootloader still accepts (anti-rollback), per its last receipt.
    pub rollback_floor: u32,
    /// When its last receipt was verified (Unix milliseconds; 0: never).
    pub last_seen_ms: i64,
    /// When a receipt last showed the target version running, confirmed (0: not yet).
    pub updated_at_ms: i64,
    /// What went wrong, if anything: a refusal, the device's last error, why no OS runs.
    pub detail: String,
}

impl JsonRecord for DeviceUpdateRecord {
    const PREFIX: &'static str = "device_updates/";
    type Key = (ProductId, Serial);
}

impl DeviceUpdateRecord {
    /// A device targeted for the first time: pending, nothing known from receipts yet.
    pub fn first_target(
        serial: Serial,
        product_id: ProductId,
        campaign_id: CampaignId,
        target_version: u32,
    ) -> Self {
        Self {
            serial,
            product_id,
            campaign_id,
            target_version,
            state: UpdateState::Pending,
            challenge: None,
            bootloader_version: 0,
            os_version: 0,
            last_outcome: None,
            rollback_floor: 0,
            last_seen_ms: 0,
            updated_at_ms: 0,
            detail: String::new(),
        }
    }

    /// The device's update status as the API shows it.
    pub fn to_proto(&self) -> v1::DeviceUpdateStatus {
        v1::DeviceUpdateStatus {
            serial: self.serial.0.to_vec(),
            product_id: self.product_id.0,
            campaign_id: self.campaign_id.to_string(),
            target_version: self.target_version,
            state: self.state.as_str().to_owned(),
            bootloader_version: self.bootloader_version,
            os_version: self.os_version,
            last_outcome: self
                .last_outcome
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default(),
            last_seen_ms: self.last_seen_ms,
            updated_at_ms: self.updated_at_ms,
            rollback_floor: self.rollback_floor,
            detail: self.detail.clone(),
            // The app slot's fields come from the device's app record (`super::apps`).
            ..Default::default()
        }
    }
}
