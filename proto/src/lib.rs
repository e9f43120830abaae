//! flashgate's gRPC API (`flashgate.v1`): the generated messages and services, plus the small
//! pieces both ends of the station API must agree on byte for byte:
//! - [`station_auth`]: how a station signs each request (the coordinator verifies);
//! - [`lease`]: how a lease is signed and checked;
//! - [`serial`]: how a device serial is written.
#![forbid(unsafe_code)]

/// Generated code for package `flashgate.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("flashgate.v1");
}

pub mod lease;
pub mod serial;
pub mod station_auth;

/// Encoded `FileDescriptorSet` of `flashgate.v1`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flashgate_v1_descriptor.bin"));
