//! Installing a staged image with power-fail safety (copy with backup and revert), the
//! decision the bootloader takes at every reset, and the confirmation by the new OS.
//!
//! ```text
//! install:  [Backup] copy OS slot → backup slot, page by page
//!           [Copy]   copy staging slot → OS slot, page by page
//!           [Trial]  boot the new image; each boot on trial counts one attempt
//! confirm:  (the new OS) [Idle, Updated, floor = new version]
//! revert:   [Revert] copy backup slot → OS slot; [Idle, RolledBack]
//! ```
//! Every phase change is one boot-state snapshot written *before* the phase's copying starts,
//! and every copy is idempotent (its source is not touched in that phase), so the bootloader
//! redoes an interrupted phase from its first page at the next reset. At every instant the
//! device can boot either the old image (OS slot intact, or intact in the backup with the
//! state saying so) or the new one (staging intact, state saying so).
//!
//! Each page copy and each snapshot is one *step*; [`Steps`] can stop after step N so a
//! test can cut the power exactly there.

use crate::boot::{verify_os_image_in, OsImage};
use crate::device_record::DeviceRecord;
use crate::flash::NorFlash;
use crate::image::SIGNED_HEADER_LEN;
use crate::layout::{
    BACKUP_SLOT_ADDR, FLASH_PAGE_SIZE, IMAGE_HEADER_SPACE, OS_SLOT_ADDR, STAGING_SLOT_ADDR,
};
use crate::update::boot_state::{self, BootState, Outcome, Phase};
use crate::ErrorCode;

/// Boots an unconfirmed image gets before the bootloader restores the previous one.
pub const MAX_TRIAL_BOOTS: u8 = 3;

/// Counts flash-changing steps; optionally stops after a given one (power-cut tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct Steps {
    /// Steps done so far.
    pub done: u32,
    /// Stop (with [`ErrorCode::InstallHalted`]) once this many steps are done; `None` runs on.
    pub halt_after: Option<u32>,
}

impl Steps {
    /// Runs to completion.
    pub fn unlimited() -> Self {
        Self::default()
    }

    fn step(&mut self) -> Result<(), ErrorCode> {
        self.done += 1;
        if self.halt_after == Some(self.done) {
            return Err(ErrorCode::InstallHalted);
        }
        Ok(())
    }
}

/// What the bootloader does after [`boot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootDecision {
    /// Start this (verified) image.
    Start(OsImage),
    /// Serve the UART: no valid image, for this reason.
    NoImage(ErrorCode),
}

fn pages_of(body_size: u32) -> u16 {
    (IMAGE_HEADER_SPACE + body_size).div_ceil(FLASH_PAGE_SIZE) as u16
}

fn floor_of(state: &BootState, record: &DeviceRecord) -> u32 {
    state.floor.max(record.config.rollback_floor)
}

/// Copies `pages` pages from `src` to `dst`. In the first page only the signed header is
/// copied of the header space (the staging slot keeps transfer bookkeeping there).
fn copy_slot<F: NorFlash>(
    flash: &mut F,
    src: u32,
    dst: u32,
    pages: u16,
    steps: &mut Steps,
) -> Result<(), ErrorCode> {
    let mut buf = [0u8; 256];
    for page in 0..u32::from(pages) {
        let base = page * FLASH_PAGE_SIZE;
        flash.erase_page(dst + base)?;
        let mut at = 0;
        while at < FLASH_PAGE_SIZE {
            let off = base + at;
            flash.read(src + off, &mut buf)?;
            if page == 0 && at < IMAGE_HEADER_SPACE {
                // Header space: the 128-byte signed header only.
                let start = (SIGNED_HEADER_LEN as u32).saturating_sub(at).min(256) as usize;
                buf[start..].fill(0xFF);
            }
            if buf.iter().any(|b| *b != 0xFF) {
                flash.program(dst + off, &buf)?;
            }
            at += 256;
        }
        steps.step()?;
    }
    Ok(())
}

fn snapshot<F: NorFlash>(
    flash: &mut F,
    state: BootState,
    steps: &mut Steps,
) -> Result<BootState, ErrorCode> {
    let s = boot_state::write(flash, state)?;
    steps.step()?;
    Ok(s)
}

/// Installs the image verified in the staging slot: checks it again from flash (vendor
/// signature, product, slot, floor, digest of the whole plaintext body), then runs the
/// phases up to [`Phase::Trial`]. The caller then boots it ([`boot`]).
pub fn install<F: NorFlash>(
    flash: &mut F,
    record: &DeviceRecord,
    steps: &mut Steps,
) -> Result<BootState, ErrorCode> {
    let state = boot_state::read(flash)?;
    if state.phase != Phase::Idle {
        return Err(ErrorCode::UnexpectedMessage);
    }
    let new = verify_os_image_in(flash, STAGING_SLOT_ADDR, record, floor_of(&state, record))?;
    let old = verify_os_image_in(flash, OS_SLOT_ADDR, record, 0).ok();
    let begun = snapshot(
        flash,
        BootState {
            phase: Phase::Backup,
            attempts: 0,
            outcome: Outcome::InProgress,
            new_version: new.version,
            old_version: old.map_or(0, |o| o.version),
            old_pages: old.map_or(0, |o| pages_of(o.body_size)),
            new_pages: pages_of(new.body_size),
            last_error: 0,
            ..state
        },
        steps,
    )?;
    resume(flash, begun, steps)
}

/// Runs an interrupted phase (and the ones after it) to completion.
fn resume<F: NorFlash>(
    flash: &mut F,
    mut state: BootState,
    steps: &mut Steps,
) -> Result<BootState, ErrorCode> {
    loop {
        state = match state.phase {
            Phase::Idle | Phase::Trial => return Ok(state),
            Phase::Backup => {
                copy_slot(
                    flash,
                    OS_SLOT_ADDR,
                    BACKUP_SLOT_ADDR,
                    state.old_pages,
                    steps,
                )?;
                let next = BootState {
                    phase: Phase::Copy,
                    ..state
                };
                snapshot(flash, next, steps)?
            }
            Phase::Copy => {
                copy_slot(
                    flash,
                    STAGING_SLOT_ADDR,
                    OS_SLOT_ADDR,
                    state.new_pages,
                    steps,
                )?;
                let next = BootState {
                    phase: Phase::Trial,
                    attempts: 0,
                    ..state
                };
                snapshot(flash, next, steps)?
            }
            Phase::Revert => {
                copy_slot(
                    flash,
                    BACKUP_SLOT_ADDR,
                    OS_SLOT_ADDR,
                    state.old_pages,
                    steps,
                )?;
                let next = BootState {
                    phase: Phase::Idle,
                    outcome: Outcome::RolledBack,
                    ..state
                };
                snapshot(flash, next, steps)?
            }
        };
    }
}

fn revert<F: NorFlash>(
    flash: &mut F,
    state: BootState,
    reason: ErrorCode,
    steps: &mut Steps,
) -> Result<BootState, ErrorCode> {
    let reverting = snapshot(
        flash,
        BootState {
            phase: Phase::Revert,
            last_error: reason as u32,
            ..state
        },
        steps,
    )?;
    resume(flash, reverting, steps)
}

/// What the bootloader runs at every reset: finishes or reverts an interrupted install,
/// counts a boot of an image on trial (reverting when it had its chances), then verifies the
/// OS slot under the current floor.
pub fn boot<F: NorFlash>(
    flash: &mut F,
    record: &DeviceRecord,
    steps: &mut Steps,
) -> Result<BootDecision, ErrorCode> {
    let current = boot_state::read(flash)?;
    let mut state = resume(flash, current, steps)?;
    if state.phase == Phase::Trial {
        let floor = floor_of(&state, record);
        match verify_os_image_in(flash, OS_SLOT_ADDR, record, floor) {
            Ok(_) if state.attempts < MAX_TRIAL_BOOTS => {
                state = snapshot(
                    flash,
                    BootState {
                        attempts: state.attempts + 1,
                        ..state
                    },
                    steps,
                )?;
            }
            Ok(_) => state = revert(flash, state, ErrorCode::NotConfirmed, steps)?,
            Err(reason) => state = revert(flash, state, reason, steps)?,
        }
    }
    Ok(
        match verify_os_image_in(flash, OS_SLOT_ADDR, record, floor_of(&state, record)) {
            Ok(os) => BootDecision::Start(os),
            Err(reason) => BootDecision::NoImage(reason),
        },
    )
}

/// Called by a newly started OS once it works: ends the trial and raises the anti-rollback
/// floor to its version. Does nothing outside a trial or for another version. Returns the
/// boot state after the call.
pub fn confirm<F: NorFlash>(flash: &mut F, running_version: u32) -> Result<BootState, ErrorCode> {
    let state = boot_state::read(flash)?;
    if state.phase != Phase::Trial || state.new_version != running_version {
        return Ok(state);
    }
    boot_state::write(
        flash,
        BootState {
            phase: Phase::Idle,
            outcome: Outcome::Updated,
            floor: state.floor.max(running_version),
            ..state
        },
    )
}
