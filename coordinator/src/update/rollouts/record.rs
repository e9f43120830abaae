//! What a rollout stores.
//!
//! | key | value |
//! | --- | --- |
//! | `update_rollouts/{campaign_id}` | [`RolloutRecord`]: its waves (the serials of each), gate, state |
//!
//! A rollout is a campaign (`update_campaigns/{campaign_id}`, the same id) whose devices get
//! their package wave by wave. Its record changes only when a wave opens, it pauses, resumes or
//! completes; receipts change the devices' own records, from which its progress is counted.
//! Every serial is in the record (about 40 bytes of JSON each): etcd's 1.5 MiB value limit
//! bounds a rollout to some 30 000 devices.

use serde::{Deserialize, Serialize};

use crate::ids::{CampaignId, OrderId, ProductId, Serial};
use crate::repository::JsonRecord;

/// How far a wave reaches, cumulatively over the targets left after the groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaveSize {
    /// This percentage of them (rounded up), 1-100.
    Percent(u32),
    /// This many of them.
    Count(u32),
}

/// Failures above this pause a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Threshold {
    /// Failures over the devices of the open waves, in percent (0-100).
    Percent(u32),
    /// A number of failures.
    Count(u32),
}

impl Threshold {
    /// Whether `failed` failures among `opened` devices are above the threshold.
    pub fn exceeded(self, failed: u32, opened: u32) -> bool {
        match self {
            Self::Percent(p) => u64::from(failed) * 100 > u64::from(p) * u64::from(opened),
            Self::Count(c) => failed > c,
        }
    }
}

/// What a wave is, as operators named it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaveLabel {
    /// The targeted devices of a named group (an order).
    Group(OrderId),
    /// A step of `--waves`.
    Size(WaveSize),
    /// What the groups left, when no `--waves` were given.
    Rest,
}

/// One wave: its devices get their package once it is open.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Wave {
    /// How it was named.
    pub label: WaveLabel,
    /// Its devices (each device is in exactly one wave of the rollout).
    pub serials: Vec<Serial>,
}

/// Why a rollout is paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by")]
pub enum PauseReason {
    /// An operator paused it.
    Operator,
    /// `failed` failures (not yet accepted by a resume) among the `opened` devices of the open
    /// waves went above the threshold.
    FailureThreshold {
        /// Failures counted against the threshold.
        failed: u32,
        /// Devices in the open waves.
        opened: u32,
    },
}

/// Where a rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum RolloutState {
    /// Devices of the open waves get packages; waves open as gates pass.
    Running,
    /// No device gets a package until it is resumed.
    Paused {
        /// Why.
        reason: PauseReason,
    },
    /// Every wave is open and every device confirmed, failed or was retargeted.
    Completed,
}

/// `update_rollouts/{campaign_id}`: a campaign delivered in waves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// The rollout's id: its campaign's.
    pub rollout_id: CampaignId,
    /// The product whose devices it targets.
    pub product_id: ProductId,
    /// The OS version it delivers.
    pub version: u32,
    /// In the order they open.
    pub waves: Vec<Wave>,
    /// Failures above this pause it.
    pub threshold: Threshold,
    /// A wave passes once this many of its devices confirmed (capped at its size); 0: once each
    /// of its devices confirmed or failed.
    pub min_confirmed: u32,
    /// How many waves are open (the first `open_waves`); at least 1.
    pub open_waves: u32,
    /// Running, paused or completed.
    pub state: RolloutState,
    /// Failures an operator accepted by resuming: not counted against the threshold.
    pub accepted_failures: u32,
    /// When it was started (Unix milliseconds).
    pub created_at_ms: i64,
    /// When a wave last opened or its state last changed (Unix milliseconds).
    pub updated_at_ms: i64,
}

impl JsonRecord for RolloutRecord {
    const PREFIX: &'static str = "update_rollouts/";
    type Key = CampaignId;
}

impl RolloutRecord {
    /// The 0-based wave `serial` is in, if any.
    pub fn wave_of(&self, serial: &Serial) -> Option<usize> {
        self.waves.iter().position(|w| w.serials.contains(serial))
    }
}
