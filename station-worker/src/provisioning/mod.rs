//! One provisioning job, from a lease slot to a registered device. This folder is the whole
//! per-target flow, and its only driver: the factory (`flashgate-station run` → the
//! [`station`](crate::station) supervisor → a probe actor → [`run_target`]), the demo and every
//! test run the same [`run_target`].
//!
//! Read it in the order a job goes:
//!
//! | step | module | in → out |
//! |---|---|---|
//! | 1. lease | [`lease`] | the coordinator's `SignedLease` → [`Lease`] (signature, validity, station, opened secret) and its [`SlotLedger`]; one [`Slot`] per device, by value |
//! | 2. images | [`releases`] | the lease's release digests → [`OrderPlan`] (fetched once, cached on disk, verified under the lease's vendor key) |
//! | 3. job | [`plan`] | plan + the [`CertificateIssuer`] and, for an order with an OS, where each board's package comes from ([`OsInstall`]) → [`Job`], what a probe actor's thread gets |
//! | 4. target | [`flow`] | [`run_target`]: fixture → loader session (the chip's UID) → its certificate from the coordinator ([`IssuedCertificate`], key sealed to the loader) → receipt → test → lock → `hello` answering the coordinator's challenge → (OS install) → [`Provisioned`], or [`Failed`] (who is at fault: [`ProvisioningError`]) |
//! | 5. session | [`session`] | the typestate [`FlashLoaderSession`] over the [`Probe`](crate::probe::Probe): `Started` → `KeyConfirmed` → `SecretsSent` → `Committed` → (`Tested`) → `Locked` |
//! | 6. OS | [`os_install`] | for an order with an OS: the board's per-device package (from the coordinator, ciphertext only) relayed over its UART through the bootloader's update path, resumed after a power cut → [`OsInstalled`] with the device's status receipt |
//! | 7. report | [`report`], [`outbox`], [`journal`] | outcome → [`Report`] (with the receipt, which the coordinator verifies), journaled (fsync) before it is sent, re-sent after outages, its slot consumed or released |
//!
//! Each type marks a boundary: [`Lease`] what the coordinator signed, [`Slot`] the exact count,
//! [`OrderPlan`] what the vendor signed, [`Job`] the hand-over to a probe thread, [`Provisioned`]
//! / [`Failed`] what the target proved, [`Report`] what is durable before the coordinator hears
//! of it. The wire types (`SignedLease`, `ReportInstallRequest`) are made and read at the two
//! ends only.
//!
//! The station's half of `docs/protocol.md`: the loader is written over the debug link, the
//! handshake runs through the mailbox, and the bootloader, key and configuration go as sealed
//! frames, taking turns with the target at the loader's `host_yield` breakpoint (QEMU's gdbstub
//! is all-stop).

mod error;
pub mod flow;
mod issuer;
pub mod journal;
pub mod lease;
mod loader_image;
pub mod os_install;
pub mod outbox;
pub mod plan;
pub mod releases;
pub mod report;
pub mod session;
mod timings;

pub use error::{
    AtFault, Failed, IssueError, PackageError, ProvisioningError, StationFault, Step, TargetFault,
};
pub use flow::{run_target, Provisioned};
pub use issuer::CoordinatorIssuer;
pub use lease::{Lease, LeaseRefused, Slot, SlotLedger};
pub use loader_image::LoaderImage;
pub use os_install::{FactoryPackage, OsInstall, OsInstalled, OsTimings, PackageSource};
pub use outbox::{Delivery, Outbox, Settled};
pub use plan::{CertificateIssuer, IssuedCertificate, Job, OrderPlan};
pub use releases::{ReleaseCache, ReleaseError};
pub use report::Report;
pub use session::{
    Committed, FlashLoaderSession, KeyConfirmed, LoaderMailbox, Locked, SecretsSent, Started,
    TestAppReport, TestFailed, TestRun, Tested,
};
pub use timings::PhaseTimings;
