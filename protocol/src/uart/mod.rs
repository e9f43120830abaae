//! The device's UART (the update link): framing, message types, the device's services and
//! the host's end of the link.
//!
//! - [`msg_type`]: [`MsgType`], every message id in one enum;
//! - [`frame`]: a frame around one message (sync, type, length, payload, CRC-32) and the
//!   streaming [`FrameDecoder`];
//! - [`message`]: [`Request`] (host → device) and [`DeviceMessage`] (device → host), one
//!   [`Codec`](crate::codec::Codec) each;
//! - [`service`]: the device's side: [`BootloaderService`] and [`OsService`] route every
//!   request (hello, status receipt, update transfer, apps, data) and tell the firmware what
//!   only it can do (jump, halt, call an app, seal a record);
//! - `host` (with `std`): [`HostLink`](host::HostLink), the one host end of the link, used by
//!   the station, the CLI and the benches.
//!
//! Dependencies point one way: `uart` uses `update`, `hello`, `app`; nothing below imports
//! `uart`. The exchange is written up in `docs/protocol.md` §5 and §7–§9.

pub mod frame;
#[cfg(feature = "std")]
pub mod host;
pub mod message;
pub mod msg_type;
pub mod service;

pub use frame::{encode_frame, Frame, FrameDecoder, UartMessage, MAX_FRAME, MAX_PAYLOAD, OVERHEAD};
pub use message::{DeviceMessage, OsStatus, Request};
pub use msg_type::{MsgType, UnknownMsgType};
pub use service::{BootloaderAction, BootloaderService, FrameSink, OsAction, OsService};
