//! The OS a board leaves the factory with (an order with `os_release_digest`): after the lock
//! and the verified `hello`, [`install_os`] relays the coordinator's per-device package for that
//! chip over the board's UART through its bootloader's update path — begin, the chunks, finish,
//! install — and asks the new OS for a status receipt answering the coordinator's challenge.
//!
//! The station holds ciphertext and the envelope only: the content key is wrapped for the device
//! (`docs/protocol.md` §7), nothing of the package is written to disk, and the station never
//! judges the receipt with a key (it has none for this): the coordinator verifies it when the
//! install is reported and registers the board only if it shows the OS running, confirmed.
//! The station reads the receipt's claims (unauthenticated) only to fail a board early with a
//! clear reason.
//!
//! A link that dies mid-install (a power cut, a cable) is not the end: the board is restarted
//! through its fixture and the same envelope is sent again, so the transfer resumes where the
//! staging slot stopped, and an install cut between its flash steps is finished by the
//! bootloader at that reset. A refusal (another chip's package: `WrongSerial`, `WrongDevice`)
//! fails the board at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_proto::v1;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::uart::host::Relayed;
use flashgate_protocol::uart::MsgType;
use flashgate_protocol::update::boot_state::Outcome;
use flashgate_protocol::update::receipt::{self, CHALLENGE_LEN, RECEIPT_LEN};
use flashgate_protocol::Serial;

use super::{PackageError, ProvisioningError, StationFault, TargetFault};
use crate::device_link::{DeviceLink, DeviceLinkError};
use crate::fixture::{FixtureError, TargetFixture};

/// Times the board is restarted to resume an install whose link was lost, plus the first try.
pub const OS_INSTALL_ATTEMPTS: u32 = 3;

/// One board's package of the order's OS, as the coordinator made it for that chip.
#[derive(Clone)]
pub struct FactoryPackage {
    /// The OS version inside.
    pub version: u32,
    /// The envelope: the content key wrapped for this device only.
    pub envelope: Vec<u8>,
    /// The release's ciphertext chunks, each with its tag.
    pub chunks: Vec<Vec<u8>>,
    /// What the status receipt must answer.
    pub challenge: [u8; CHALLENGE_LEN],
}

impl std::fmt::Debug for FactoryPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactoryPackage")
            .field("version", &self.version)
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

impl TryFrom<v1::UpdatePackage> for FactoryPackage {
    type Error = PackageError;

    fn try_from(p: v1::UpdatePackage) -> Result<Self, PackageError> {
        let challenge = p.challenge.as_slice().try_into().map_err(|_| {
            PackageError::Malformed(format!(
                "its challenge is {} bytes, not {CHALLENGE_LEN}",
                p.challenge.len()
            ))
        })?;
        Ok(Self {
            version: p.version,
            envelope: p.envelope,
            chunks: p.chunks,
            challenge,
        })
    }
}

/// Where a board's OS package comes from: the coordinator
/// ([`CoordinatorPackages`](crate::station::packages::CoordinatorPackages)), or a program
/// embedding the station's flow with its own.
pub trait PackageSource: Send + Sync {
    /// The package of the order's OS for board `serial` of lease `lease_id`, within `timeout`.
    fn factory_package(
        &self,
        lease_id: &str,
        serial: &Serial,
        timeout: Duration,
    ) -> Result<FactoryPackage, PackageError>;
}

/// The OS part of a [`Job`](super::Job): the version the order's boards leave with and where
/// their packages come from.
#[derive(Clone)]
pub struct OsInstall {
    /// The OS version every board must end up running, confirmed.
    pub version: u32,
    /// Where each board's package comes from.
    pub packages: Arc<dyn PackageSource>,
}

impl std::fmt::Debug for OsInstall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsInstall")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Where the time of one OS install went, milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OsTimings {
    /// Asking the coordinator for the package.
    pub package: f64,
    /// Relaying it over the link: transfer, staging checks, install (restarts included).
    pub install: f64,
    /// The status request and its receipt.
    pub receipt: f64,
}

/// A board running the order's OS, as it says itself.
#[derive(Clone, Debug)]
pub struct OsInstalled {
    /// The version it runs.
    pub version: u32,
    /// Its status receipt answering the coordinator's challenge, as received: the coordinator
    /// verifies it when the install is reported.
    pub receipt: [u8; RECEIPT_LEN],
    /// Times the board was restarted to resume the install (0: one go).
    pub restarts: u32,
    /// The chunk the last transfer started at (past 0: it resumed).
    pub resumed_at: u32,
    /// Where the time went.
    pub timings: OsTimings,
}

/// Why an attempt stopped.
enum Attempt {
    /// The link went away mid-install: restart the board and try again.
    LinkLost(DeviceLinkError),
    /// Anything else ends the board's install.
    Failed(ProvisioningError),
}

impl From<DeviceLinkError> for Attempt {
    fn from(e: DeviceLinkError) -> Self {
        if e.link_lost() {
            return Attempt::LinkLost(e);
        }
        Attempt::Failed(match e.refusal() {
            Some((request, code)) => ProvisioningError::TargetRefused {
                request: request.map_or("the OS install", request_name),
                code,
            },
            None => TargetFault::OsInstall(e).into(),
        })
    }
}

fn request_name(request: MsgType) -> &'static str {
    match request {
        MsgType::EnterUpdate => "EnterUpdate",
        MsgType::UpdateBegin => "UpdateBegin",
        MsgType::UpdateChunk => "UpdateChunk",
        MsgType::UpdateFinish => "UpdateFinish",
        MsgType::UpdateInstall => "UpdateInstall",
        MsgType::StatusRequest => "StatusRequest",
        _ => "the OS install",
    }
}

/// Installs the order's OS on the board `serial` whose bootloader answers on `link` (see the
/// module documentation); `lease_id` names it to the coordinator.
pub(super) fn install_os(
    fixture: &mut dyn TargetFixture,
    link: DeviceLink<std::net::TcpStream>,
    os: &OsInstall,
    lease_id: &str,
    serial: Serial,
    timeout: Duration,
) -> Result<OsInstalled, ProvisioningError> {
    let mut timings = OsTimings::default();
    let t = Instant::now();
    let package = os
        .packages
        .factory_package(lease_id, &serial, timeout)
        .map_err(StationFault::OsPackage)?;
    timings.package = ms(t.elapsed());
    if package.version != os.version {
        return Err(StationFault::OsPackage(PackageError::Malformed(format!(
            "it holds OS version {}, the lease names {}",
            package.version, os.version
        )))
        .into());
    }
    let mut link = link;
    let mut restarts = 0;
    let t = Instant::now();
    let resumed_at = loop {
        match relay(&mut link, &package, serial, timeout) {
            Ok(resumed_at) => break resumed_at,
            Err(Attempt::LinkLost(e)) if restarts + 1 < OS_INSTALL_ATTEMPTS => {
                tracing::info!(error = %e, "link lost during the OS install: restarting the board to resume");
                restarts += 1;
                link = fixture
                    .restart_for_hello(timeout)?
                    .ok_or_else(|| FixtureError::Reset("the fixture has no UART".into()))?;
            }
            Err(Attempt::LinkLost(e)) => return Err(TargetFault::OsInstall(e).into()),
            Err(Attempt::Failed(e)) => return Err(e),
        }
    };
    timings.install = ms(t.elapsed());
    let t = Instant::now();
    let receipt = confirmed_receipt(&mut link, &package, serial, timeout)?;
    timings.receipt = ms(t.elapsed());
    Ok(OsInstalled {
        version: package.version,
        receipt,
        restarts,
        resumed_at,
        timings,
    })
}

/// One attempt: gets the board to its bootloader's update service (unless the OS already runs,
/// an install finished at the last reset) and relays the package. Returns where the transfer
/// started.
fn relay(
    link: &mut DeviceLink<std::net::TcpStream>,
    package: &FactoryPackage,
    serial: Serial,
    timeout: Duration,
) -> Result<u32, Attempt> {
    let claimed = link.hello(timeout)?.claimed;
    if claimed.serial != serial {
        // Another board in the bay: nothing of this one's package goes to it.
        return Err(Attempt::Failed(
            TargetFault::HelloMismatch {
                serial: hex::encode(claimed.serial),
                version: claimed.bootloader_version,
            }
            .into(),
        ));
    }
    match claimed.state {
        DeviceState::OsRunning { version } if version == package.version => return Ok(0),
        DeviceState::OsRunning { .. } => link.enter_update(timeout)?,
        DeviceState::NoValidImage { .. } => {}
    }
    match link.relay_package(&package.envelope, &package.chunks, timeout)? {
        Relayed::Installed {
            version,
            resumed_at,
        } if version == package.version => Ok(resumed_at),
        other => Err(Attempt::Failed(
            TargetFault::OsNotConfirmed(format!("the install answered {other:?}")).into(),
        )),
    }
}

/// The new OS's status receipt, checked for what it claims (the coordinator checks its MAC).
fn confirmed_receipt(
    link: &mut DeviceLink<std::net::TcpStream>,
    package: &FactoryPackage,
    serial: Serial,
    timeout: Duration,
) -> Result<[u8; RECEIPT_LEN], ProvisioningError> {
    let raw = link
        .status_receipt(package.challenge, timeout)
        .map_err(TargetFault::OsInstall)?;
    let claims = receipt::peek(&raw)
        .map_err(|code| TargetFault::OsNotConfirmed(format!("its receipt is malformed: {code}")))?;
    let running = claims.state
        == DeviceState::OsRunning {
            version: package.version,
        };
    if claims.serial != serial
        || !running
        || claims.outcome != Outcome::Updated
        || claims.on_trial()
    {
        return Err(TargetFault::OsNotConfirmed(format!(
            "its receipt claims {:?}, outcome {:?}{}",
            claims.state,
            claims.outcome,
            if claims.on_trial() { ", on trial" } else { "" }
        ))
        .into());
    }
    Ok(raw)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
