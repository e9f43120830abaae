//! The device's side of the UART: one service per firmware program. Each takes every frame
//! the decoder produces, answers what the protocol can answer (identity, receipts, the update
//! transfer, app installs, every refusal) and returns what only the firmware can do.
//!
//! - [`BootloaderService`]: hello, status receipts, the update transfer and the install;
//!   returns [`BootloaderAction`] (start the new OS, or halt for a power-cut test);
//! - [`OsService`]: hello, status receipts, app installs, the hand-over to the bootloader;
//!   returns [`OsAction`] for what the OS itself owns (its data stream, its status, calling
//!   an app, jumping to the bootloader).
//!
//! Each request gets exactly one reply frame (an error frame when refused), except the
//! install, which answers `UpdateInstalled` and then starts the image, and the data requests,
//! whose records the OS sends.

mod bootloader;
mod os;
#[cfg(test)]
mod tests;

pub use bootloader::{BootloaderAction, BootloaderService};
pub use os::{AppStats, OsAction, OsService};

use crate::device_record::DeviceRecord;
use crate::hello::{self, DeviceState, HelloInfo};
use crate::update::boot_state::BootState;
use crate::update::receipt::{self, StatusReceipt};
use crate::{ErrorCode, Serial};

use super::frame::{encode_frame, OVERHEAD};
use super::message::DeviceMessage;

/// Where the device's frames go: the firmware's UART, or a test's buffer.
pub trait FrameSink {
    /// Sends one encoded frame.
    fn send_frame(&mut self, frame: &[u8]);
}

impl<F: FnMut(&[u8])> FrameSink for F {
    fn send_frame(&mut self, frame: &[u8]) {
        self(frame)
    }
}

/// The largest frame a service sends itself: a hello response or a status receipt.
const REPLY_MAX: usize = max(hello::RESPONSE_LEN, receipt::RECEIPT_LEN) + OVERHEAD;

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Encodes one of the services' own (small) replies and sends it.
fn reply<S: FrameSink + ?Sized>(link: &mut S, msg: &DeviceMessage<'_>) {
    let mut out = [0u8; REPLY_MAX];
    // Every reply a service builds fits REPLY_MAX; one that did not would be a bug in this
    // module, caught by its tests, so nothing is sent rather than a truncated frame.
    if let Ok(n) = encode_frame(msg, &mut out) {
        link.send_frame(&out[..n]);
    }
}

/// `hello` and status receipts: what every program answers about the device.
struct Identity<'r> {
    record: Option<&'r DeviceRecord>,
    /// The unique ID read from the chip (reported beside the record's serial).
    chip_uid: Serial,
    state: DeviceState,
    boot: BootState,
}

impl<'r> Identity<'r> {
    fn record(&self) -> Result<&'r DeviceRecord, ErrorCode> {
        self.record.ok_or(ErrorCode::NotProvisioned)
    }

    fn info(&self, record: &DeviceRecord) -> HelloInfo {
        HelloInfo {
            serial: record.config.serial,
            chip_uid: self.chip_uid,
            product_id: record.config.product_id,
            bootloader_version: record.bootloader_version,
            state: self.state,
        }
    }

    fn hello<S: FrameSink + ?Sized>(
        &self,
        challenge: &[u8; hello::CHALLENGE_LEN],
        link: &mut S,
    ) -> Result<(), ErrorCode> {
        let record = self.record()?;
        let mut raw = [0u8; hello::RESPONSE_LEN];
        hello::encode_response(&record.device_key, challenge, &self.info(record), &mut raw)?;
        reply(link, &DeviceMessage::HelloResponse(&raw));
        Ok(())
    }

    fn status<S: FrameSink + ?Sized>(
        &self,
        challenge: &[u8; receipt::CHALLENGE_LEN],
        link: &mut S,
    ) -> Result<(), ErrorCode> {
        let record = self.record()?;
        let info = self.info(record);
        let status = StatusReceipt::new(
            info.serial,
            info.product_id,
            info.bootloader_version,
            info.state,
            &self.boot,
        );
        let raw = receipt::encode(&record.device_key, challenge, &status);
        reply(link, &DeviceMessage::StatusReceipt(&raw));
        Ok(())
    }
}

/// Sends the refusal of a request.
fn refuse<S: FrameSink + ?Sized>(link: &mut S, code: ErrorCode) {
    reply(link, &DeviceMessage::Error(code));
}

/// What a served request left to do, or (refused: the error frame is sent) `otherwise`.
fn or_refuse<A, S: FrameSink + ?Sized>(
    served: Result<A, ErrorCode>,
    link: &mut S,
    otherwise: A,
) -> A {
    served.unwrap_or_else(|code| {
        refuse(link, code);
        otherwise
    })
}
