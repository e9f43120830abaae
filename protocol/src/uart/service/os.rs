//! The OS's UART service: identity, receipts, app installs from per-device packages, app
//! receipts and the hand-over to the
//! bootloader. What the OS owns itself (its data stream, uptime, calling an app) comes back
//! as an [`OsAction`].

use crate::app::receipt::{self as app_receipt, AppReceipt};
use crate::app::{verify_installed_app, AppImage, AppInstaller};
use crate::data_stream::down::SealedDown;
use crate::device_record::DeviceRecord;
use crate::flash::NorFlash;
use crate::hello::DeviceState;
use crate::update::boot_state::BootState;
use crate::{ErrorCode, Serial};

use super::super::frame::Frame;
use super::super::message::{DeviceMessage, Request};
use super::super::msg_type::MsgType;
use super::{or_refuse, reply, FrameSink, Identity};

/// What the OS does after a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
#[allow(
    clippy::large_enum_variant,
    reason = "no heap on the device: a down message is carried by value, once per frame"
)]
pub enum OsAction {
    /// Wait for the next frame (the reply, if any, was sent).
    Continue,
    /// `UpdateMode` was sent: jump to the bootloader, asking it to serve the update.
    EnterBootloader,
    /// Seal and send `count` telemetry records (or an error frame).
    EmitTelemetry {
        /// How many.
        count: u8,
    },
    /// Rotate the data stream and send the sealed rotation record (or an error frame).
    RotateEpoch,
    /// Send the `OsStatus` reply (with [`OsService::app_stats`]).
    ReportStatus,
    /// Call this verified app, then report its return with [`OsService::app_returned`].
    StartApp(AppImage),
    /// Open, check against the down window and carry out this down message (the OS owns the
    /// window; the network link hands it the same action).
    DownMessage(SealedDown),
}

/// Apps started since the OS booted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppStats {
    /// Apps started.
    pub started: u32,
    /// Version of the app started last.
    pub version: u32,
    /// What it returned.
    pub last_status: u32,
}

/// The OS's side of the UART.
pub struct OsService<'r> {
    identity: Identity<'r>,
    /// An app install under way (between `AppPackageBegin` and `AppCommit`).
    installer: Option<AppInstaller>,
    apps: AppStats,
}

impl<'r> OsService<'r> {
    /// A service for the OS `version` on a device with `record` (none if unprovisioned) on the
    /// chip `chip_uid`; `boot` is the boot state its confirmation left
    /// (`update::install::confirm`).
    pub fn new(
        record: Option<&'r DeviceRecord>,
        chip_uid: Serial,
        version: u32,
        boot: BootState,
    ) -> Self {
        Self {
            identity: Identity {
                record,
                chip_uid,
                state: DeviceState::OsRunning { version },
                boot,
            },
            installer: None,
            apps: AppStats::default(),
        }
    }

    /// Sends a status receipt for `challenge` on `link` (a down message's status request:
    /// the same receipt the UART's `StatusRequest` gets).
    pub fn status_receipt<S: FrameSink + ?Sized>(
        &self,
        challenge: &[u8; crate::update::receipt::CHALLENGE_LEN],
        link: &mut S,
    ) -> Result<(), ErrorCode> {
        self.identity.status(challenge, link)
    }

    /// Apps started so far.
    pub fn app_stats(&self) -> AppStats {
        self.apps
    }

    /// Serves one frame from the decoder (or the error it reported); replies through `link`.
    pub fn handle<F: NorFlash, S: FrameSink + ?Sized>(
        &mut self,
        frame: Result<Frame<'_>, ErrorCode>,
        flash: &mut F,
        link: &mut S,
    ) -> OsAction {
        let served = self.serve(frame, flash, link);
        or_refuse(served, link, OsAction::Continue)
    }

    /// The app started by [`OsAction::StartApp`] returned `status`: counts it and acknowledges
    /// the start.
    pub fn app_returned<S: FrameSink + ?Sized>(
        &mut self,
        app: &AppImage,
        status: u32,
        link: &mut S,
    ) {
        self.apps.started += 1;
        self.apps.version = app.version;
        self.apps.last_status = status;
        ack(link, MsgType::AppStart, status);
    }

    fn serve<F: NorFlash, S: FrameSink + ?Sized>(
        &mut self,
        frame: Result<Frame<'_>, ErrorCode>,
        flash: &mut F,
        link: &mut S,
    ) -> Result<OsAction, ErrorCode> {
        let action = match frame?.read::<Request<'_>>()? {
            Request::Hello { challenge } => {
                self.identity.hello(&challenge, link)?;
                OsAction::Continue
            }
            Request::Status { challenge } => {
                self.identity.status(&challenge, link)?;
                OsAction::Continue
            }
            Request::EnterUpdate => {
                reply(link, &DeviceMessage::UpdateMode);
                OsAction::EnterBootloader
            }
            Request::DataEmit { count } => OsAction::EmitTelemetry { count },
            Request::DataRotate => OsAction::RotateEpoch,
            Request::OsStatus => OsAction::ReportStatus,
            Request::DataDown { message } => OsAction::DownMessage(SealedDown::copy_of(message)?),
            Request::AppPackageBegin { envelope } => {
                let record = self.identity.record()?;
                // A new begin abandons the install under way (staging is erased again).
                self.installer = None;
                let installer = AppInstaller::begin(flash, record, envelope)?;
                ack(link, MsgType::AppPackageBegin, installer.chunk_count());
                self.installer = Some(installer);
                OsAction::Continue
            }
            Request::AppPackageChunk { index, sealed } => {
                self.identity.record()?;
                let installer = self
                    .installer
                    .as_mut()
                    .ok_or(ErrorCode::UnexpectedMessage)?;
                match installer.chunk(flash, index, sealed) {
                    Ok(next) => ack(link, MsgType::AppPackageChunk, next),
                    Err(code) => {
                        self.installer = None;
                        return Err(code);
                    }
                }
                OsAction::Continue
            }
            Request::AppCommit => {
                self.identity.record()?;
                let installer = self.installer.take().ok_or(ErrorCode::UnexpectedMessage)?;
                let app = installer.commit(flash)?;
                ack(link, MsgType::AppCommit, app.version);
                OsAction::Continue
            }
            Request::AppStatus { challenge } => {
                let record = self.identity.record()?;
                let receipt = AppReceipt::of_slot(flash, record)?;
                let raw = app_receipt::encode(&record.device_key, &challenge, &receipt);
                reply(link, &DeviceMessage::AppReceipt(&raw));
                OsAction::Continue
            }
            Request::AppStart => {
                let record = self.identity.record()?;
                OsAction::StartApp(verify_installed_app(flash, record)?)
            }
            // The transfer is the bootloader's: `EnterUpdate` first.
            Request::UpdateBegin { .. }
            | Request::UpdateChunk { .. }
            | Request::UpdateFinish
            | Request::UpdateInstall { .. } => return Err(ErrorCode::UnknownMessage),
        };
        Ok(action)
    }
}

fn ack<S: FrameSink + ?Sized>(link: &mut S, step: MsgType, value: u32) {
    reply(link, &DeviceMessage::AppAck { step, value });
}
