//! A rollout's progress, counted from its devices' update records, and the one step it takes
//! next (open a wave, pause, complete). Pure: [`super::advance`] reads and commits.
//!
//! What counts (`docs/coordinator.md`, "Rollouts"):
//! - **confirmed**: a verified receipt shows the target version running, confirmed (`updated`);
//! - **failed**: a verified receipt shows the device went back from it (`rolled-back`), or the
//!   field tool reported the device refused the package (`refused`, an unauthenticated claim:
//!   it can only pause a rollout, never open a wave);
//! - **pending**: anything else (not fetched, fetched, on trial, another version running);
//! - **superseded**: a later campaign retargeted the device; no longer waited for.

use std::collections::HashMap;

use super::record::{PauseReason, RolloutRecord, RolloutState};
use crate::ids::Serial;
use crate::update::records::{DeviceUpdateRecord, UpdateState};

/// The counts of one wave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaveProgress {
    /// Its devices.
    pub targeted: u32,
    /// Running the target version, confirmed.
    pub confirmed: u32,
    /// Rolled back or refused.
    pub failed: u32,
    /// Neither yet.
    pub pending: u32,
    /// Retargeted by a later campaign.
    pub superseded: u32,
}

impl WaveProgress {
    /// Devices still part of the rollout.
    pub fn live(&self) -> u32 {
        self.targeted - self.superseded
    }
}

/// The counts of every wave of `rollout`, from the update records of its product's devices.
pub fn count(
    rollout: &RolloutRecord,
    devices: &HashMap<Serial, DeviceUpdateRecord>,
) -> Vec<WaveProgress> {
    rollout
        .waves
        .iter()
        .map(|wave| {
            let mut p = WaveProgress::default();
            for serial in &wave.serials {
                p.targeted += 1;
                match devices.get(serial) {
                    Some(d) if d.campaign_id == rollout.rollout_id => match d.state {
                        UpdateState::Updated => p.confirmed += 1,
                        UpdateState::RolledBack | UpdateState::Refused => p.failed += 1,
                        UpdateState::Pending | UpdateState::Issued | UpdateState::InProgress => {
                            p.pending += 1
                        }
                    },
                    _ => p.superseded += 1,
                }
            }
            p
        })
        .collect()
}

/// What a rollout does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Wave `n` (1-based) opens.
    OpenWave(u32),
    /// Failures went above the threshold.
    Pause(PauseReason),
    /// Every wave is open and every device settled.
    Complete,
}

/// The failures counted against the threshold and the devices of the open waves.
pub fn failures(rollout: &RolloutRecord, progress: &[WaveProgress]) -> (u32, u32) {
    let open = &progress[..rollout.open_waves as usize];
    let failed: u32 = open.iter().map(|p| p.failed).sum();
    let opened: u32 = open.iter().map(WaveProgress::live).sum();
    (failed.saturating_sub(rollout.accepted_failures), opened)
}

/// The step a running rollout takes now, if any (one at a time: each is committed, and
/// audited, on its own).
pub fn next_step(rollout: &RolloutRecord, progress: &[WaveProgress]) -> Option<Step> {
    if rollout.state != RolloutState::Running {
        return None;
    }
    let (failed, opened) = failures(rollout, progress);
    if rollout.threshold.exceeded(failed, opened) {
        return Some(Step::Pause(PauseReason::FailureThreshold {
            failed,
            opened,
        }));
    }
    let open = rollout.open_waves as usize;
    let last = progress[open - 1];
    let passed = if rollout.min_confirmed > 0 {
        last.confirmed >= rollout.min_confirmed.min(last.live())
    } else {
        last.confirmed + last.failed >= last.live()
    };
    if !passed {
        return None;
    }
    if open < rollout.waves.len() {
        return Some(Step::OpenWave(rollout.open_waves + 1));
    }
    progress
        .iter()
        .all(|p| p.pending == 0)
        .then_some(Step::Complete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CampaignId, ProductId};
    use crate::update::rollouts::record::{Threshold, Wave, WaveLabel};

    fn rollout(sizes: &[u8], threshold: Threshold, min_confirmed: u32) -> RolloutRecord {
        let mut next = 0u8;
        let waves = sizes
            .iter()
            .map(|n| Wave {
                label: WaveLabel::Rest,
                serials: (0..*n)
                    .map(|_| {
                        next += 1;
                        Serial([next; 16])
                    })
                    .collect(),
            })
            .collect();
        RolloutRecord {
            rollout_id: CampaignId::parse("upd-1").unwrap(),
            product_id: ProductId(7),
            version: 2,
            waves,
            threshold,
            min_confirmed,
            open_waves: 1,
            state: RolloutState::Running,
            accepted_failures: 0,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn devices(
        r: &RolloutRecord,
        states: &[(u8, UpdateState)],
    ) -> HashMap<Serial, DeviceUpdateRecord> {
        states
            .iter()
            .map(|(i, state)| {
                let serial = Serial([*i; 16]);
                let record = DeviceUpdateRecord {
                    state: *state,
                    ..DeviceUpdateRecord::first_target(
                        serial,
                        r.product_id,
                        r.rollout_id.clone(),
                        2,
                    )
                };
                (serial, record)
            })
            .collect()
    }

    use UpdateState::{Pending, RolledBack, Updated};

    #[test]
    fn a_wave_opens_once_the_last_one_is_settled() {
        let mut r = rollout(&[2, 3], Threshold::Count(1), 0);
        let d = devices(&r, &[(1, Updated), (2, Pending), (3, Pending)]);
        assert_eq!(next_step(&r, &count(&r, &d)), None);
        let d = devices(&r, &[(1, Updated), (2, RolledBack)]);
        assert_eq!(next_step(&r, &count(&r, &d)), Some(Step::OpenWave(2)));
        r.open_waves = 2;
        let d = devices(
            &r,
            &[
                (1, Updated),
                (2, RolledBack),
                (3, Updated),
                (4, Updated),
                (5, Updated),
            ],
        );
        assert_eq!(next_step(&r, &count(&r, &d)), Some(Step::Complete));
    }

    #[test]
    fn min_confirmed_opens_early_and_failures_pause() {
        let r = rollout(&[4, 4], Threshold::Percent(25), 2);
        let d = devices(
            &r,
            &[(1, Updated), (2, Updated), (3, Pending), (4, Pending)],
        );
        assert_eq!(next_step(&r, &count(&r, &d)), Some(Step::OpenWave(2)));
        let d = devices(
            &r,
            &[
                (1, RolledBack),
                (2, UpdateState::Refused),
                (3, Updated),
                (4, Pending),
            ],
        );
        assert_eq!(
            next_step(&r, &count(&r, &d)),
            Some(Step::Pause(PauseReason::FailureThreshold {
                failed: 2,
                opened: 4
            }))
        );
        // A resume accepted those two: the gate decides again.
        let accepted = RolloutRecord {
            accepted_failures: 2,
            ..r
        };
        assert_eq!(next_step(&accepted, &count(&accepted, &d)), None);
    }

    #[test]
    fn retargeted_devices_are_not_waited_for() {
        let r = rollout(&[2, 2], Threshold::Count(0), 0);
        // Device 2 has no record of this campaign (a later one took it).
        let d = devices(&r, &[(1, Updated)]);
        let p = count(&r, &d);
        assert_eq!((p[0].superseded, p[0].live()), (1, 1));
        assert_eq!(next_step(&r, &p), Some(Step::OpenWave(2)));
    }
}
