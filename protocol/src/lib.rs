//! flashgate's security protocol: the one place that defines the bytes on every wire.
//!
//! The firmware (RAM flash loader, secure bootloader, demo OS) and the host programs
//! (station worker, coordinator, CLI) all use this crate, so the two sides cannot drift.
//! It is `no_std` even when the `std` feature is on, so a std dependency cannot creep into
//! the firmware unnoticed (rustls does the same). Cryptography comes from the dalek and
//! RustCrypto crates only. The protocol is written up in `docs/protocol.md`.
//!
//! Where each flow lives:
//! - provisioning over the debug link: [`provisioning`] (station and loader sides),
//!   [`key_schedule`], [`sealed_frame`], [`mailbox`], [`device_record`]; the device key,
//!   sealed by the coordinator to the loader: [`device_key_transport`];
//! - a chip's identity: [`certificate`] (signed by the product authority per unique ID);
//! - boot: [`boot`] (the checks bound to the chip), [`image`], the keys a signed image pins:
//!   [`trust_anchors`];
//! - the UART (hello, update transfer, apps, data requests): [`uart`] — framing, [`uart::MsgType`],
//!   the device's services and, with `std`, the one host link;
//! - updates: [`update`] (package, transfer, install, boot state, receipt);
//! - data streams: [`data_stream`]; applications: [`app`];
//! - every wire type's encoding: [`codec::Codec`].
#![no_std]

#[cfg(feature = "std")]
extern crate std;

pub mod app;
pub mod boot;
pub mod certificate;
mod challenge_proof;
pub mod codec;
mod crc;
pub mod data_stream;
pub mod device_key_transport;
pub mod device_record;
pub mod error;
pub mod flash;
pub mod hello;
pub mod image;
mod kdf;
pub mod key_schedule;
#[allow(missing_docs)]
pub mod layout;
pub mod mailbox;
#[cfg(test)]
mod properties;
pub mod provisioning;
#[cfg(test)]
mod round_trips;
pub mod sealed_frame;
pub mod trust_anchors;
pub mod uart;
pub mod update;

pub use error::ErrorCode;

/// Length of a board's unique ID, which is its serial number.
pub const SERIAL_LEN: usize = layout::UNIQUE_ID_LEN;
/// A device serial: the board's 16-byte unique ID.
pub type Serial = [u8; SERIAL_LEN];
