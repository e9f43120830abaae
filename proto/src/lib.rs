//! flashgate's gRPC API (`flashgate.v1`): the generated messages and services, plus the small
//! pieces both ends of the station API must agree on byte for byte:
//! - [`station_auth`]: how a station signs each request (the coordinator verifies);
//! - [`operator_auth`]: how an operator's token travels (one client interceptor);
//! - [`lease`]: how a lease is signed and checked;
//! - [`serial`]: how a device serial is written;
//! - [`clock`]: the hosts' one wall clock;
//! - [`transport`]: how every client reaches the coordinator (TLS, or plain text only when asked);
//! - [`sealed_release`]: release images sealed to the station that fetches them;
//! - [`bundle`]: the enrolment bundle a station trusts its coordinator from.

/// Generated code for package `flashgate.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("flashgate.v1");
}

pub mod bundle;
pub mod clock;
pub mod lease;
pub mod operator_auth;
pub mod sealed_release;
pub mod serial;
pub mod station_auth;
pub mod transport;

/// Encoded `FileDescriptorSet` of `flashgate.v1`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flashgate_v1_descriptor.bin"));

/// The coordinator's gRPC port, the same default for every binary (server, station, CLI).
pub const DEFAULT_PORT: u16 = 7400;
/// Where the station and the CLI look for a coordinator when nothing else is configured.
pub const DEFAULT_ENDPOINT: &str = "https://127.0.0.1:7400";
