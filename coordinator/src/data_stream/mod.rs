//! Data streams: verify, de-duplicate and store sealed telemetry records
//! (`flashgate_protocol::data_stream`), from gRPC ([`service`]), plain UDP datagrams
//! ([`udp`]) and a device's TCP stream of frames ([`tcp`]), all through one [`ingest::DataIngest`].
//!
//! Per device the store keeps one window record ([`records::WindowRecord`]): the current epoch
//! and a replay window for it and for the previous epoch (records of the old epoch that were
//! still in flight when the device rotated are accepted; older epochs are refused).
//!
//! Epoch changes: a `Rotation` record (sealed under the current epoch) opens `epoch + 1` and
//! closes its own epoch after its counter; a valid record of an epoch up to
//! `EPOCH_LOOKAHEAD` ahead opens it too (its rotation record may have been lost on UDP, and a
//! device moves on by itself when an epoch's 16-bit counters run out).
//!
//! Records of both formats (v1, v2: `flashgate_protocol::data_stream`) share the windows. The
//! windows also keep a digest per record they hold, which tells a copy of a board (same key,
//! same counters, other records) from a replay ([`ingest`]).

pub mod down;
pub mod index;
pub mod ingest;
pub mod limits;
pub mod records;
mod service;
mod tcp;
mod udp;

pub use down::{DeliveryState, DownQueue};
pub use ingest::{DataIngest, IngestStats, Sender, Verdict, MAX_BATCH};
pub use limits::IngestLimits;
pub use service::{DataApi, DeviceMessageApi};
pub use tcp::{serve_tcp, serve_tcp_with_receipts};
pub use udp::{serve_udp, serve_udp_on_own_thread};

#[cfg(test)]
mod tests;
