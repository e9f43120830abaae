//! The real `flashgate` binary, run as a process, against a real coordinator on loopback: one
//! module per command group (named like the CLI's own files), `help` for every subcommand.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test binary: a panic is how it reports a failure"
)]

mod completion;
mod config;
mod data;
mod device;
mod devices;
mod global;
mod help;
mod image;
mod leases;
mod order;
mod product;
mod release;
mod rollout;
mod station;
mod support;
mod update;
