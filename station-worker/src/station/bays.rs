//! The station's bays: one probe actor each, the lease [`Slot`] of the target it is working on,
//! and what becomes of a bay whose targets keep failing (its actor restarted, then the bay
//! retired).

use std::time::Duration;

use actix::prelude::*;

use super::probe_actor::{ProbeActor, RunTarget, SharedFixture};
use crate::events::{Event, EventSink};
use crate::provisioning::{Failed, Job, Slot};

struct Bay {
    name: String,
    fixture: SharedFixture,
    addr: Addr<ProbeActor>,
    slot: Option<Slot>,
    failures_in_a_row: u32,
    retired: bool,
}

/// Every bay of the run.
pub struct Bays {
    bays: Vec<Bay>,
    events: EventSink,
    step_timeout: Duration,
    retire_after: u32,
}

impl Bays {
    /// Starts one probe actor per fixture (call inside the actix system).
    pub fn start(
        fixtures: Vec<(String, SharedFixture)>,
        events: EventSink,
        step_timeout: Duration,
        retire_after: u32,
    ) -> Self {
        let bays = fixtures
            .into_iter()
            .map(|(name, fixture)| Bay {
                addr: ProbeActor::new(fixture.clone(), events.clone(), step_timeout).start(),
                name,
                fixture,
                slot: None,
                failures_in_a_row: 0,
                retired: false,
            })
            .collect();
        Self {
            bays,
            events,
            step_timeout,
            retire_after: retire_after.max(1),
        }
    }

    /// Targets in progress.
    pub fn in_flight(&self) -> u32 {
        self.bays.iter().filter(|b| b.slot.is_some()).count() as u32
    }

    /// Bays ready for a target.
    pub fn idle(&self) -> Vec<usize> {
        (0..self.bays.len())
            .filter(|&i| self.bays[i].slot.is_none() && !self.bays[i].retired)
            .collect()
    }

    /// The bay's name (progress lines, reports).
    pub fn name(&self, bay: usize) -> &str {
        &self.bays[bay].name
    }

    /// Hands `job` to the bay's actor; the bay holds `slot` until [`finished`](Self::finished).
    pub fn hand_out(&mut self, bay: usize, slot: Slot, job: Job) -> Request<ProbeActor, RunTarget> {
        let bay = &mut self.bays[bay];
        bay.slot = Some(slot);
        bay.addr.send(RunTarget(job))
    }

    /// The bay's target is done: its slot back (`None` if the bay was idle).
    pub fn finished(&mut self, bay: usize) -> Option<Slot> {
        self.bays[bay].slot.take()
    }

    /// The bay's target succeeded (or failed by its own factory test): not the bay's fault.
    pub fn succeeded(&mut self, bay: usize) {
        self.bays[bay].failures_in_a_row = 0;
    }

    /// The bay's target failed: the bay's actor is restarted, or after too many failures in a
    /// row the bay is retired. True when every bay is retired.
    pub fn failed(&mut self, bay: usize, failed: &Failed) -> bool {
        let b = &mut self.bays[bay];
        b.failures_in_a_row += 1;
        if b.failures_in_a_row >= self.retire_after {
            b.retired = true;
            self.events.emit(Event::Probe {
                probe: b.name.clone(),
                action: "retired".into(),
                reason: format!(
                    "{} failures in a row, last ({} at fault): {}",
                    b.failures_in_a_row,
                    failed.error.at_fault().as_str(),
                    failed.error
                ),
            });
        } else {
            // A fresh actor on the same fixture: nothing of the failed run survives.
            b.addr =
                ProbeActor::new(b.fixture.clone(), self.events.clone(), self.step_timeout).start();
            self.events.emit(Event::Probe {
                probe: b.name.clone(),
                action: "restarted".into(),
                reason: failed.error.to_string(),
            });
        }
        self.bays.iter().all(|b| b.retired)
    }

    /// Names of the retired bays.
    pub fn retired(&self) -> Vec<String> {
        self.bays
            .iter()
            .filter(|b| b.retired)
            .map(|b| b.name.clone())
            .collect()
    }
}
