//! The bootloader's UART service: identity, receipts, the update transfer and the install.

use crate::boot::OsImage;
use crate::device_record::DeviceRecord;
use crate::flash::NorFlash;
use crate::hello::DeviceState;
use crate::update::boot_state::BootState;
use crate::update::install::{self, BootDecision, Steps};
use crate::update::session::UpdateSession;
use crate::{ErrorCode, Serial};

use super::super::frame::Frame;
use super::super::message::{DeviceMessage, Request};
use super::{or_refuse, refuse, reply, FrameSink, Identity};

/// What the bootloader does after a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum BootloaderAction {
    /// Wait for the next frame (the reply, if any, was sent).
    Continue,
    /// Jump to this verified image (the install finished; `UpdateInstalled` was sent).
    Start(OsImage),
    /// The install stopped where the host asked (`InstallHalted` was sent): do nothing until
    /// the power is cut.
    Halt,
}

/// The bootloader's side of the UART, for one run of the bootloader.
pub struct BootloaderService<'r> {
    identity: Identity<'r>,
    update: UpdateSession,
    /// Why this device may start nothing (the boot checks failed), if so.
    boot_refused: Option<ErrorCode>,
}

impl<'r> BootloaderService<'r> {
    /// A service for a device with `record` (none if unprovisioned) on the chip `chip_uid`,
    /// reporting `state` (why no OS runs) and `boot` (`update::boot_state::read`) in hello and
    /// receipts.
    pub fn new(
        record: Option<&'r DeviceRecord>,
        chip_uid: Serial,
        state: DeviceState,
        boot: BootState,
    ) -> Self {
        Self {
            identity: Identity {
                record,
                chip_uid,
                state,
                boot,
            },
            update: UpdateSession::new(),
            boot_refused: None,
        }
    }

    /// The boot checks (`boot::check_identity`) refused this device: the update path is still
    /// served, but an installed image is not started ([`BootloaderAction::Start`] is never
    /// returned); the install answers with `reason` instead.
    pub fn refusing_to_boot(mut self, reason: ErrorCode) -> Self {
        self.boot_refused = Some(reason);
        self
    }

    /// The install ended in `os` (verified, its first trial boot counted in `boot`) and the
    /// bootloader is about to start it: from now on hello and receipts say that `os` runs, on
    /// trial. A network link uses this to answer one status request before the jump, as the
    /// OS cannot answer it there (`docs/protocol.md` §7, the device gateway).
    pub fn starting(&mut self, os: &OsImage, boot: BootState) {
        self.identity.state = DeviceState::OsRunning {
            version: os.version,
        };
        self.identity.boot = boot;
    }

    /// Serves one frame from the decoder (or the error it reported); replies through `link`.
    pub fn handle<F: NorFlash, S: FrameSink + ?Sized>(
        &mut self,
        frame: Result<Frame<'_>, ErrorCode>,
        flash: &mut F,
        link: &mut S,
    ) -> BootloaderAction {
        let served = self.serve(frame, flash, link);
        or_refuse(served, link, BootloaderAction::Continue)
    }

    fn serve<F: NorFlash, S: FrameSink + ?Sized>(
        &mut self,
        frame: Result<Frame<'_>, ErrorCode>,
        flash: &mut F,
        link: &mut S,
    ) -> Result<BootloaderAction, ErrorCode> {
        match frame?.read::<Request<'_>>()? {
            Request::Hello { challenge } => self.identity.hello(&challenge, link)?,
            Request::Status { challenge } => self.identity.status(&challenge, link)?,
            // Already serving: say so (the OS sends the same before it hands over).
            Request::EnterUpdate => reply(link, &DeviceMessage::UpdateMode),
            Request::UpdateBegin { envelope } => {
                let record = self.identity.record()?;
                let ready = self.update.begin(envelope, flash, record)?;
                reply(
                    link,
                    &DeviceMessage::UpdateReady {
                        next: ready.next,
                        count: ready.count,
                    },
                );
            }
            Request::UpdateChunk { index, sealed } => {
                self.identity.record()?;
                let next = self.update.chunk(index, sealed, flash)?;
                reply(link, &DeviceMessage::ChunkAck { next });
            }
            Request::UpdateFinish => {
                self.identity.record()?;
                let version = self.update.finish()?;
                reply(link, &DeviceMessage::UpdateStaged { version });
            }
            Request::UpdateInstall { halt_after } => {
                let record = self.identity.record()?;
                self.update.take_staged()?;
                let mut steps = Steps {
                    done: 0,
                    halt_after: halt_after.map(|n| n.get()),
                };
                return Ok(install_and_boot(
                    flash,
                    record,
                    self.boot_refused,
                    &mut steps,
                    link,
                ));
            }
            Request::DataEmit { .. }
            | Request::DataRotate
            | Request::OsStatus
            | Request::DataDown { .. }
            | Request::AppPackageBegin { .. }
            | Request::AppPackageChunk { .. }
            | Request::AppCommit
            | Request::AppStatus { .. }
            | Request::AppStart => return Err(ErrorCode::UnknownMessage),
        }
        Ok(BootloaderAction::Continue)
    }
}

/// Installs the staged image, says so, and boots it (`install::boot` counts the first trial
/// boot and verifies the OS slot) — unless the boot checks refused this device (`refused`):
/// then the image stays installed and the refusal is the answer. Every outcome has been
/// reported when this returns.
fn install_and_boot<F: NorFlash, S: FrameSink + ?Sized>(
    flash: &mut F,
    record: &DeviceRecord,
    refused: Option<ErrorCode>,
    steps: &mut Steps,
    link: &mut S,
) -> BootloaderAction {
    let result = install::install(flash, record, steps).and_then(|state| {
        reply(
            link,
            &DeviceMessage::UpdateInstalled {
                version: state.new_version,
            },
        );
        match refused {
            Some(reason) => Ok(BootDecision::NoImage(reason)),
            None => install::boot(flash, record, steps),
        }
    });
    match result {
        Ok(BootDecision::Start(os)) => BootloaderAction::Start(os),
        Err(ErrorCode::InstallHalted) => {
            reply(link, &DeviceMessage::InstallHalted { step: steps.done });
            BootloaderAction::Halt
        }
        Ok(BootDecision::NoImage(code)) | Err(code) => {
            refuse(link, code);
            BootloaderAction::Continue
        }
    }
}
