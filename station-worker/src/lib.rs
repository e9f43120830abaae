//! The factory station: drives several debug probes at once, one actor per probe, under a
//! lease from the coordinator; journals every install durably before reporting it.
//!
//! Where to look:
//!
//! | folder / module | what |
//! |---|---|
//! | [`provisioning/`](provisioning) | **one job from lease to registry**, the only per-target flow: lease and slots, release cache, the typestate loader session, the flow, reports (journal, outbox). Start at its module doc. |
//! | [`station/`](station) | one run (`flashgate-station run`): start-up, the supervisor actor, one probe actor per bay |
//! | [`fixture/`](fixture) | where targets come from: emulated QEMU boards, a GDB server, a USB probe (probe-rs) |
//! | [`probe/`](probe) | the `Probe` trait and its backends (GDB remote, probe-rs) |
//! | [`config`] | the TOML file and its `[[probes]]` |
//! | [`identity`] | the station's keys, sealed at rest under the station KEK |
//! | [`coordinator_client`] | signed gRPC calls to the coordinator |
//! | [`device_link`] | the host end of a device's UART (the post-lock `hello`) |
//! | [`events`], [`metrics`] | progress lines / `--json`, Prometheus metrics |
//! | [`doctor`] | `flashgate-station doctor`'s checklist |
//!
//! Modules depend downwards only (no import cycle): `station` → `provisioning` → `fixture` →
//! `probe`; `config`, `identity`, `events`, `device_link` depend on none of those
//! (`tests/module_graph.rs` checks it).

pub mod config;
pub mod coordinator_client;
pub mod device_link;
pub mod doctor;
pub mod enrolment;
pub mod events;
pub mod fixture;
pub mod identity;
pub mod metrics;
pub mod probe;
pub mod provisioning;
pub mod station;
