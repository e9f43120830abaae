//! What the frames carry: [`Request`] (host → device) and [`DeviceMessage`] (device → host),
//! each one enum with one variant per message type and one [`Codec`] impl.
//!
//! A message's encoding is the frame body `type u8 | len u16le | payload`. Payloads are read
//! exactly: a payload too short or too long for its type is [`ErrorCode::BadLength`], a type
//! that does not go in this direction is [`ErrorCode::UnknownMessage`]. What the payloads mean
//! is documented on [`MsgType`] and in `docs/protocol.md` §5, §7–§9.

use core::num::NonZeroU32;

use crate::app::receipt as app_receipt;
use crate::codec::{Codec, Reader, Writer};
use crate::hello;
use crate::update::receipt;
use crate::ErrorCode;

use super::frame::UartMessage;
use super::msg_type::MsgType;

/// A request from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `hello`: prove the device's identity for this challenge.
    Hello {
        /// Fresh per request.
        challenge: [u8; hello::CHALLENGE_LEN],
    },
    /// A status receipt for this challenge (the coordinator's).
    Status {
        /// From the coordinator, with the package.
        challenge: [u8; receipt::CHALLENGE_LEN],
    },
    /// OS: hand over to the bootloader's update service.
    EnterUpdate,
    /// Begin (or resume) a transfer with this envelope (`update::package::Envelope`).
    UpdateBegin {
        /// The envelope as sent; its hash identifies the transfer for resuming.
        envelope: &'a [u8],
    },
    /// One chunk of the package.
    UpdateChunk {
        /// Chunk index.
        index: u32,
        /// Ciphertext then tag.
        sealed: &'a [u8],
    },
    /// Every chunk sent.
    UpdateFinish,
    /// Install the staged image.
    UpdateInstall {
        /// Stop after this install step (power-cut tests); on the wire, 0 is none.
        halt_after: Option<NonZeroU32>,
    },
    /// OS: seal and send `count` telemetry records now.
    DataEmit {
        /// How many.
        count: u8,
    },
    /// OS: rotate the data stream to its next epoch.
    DataRotate,
    /// OS: report [`OsStatus`].
    OsStatus,
    /// OS: one sealed down message (`data_stream::down`), as the coordinator sealed it.
    DataDown {
        /// The sealed message.
        message: &'a [u8],
    },
    /// OS: begin an app install with this device's envelope of an app package
    /// (`update::package::Envelope`, see `app::install`).
    AppPackageBegin {
        /// The envelope as sent.
        envelope: &'a [u8],
    },
    /// OS: one chunk of the app package.
    AppPackageChunk {
        /// Chunk index.
        index: u32,
        /// Ciphertext then tag.
        sealed: &'a [u8],
    },
    /// OS: every chunk sent: verify the app and make it the installed one.
    AppCommit,
    /// OS: an app receipt for this challenge (the coordinator's, see `app::receipt`).
    AppStatus {
        /// From the coordinator, with the app package.
        challenge: [u8; app_receipt::CHALLENGE_LEN],
    },
    /// OS: verify the installed app and call it.
    AppStart,
}

impl<'a> UartMessage<'a> for Request<'a> {
    fn msg_type(&self) -> MsgType {
        match self {
            Self::Hello { .. } => MsgType::HelloRequest,
            Self::Status { .. } => MsgType::StatusRequest,
            Self::EnterUpdate => MsgType::EnterUpdate,
            Self::UpdateBegin { .. } => MsgType::UpdateBegin,
            Self::UpdateChunk { .. } => MsgType::UpdateChunk,
            Self::UpdateFinish => MsgType::UpdateFinish,
            Self::UpdateInstall { .. } => MsgType::UpdateInstall,
            Self::DataEmit { .. } => MsgType::DataEmit,
            Self::DataRotate => MsgType::DataRotate,
            Self::OsStatus => MsgType::OsStatus,
            Self::DataDown { .. } => MsgType::DataDown,
            Self::AppPackageBegin { .. } => MsgType::AppPackageBegin,
            Self::AppPackageChunk { .. } => MsgType::AppPackageChunk,
            Self::AppCommit => MsgType::AppCommit,
            Self::AppStatus { .. } => MsgType::AppStatusRequest,
            Self::AppStart => MsgType::AppStart,
        }
    }
}

impl<'a> Codec<'a> for Request<'a> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u8(self.msg_type() as u8)?;
        w.u16_prefixed(|w| match self {
            Self::Hello { challenge }
            | Self::Status { challenge }
            | Self::AppStatus { challenge } => w.put(challenge),
            Self::UpdateBegin { envelope } | Self::AppPackageBegin { envelope } => w.put(envelope),
            Self::DataDown { message } => w.put(message),
            Self::UpdateChunk { index, sealed } | Self::AppPackageChunk { index, sealed } => {
                w.u32(*index)?;
                w.put(sealed)
            }
            Self::UpdateInstall { halt_after } => w.u32(halt_after.map_or(0, NonZeroU32::get)),
            Self::DataEmit { count } => w.u8(*count),
            Self::EnterUpdate
            | Self::UpdateFinish
            | Self::DataRotate
            | Self::OsStatus
            | Self::AppCommit
            | Self::AppStart => Ok(()),
        })
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, ErrorCode> {
        let (msg_type, mut p) = read_header(r)?;
        let request = match msg_type {
            MsgType::HelloRequest => Self::Hello {
                challenge: p.array()?,
            },
            MsgType::StatusRequest => Self::Status {
                challenge: p.array()?,
            },
            MsgType::EnterUpdate => Self::EnterUpdate,
            MsgType::UpdateBegin => Self::UpdateBegin { envelope: p.rest() },
            MsgType::UpdateChunk => Self::UpdateChunk {
                index: p.u32()?,
                sealed: p.rest(),
            },
            MsgType::UpdateFinish => Self::UpdateFinish,
            MsgType::UpdateInstall => Self::UpdateInstall {
                halt_after: NonZeroU32::new(p.u32()?),
            },
            MsgType::DataEmit => Self::DataEmit { count: p.u8()? },
            MsgType::DataRotate => Self::DataRotate,
            MsgType::OsStatus => Self::OsStatus,
            MsgType::DataDown => Self::DataDown { message: p.rest() },
            MsgType::AppPackageBegin => Self::AppPackageBegin { envelope: p.rest() },
            MsgType::AppPackageChunk => Self::AppPackageChunk {
                index: p.u32()?,
                sealed: p.rest(),
            },
            MsgType::AppCommit => Self::AppCommit,
            MsgType::AppStatusRequest => Self::AppStatus {
                challenge: p.array()?,
            },
            MsgType::AppStart => Self::AppStart,
            MsgType::HelloResponse
            | MsgType::BootBanner
            | MsgType::Error
            | MsgType::UpdateReady
            | MsgType::ChunkAck
            | MsgType::UpdateStaged
            | MsgType::UpdateInstalled
            | MsgType::InstallHalted
            | MsgType::StatusReceipt
            | MsgType::UpdateMode
            | MsgType::DataRecord
            | MsgType::OsStatusReply
            | MsgType::DownLog
            | MsgType::AppLog
            | MsgType::AppAck
            | MsgType::AppReceipt
            | MsgType::BenchReport => return Err(ErrorCode::UnknownMessage),
        };
        p.finish()?;
        Ok(request)
    }
}

/// A frame from the device: a reply, or sent unasked (banner, data records, app log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceMessage<'a> {
    /// The `hello` response (identity and proof, see [`crate::hello`]).
    HelloResponse(&'a [u8; hello::RESPONSE_LEN]),
    /// The OS started (text).
    BootBanner(&'a [u8]),
    /// The request was refused.
    Error(ErrorCode),
    /// The update service is ready.
    UpdateMode,
    /// Ready for chunk `next` of `count` (a resumed transfer starts past 0).
    UpdateReady {
        /// The next chunk needed.
        next: u32,
        /// Chunks in the package.
        count: u32,
    },
    /// A chunk was stored.
    ChunkAck {
        /// The next chunk needed.
        next: u32,
    },
    /// The whole image is staged and its digest verified.
    UpdateStaged {
        /// Its signed version.
        version: u32,
    },
    /// The image is installed; the bootloader starts it next.
    UpdateInstalled {
        /// Its version.
        version: u32,
    },
    /// The install stopped as asked.
    InstallHalted {
        /// Install steps done.
        step: u32,
    },
    /// The status receipt (see [`crate::update::receipt`]).
    StatusReceipt(&'a [u8; receipt::RECEIPT_LEN]),
    /// The app receipt (see [`crate::app::receipt`]).
    AppReceipt(&'a [u8; app_receipt::APP_RECEIPT_LEN]),
    /// One sealed data record (see [`crate::data_stream`]).
    DataRecord(&'a [u8]),
    /// The OS status.
    OsStatusReply(OsStatus),
    /// A line an app logged.
    AppLog(&'a [u8]),
    /// What the OS did with a down message (text).
    DownLog(&'a [u8]),
    /// An app request was done.
    AppAck {
        /// The request answered.
        step: MsgType,
        /// The chunk count (`AppPackageBegin`), the next chunk needed (`AppPackageChunk`), the
        /// version (`AppCommit`), the app's return status (`AppStart`).
        value: u32,
    },
    /// The crypto bench's report (text).
    BenchReport(&'a [u8]),
}

impl<'a> UartMessage<'a> for DeviceMessage<'a> {
    fn msg_type(&self) -> MsgType {
        match self {
            Self::HelloResponse(_) => MsgType::HelloResponse,
            Self::BootBanner(_) => MsgType::BootBanner,
            Self::Error(_) => MsgType::Error,
            Self::UpdateMode => MsgType::UpdateMode,
            Self::UpdateReady { .. } => MsgType::UpdateReady,
            Self::ChunkAck { .. } => MsgType::ChunkAck,
            Self::UpdateStaged { .. } => MsgType::UpdateStaged,
            Self::UpdateInstalled { .. } => MsgType::UpdateInstalled,
            Self::InstallHalted { .. } => MsgType::InstallHalted,
            Self::StatusReceipt(_) => MsgType::StatusReceipt,
            Self::AppReceipt(_) => MsgType::AppReceipt,
            Self::DataRecord(_) => MsgType::DataRecord,
            Self::OsStatusReply(_) => MsgType::OsStatusReply,
            Self::AppLog(_) => MsgType::AppLog,
            Self::DownLog(_) => MsgType::DownLog,
            Self::AppAck { .. } => MsgType::AppAck,
            Self::BenchReport(_) => MsgType::BenchReport,
        }
    }
}

impl<'a> Codec<'a> for DeviceMessage<'a> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u8(self.msg_type() as u8)?;
        w.u16_prefixed(|w| match self {
            Self::HelloResponse(raw) => w.put(*raw),
            Self::StatusReceipt(raw) => w.put(*raw),
            Self::AppReceipt(raw) => w.put(*raw),
            Self::BootBanner(bytes)
            | Self::DataRecord(bytes)
            | Self::AppLog(bytes)
            | Self::DownLog(bytes)
            | Self::BenchReport(bytes) => w.put(bytes),
            Self::Error(code) => w.u32(*code as u32),
            Self::UpdateMode => Ok(()),
            Self::UpdateReady { next, count } => {
                w.u32(*next)?;
                w.u32(*count)
            }
            Self::ChunkAck { next } => w.u32(*next),
            Self::UpdateStaged { version } | Self::UpdateInstalled { version } => w.u32(*version),
            Self::InstallHalted { step } => w.u32(*step),
            Self::OsStatusReply(status) => status.encode(w),
            Self::AppAck { step, value } => {
                w.u8(*step as u8)?;
                w.u32(*value)
            }
        })
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, ErrorCode> {
        let (msg_type, mut p) = read_header(r)?;
        let message = match msg_type {
            MsgType::HelloResponse => Self::HelloResponse(p.array_ref()?),
            MsgType::BootBanner => Self::BootBanner(p.rest()),
            // A code this build does not know cannot be shown as one: the frame is malformed
            // to us (the mailbox keeps the raw value instead; a UART peer is the same build).
            MsgType::Error => {
                Self::Error(ErrorCode::from_u32(p.u32()?).ok_or(ErrorCode::BadMagic)?)
            }
            MsgType::UpdateMode => Self::UpdateMode,
            MsgType::UpdateReady => Self::UpdateReady {
                next: p.u32()?,
                count: p.u32()?,
            },
            MsgType::ChunkAck => Self::ChunkAck { next: p.u32()? },
            MsgType::UpdateStaged => Self::UpdateStaged { version: p.u32()? },
            MsgType::UpdateInstalled => Self::UpdateInstalled { version: p.u32()? },
            MsgType::InstallHalted => Self::InstallHalted { step: p.u32()? },
            MsgType::StatusReceipt => Self::StatusReceipt(p.array_ref()?),
            MsgType::AppReceipt => Self::AppReceipt(p.array_ref()?),
            MsgType::DataRecord => Self::DataRecord(p.rest()),
            MsgType::OsStatusReply => Self::OsStatusReply(OsStatus::read(&mut p)?),
            MsgType::AppLog => Self::AppLog(p.rest()),
            MsgType::DownLog => Self::DownLog(p.rest()),
            MsgType::AppAck => Self::AppAck {
                step: MsgType::try_from(p.u8()?)?,
                value: p.u32()?,
            },
            MsgType::BenchReport => Self::BenchReport(p.rest()),
            MsgType::HelloRequest
            | MsgType::StatusRequest
            | MsgType::EnterUpdate
            | MsgType::UpdateBegin
            | MsgType::UpdateChunk
            | MsgType::UpdateFinish
            | MsgType::UpdateInstall
            | MsgType::DataEmit
            | MsgType::DataRotate
            | MsgType::OsStatus
            | MsgType::DataDown
            | MsgType::AppPackageBegin
            | MsgType::AppPackageChunk
            | MsgType::AppCommit
            | MsgType::AppStatusRequest
            | MsgType::AppStart => return Err(ErrorCode::UnknownMessage),
        };
        p.finish()?;
        Ok(message)
    }
}

/// `type u8 | len u16le`, then a reader over exactly the payload.
fn read_header<'a>(r: &mut Reader<'a>) -> Result<(MsgType, Reader<'a>), ErrorCode> {
    let msg_type = MsgType::try_from(r.u8()?)?;
    let len = r.u16()?;
    Ok((msg_type, Reader::new(r.take(usize::from(len))?)))
}

/// What the demo OS reports about itself (not authenticated: a diagnostic).
///
/// ```text
/// uptime_ticks u64 | epoch u32 | next_counter u32 | apps_started u32 | app_version u32
/// | last_app_status u32 | first_record_ticks u32
/// ```
/// Ticks are SysTick, 40 instructions each under `-icount shift=0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OsStatus {
    /// Ticks since the OS started.
    pub uptime_ticks: u64,
    /// Data stream epoch.
    pub epoch: u32,
    /// Counter of the next data record.
    pub next_counter: u32,
    /// Apps started since boot.
    pub apps_started: u32,
    /// Version of the app started last.
    pub app_version: u32,
    /// What it returned.
    pub last_app_status: u32,
    /// Ticks the first sealed record took (journal, key derivation, seal, send).
    pub first_record_ticks: u32,
}

impl Codec<'_> for OsStatus {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u64(self.uptime_ticks)?;
        w.u32(self.epoch)?;
        w.u32(self.next_counter)?;
        w.u32(self.apps_started)?;
        w.u32(self.app_version)?;
        w.u32(self.last_app_status)?;
        w.u32(self.first_record_ticks)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            uptime_ticks: r.u64()?,
            epoch: r.u32()?,
            next_counter: r.u32()?,
            apps_started: r.u32()?,
            app_version: r.u32()?,
            last_app_status: r.u32()?,
            first_record_ticks: r.u32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_request(r: Request<'_>) {
        let bytes = r.get_encoding().unwrap();
        assert_eq!(bytes[0], r.msg_type() as u8);
        assert_eq!(Request::read_bytes(&bytes), Ok(r));
    }

    fn round_trip_device(m: DeviceMessage<'_>) {
        let bytes = m.get_encoding().unwrap();
        assert_eq!(bytes[0], m.msg_type() as u8);
        assert_eq!(DeviceMessage::read_bytes(&bytes), Ok(m));
    }

    #[test]
    fn every_message_round_trips() {
        for r in [
            Request::Hello { challenge: [1; 32] },
            Request::Status { challenge: [2; 32] },
            Request::EnterUpdate,
            Request::UpdateBegin { envelope: b"env" },
            Request::UpdateChunk {
                index: 7,
                sealed: b"ct+tag",
            },
            Request::UpdateFinish,
            Request::UpdateInstall { halt_after: None },
            Request::UpdateInstall {
                halt_after: NonZeroU32::new(4),
            },
            Request::DataEmit { count: 3 },
            Request::DataRotate,
            Request::OsStatus,
            Request::AppPackageBegin { envelope: b"env" },
            Request::AppPackageChunk {
                index: 1,
                sealed: b"ct+tag",
            },
            Request::AppCommit,
            Request::AppStatus { challenge: [5; 32] },
            Request::AppStart,
        ] {
            round_trip_request(r);
        }
        let hello = [3u8; hello::RESPONSE_LEN];
        let receipt = [4u8; receipt::RECEIPT_LEN];
        let app_receipt = [6u8; app_receipt::APP_RECEIPT_LEN];
        for m in [
            DeviceMessage::HelloResponse(&hello),
            DeviceMessage::BootBanner(b"demo-os"),
            DeviceMessage::Error(ErrorCode::BadTag),
            DeviceMessage::UpdateMode,
            DeviceMessage::UpdateReady { next: 1, count: 9 },
            DeviceMessage::ChunkAck { next: 2 },
            DeviceMessage::UpdateStaged { version: 3 },
            DeviceMessage::UpdateInstalled { version: 3 },
            DeviceMessage::InstallHalted { step: 5 },
            DeviceMessage::StatusReceipt(&receipt),
            DeviceMessage::AppReceipt(&app_receipt),
            DeviceMessage::DataRecord(b"record"),
            DeviceMessage::OsStatusReply(OsStatus {
                uptime_ticks: 1 << 40,
                epoch: 1,
                next_counter: 2,
                apps_started: 3,
                app_version: 4,
                last_app_status: 5,
                first_record_ticks: 6,
            }),
            DeviceMessage::AppLog(b"hi"),
            DeviceMessage::AppAck {
                step: MsgType::AppStart,
                value: 0,
            },
            DeviceMessage::BenchReport(b"empty 0 0"),
        ] {
            round_trip_device(m);
        }
    }

    #[test]
    fn payload_lengths_are_exact_and_directions_are_kept() {
        // hello with a 31-byte challenge, then a 33-byte one.
        let mut short = std::vec![MsgType::HelloRequest as u8, 31, 0];
        short.extend([0; 31]);
        assert_eq!(Request::read_bytes(&short), Err(ErrorCode::BadLength));
        let mut long = std::vec![MsgType::HelloRequest as u8, 33, 0];
        long.extend([0; 33]);
        assert_eq!(Request::read_bytes(&long), Err(ErrorCode::BadLength));
        // finish carries nothing; a chunk at least its index.
        assert_eq!(
            Request::read_bytes(&[MsgType::UpdateFinish as u8, 1, 0, 0]),
            Err(ErrorCode::BadLength)
        );
        assert_eq!(
            Request::read_bytes(&[MsgType::UpdateChunk as u8, 3, 0, 1, 2, 3]),
            Err(ErrorCode::BadLength)
        );
        // A device message is not a request, and the other way round; unknown ids are unknown.
        assert_eq!(
            Request::read_bytes(&[MsgType::UpdateMode as u8, 0, 0]),
            Err(ErrorCode::UnknownMessage)
        );
        assert_eq!(
            DeviceMessage::read_bytes(&[MsgType::UpdateFinish as u8, 0, 0]),
            Err(ErrorCode::UnknownMessage)
        );
        assert_eq!(
            Request::read_bytes(&[0x77, 0, 0]),
            Err(ErrorCode::UnknownMessage)
        );
        // An error frame with a code this build does not know.
        assert_eq!(
            DeviceMessage::read_bytes(&[0xEE, 4, 0, 0xAD, 0xDE, 0, 0]),
            Err(ErrorCode::BadMagic)
        );
    }

    extern crate std;
}
