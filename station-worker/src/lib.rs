//! The factory station: drives several debug probes at once, one actor per probe, under a
//! lease from the coordinator; journals every install durably before reporting it.
//!
//! Modules, one job each: [`identity`] (station keys, sealed at rest), [`coordinator_client`]
//! (signed gRPC), [`lease`] (verify, open, derive device keys, count slots), [`journal`]
//! (fsynced JSON lines, replay), [`fixture`] (where targets come from), [`install_flow`] (the
//! blocking per-target flow), [`actors`] (supervisor + probe actors), [`events`] (progress,
//! `--json`), [`config`] (TOML), [`station`] (one run).
#![forbid(unsafe_code)]

pub mod actors;
pub mod config;
pub mod coordinator_client;
pub mod device_link;
pub mod doctor;
pub mod events;
pub mod fixture;
pub mod identity;
pub mod install_flow;
pub mod journal;
pub mod lease;
pub mod metrics;
pub mod probe;
pub mod provisioning;
pub mod station;
