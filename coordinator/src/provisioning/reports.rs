//! Install reports: `ReportInstall` marks a certified chip INSTALLED once its hello proof
//! verifies under its device key (the slot was consumed when its certificate was issued,
//! `super::certificates`), or records a target that failed.
//!
//! A device is marked installed for the lease's own station, when the install time is within
//! the lease's lifetime and the report arrives within the grace period after `not_after`, and
//! only when the device's hello answers the issuance's challenge under its device key and
//! names its own chip; under an order with an OS, only with the device's status receipt
//! showing that OS running, confirmed ([`super::factory_packages`]). The station never
//! verifies device proofs: it holds no device key.

use std::sync::Arc;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::hello;
use tracing::Instrument;

use super::factory_packages::FactoryPackages;
use super::leases::{LeaseRecord, LeaseState, Leases};
use super::registry::{DeviceRecord, DeviceState, FailureRecord};
use super::stations::StationRecord;
use crate::audit::{Actor, AuditLog, ChainScope, Entry};
use crate::config::CoordinatorConfig;
use crate::data_stream::index::DeviceIdIndex;
use crate::error::{CoordinatorError as E, Result};
use crate::ids::Serial;
use crate::keys::{device_key_aad, KekRing};
use crate::repository::{Attempt, CasRetry, Db, Stored, Transacted, Txn};

fn duplicate(existing: &DeviceRecord) -> E {
    E::AlreadyExists(format!(
        "serial {} is already registered for product {} (order {}, station {}, at {}); a serial is registered once and never overwritten",
        existing.serial, existing.product_id, existing.order_id, existing.station_id, existing.registered_at_ms
    ))
}

/// A report checked and ready to register.
struct Install<'a> {
    station: &'a StationRecord,
    req: &'a v1::ReportInstallRequest,
    serial: Serial,
    test: v1::TestOutcome,
    log: &'a str,
}

/// Takes the stations' install reports: registers the device and consumes its lease slot in
/// one transaction, or records a failure; a re-sent report is answered with its record.
#[derive(Clone)]
pub struct Reports {
    db: Db,
    leases: Leases,
    factory: FactoryPackages,
    kek: Arc<KekRing>,
    config: Arc<CoordinatorConfig>,
    audit: AuditLog,
}

impl Reports {
    /// Reports over `db`, against `leases`; OS installs are checked by `factory`; device keys
    /// are sealed with `kek`, registrations audited in `audit` (the lease's chain).
    pub fn new(
        db: Db,
        leases: Leases,
        factory: FactoryPackages,
        kek: Arc<KekRing>,
        config: Arc<CoordinatorConfig>,
        audit: AuditLog,
    ) -> Self {
        Self {
            db,
            leases,
            factory,
            kek,
            config,
            audit,
        }
    }

    /// Registers one install made under a lease, or records a failed target
    /// ([`v1::InstallOutcome::Failed`]: see [`Self::report_failure`]).
    pub async fn report_install(
        &self,
        station: &StationRecord,
        req: &v1::ReportInstallRequest,
    ) -> Result<v1::ReportInstallResponse> {
        let test = req.test_result.clone().unwrap_or_default();
        if test.log.len() > 16 * 1024 {
            return Err(E::InvalidArgument("a test log is at most 16 KiB".into()));
        }
        let (test_outcome, outcome) = match (
            v1::TestOutcome::try_from(test.outcome),
            v1::InstallOutcome::try_from(req.outcome),
        ) {
            (Ok(test), Ok(outcome)) => (test, outcome),
            _ => {
                return Err(E::InvalidArgument(
                    "unknown test or install outcome (INSTALL_OUTCOME_REJECTED is retired: report a board that failed its test as FAILED)".into(),
                ))
            }
        };
        if outcome == v1::InstallOutcome::Failed {
            return self
                .report_failure(station, req, test_outcome, &test.log)
                .await;
        }
        if test_outcome == v1::TestOutcome::Fail {
            return Err(E::InvalidArgument(
                "a board that failed its factory test is not registered: report it as INSTALL_OUTCOME_FAILED".into(),
            ));
        }
        if !req.failure_reason.is_empty() {
            return Err(E::InvalidArgument(
                "failure_reason is only for INSTALL_OUTCOME_FAILED".into(),
            ));
        }
        let install = Install {
            station,
            req,
            serial: Serial::parse(&req.serial)?,
            test: test_outcome,
            log: &test.log,
        };
        CasRetry::new("the lease")
            .run(|| self.try_register(&install))
            .await
    }

    async fn try_register(
        &self,
        install: &Install<'_>,
    ) -> Result<Attempt<v1::ReportInstallResponse>> {
        let (station, req, serial) = (install.station, install.req, install.serial);
        let stored_lease = self.leases.own(station, &req.lease_id).await?;
        let lease = stored_lease.record.clone();
        let key = (lease.product_id, serial);
        let Some(stored) = self.db.get::<DeviceRecord>(&key).await? else {
            return Err(E::FailedPrecondition(format!(
                "no certificate was issued for chip {serial} of product {}: a device exists only once IssueDeviceCertificate certified it",
                lease.product_id
            )));
        };
        let existing = &stored.record;
        if existing.station_id != station.station_id || existing.lease_id != lease.lease_id {
            return Err(duplicate(existing));
        }
        let remaining_in_lease = match lease.state {
            LeaseState::Active => lease.count - lease.used,
            _ => 0,
        };
        // A re-sent report whose first answer was lost (same station, lease and install time)
        // is answered as the first time, whatever became of the lease since: the station reads
        // the record, not a message, to know the install was its own.
        if existing.installed_at_ms != 0 {
            if existing.installed_at_ms == req.installed_at_ms {
                return Ok(Attempt::Done(v1::ReportInstallResponse {
                    device: Some(existing.to_proto()),
                    remaining_in_lease,
                    failure: None,
                }));
            }
            return Err(duplicate(existing));
        }
        self.check_install_time(&lease, req.installed_at_ms)?;
        let proven = self.check_hello(existing, req)?;
        let mut device = existing.clone();
        device.installed_at_ms = req.installed_at_ms;
        device.registered_at_ms = now_ms();
        device.bootloader_version = req.bootloader_version;
        device.test_outcome = install.test;
        device.test_log = install.log.to_owned();
        if proven {
            device.state = DeviceState::Installed;
        }
        let device_key = self.kek.open_key(
            &device_key_aad(lease.product_id.0, &serial.0),
            &existing.sealed_device_key,
        )?;
        let os = self
            .factory
            .verified_os(&lease, serial, &device_key, &req.os_status_receipt)
            .await?;
        device.os_version = os.as_ref().map_or(0, |o| o.version);
        let mut audited = lease.clone();
        let entry = Entry::new(
            &Actor::station(&station.station_id),
            "install registered",
            serial,
        )
        .detail(format!(
            "product {}, {}",
            lease.product_id,
            if proven {
                "hello proof verified"
            } else {
                "no hello proof (stays certified)"
            }
        ));
        let txn = self
            .audit
            .append(
                Txn::new().unchanged(&stored_lease).unchanged(&stored),
                &ChainScope::lease(&lease.lease_id),
                &mut audited.audit,
                entry,
            )
            .await?;
        let mut txn = DeviceIdIndex::add(txn, lease.product_id, serial)
            .replace(&stored_lease, &audited)
            .replace(&stored, &device);
        if let Some(os) = &os {
            // The receipt's challenge answers this one registration.
            txn = txn.unchanged(&os.install).delete(&os.install);
        }
        let outcome = self
            .db
            .transact(txn, &[])
            .instrument(
                tracing::info_span!("registry_write", serial = %serial, lease = %lease.lease_id),
            )
            .await?;
        let Transacted::Committed { revision } = outcome else {
            return Ok(Attempt::Conflict);
        };
        // The next certificate under this lease then starts from the record just written.
        self.leases
            .remember(Stored::written(stored_lease.key.clone(), audited, revision));
        tracing::info!(
            serial = %serial, product = %lease.product_id, lease = %lease.lease_id,
            order = %lease.order_id, station = %station.station_id, proven, "device registered"
        );
        Ok(Attempt::Done(v1::ReportInstallResponse {
            device: Some(device.to_proto()),
            remaining_in_lease,
            failure: None,
        }))
    }

    /// Verifies the device's hello (when the station had a UART to ask it) under the device
    /// key against the issuance's challenge: true when it proves the install. A report without
    /// one leaves the device CERTIFIED (its slot is consumed either way); a proof that fails, or
    /// a hello from another chip, refuses the report.
    fn check_hello(&self, device: &DeviceRecord, req: &v1::ReportInstallRequest) -> Result<bool> {
        if req.hello_response.is_empty() {
            return Ok(false);
        }
        let challenge: [u8; hello::CHALLENGE_LEN] = req
            .hello_challenge
            .as_slice()
            .try_into()
            .ok()
            .filter(|c: &[u8; 32]| c[..] == device.hello_challenge[..])
            .ok_or_else(|| {
                E::InvalidArgument(
                    "the hello answers another challenge than the one issued with the certificate"
                        .into(),
                )
            })?;
        let device_key = self.kek.open_key(
            &device_key_aad(device.product_id.0, &device.serial.0),
            &device.sealed_device_key,
        )?;
        let info = hello::verify_response(&device_key, &challenge, &req.hello_response).map_err(
            |code| {
                E::InvalidArgument(format!(
                    "the device's hello proof does not verify under its device key ({code:?})"
                ))
            },
        )?;
        if info.serial != device.serial.0 || !info.on_its_own_chip() {
            return Err(E::InvalidArgument(format!(
                "the hello names serial {} on chip {}, not chip {}",
                ::hex::encode(info.serial),
                ::hex::encode(info.chip_uid),
                device.serial
            )));
        }
        Ok(true)
    }

    /// An install is registered only under an active lease, done before its not-after, reported
    /// within the grace period, and not dated before the lease or in the future.
    fn check_install_time(&self, lease: &LeaseRecord, installed_at_ms: i64) -> Result<()> {
        if lease.state != LeaseState::Active {
            return Err(E::FailedPrecondition(format!(
                "lease {} has ended ({:?}); its unused slots went back to the order",
                lease.lease_id, lease.state
            )));
        }
        let now = now_ms();
        if installed_at_ms > lease.not_after_ms {
            return Err(E::FailedPrecondition(format!(
                "the install time {installed_at_ms} is after lease {}'s not-after {}: the lease had expired",
                lease.lease_id, lease.not_after_ms
            )));
        }
        let grace = self.config.report_grace.as_millis() as i64;
        if now > lease.not_after_ms + grace {
            return Err(E::FailedPrecondition(format!(
                "lease {} expired at {}; installs under it had to be reported by {}",
                lease.lease_id,
                lease.not_after_ms,
                lease.not_after_ms + grace
            )));
        }
        let skew = self.config.auth_window.as_millis() as i64;
        if installed_at_ms < lease.issued_at_ms - skew || installed_at_ms > now + skew {
            return Err(E::InvalidArgument(format!(
                "the install time {installed_at_ms} is outside lease {}'s lifetime",
                lease.lease_id
            )));
        }
        Ok(())
    }

    /// Records a target that failed under one of the station's leases: one failure entry per
    /// (order, lease, time, serial), counted in the order's `failed`. Nothing is registered and
    /// the lease's `used` is not touched, so no slot is consumed (the station reuses the slot;
    /// an ended lease gave it back already). Accepted under an ended lease too (reports are
    /// re-sent after outages); re-sending the same failure is a no-op.
    async fn report_failure(
        &self,
        station: &StationRecord,
        req: &v1::ReportInstallRequest,
        test_outcome: v1::TestOutcome,
        test_log: &str,
    ) -> Result<v1::ReportInstallResponse> {
        let serial = if req.serial.is_empty() {
            None
        } else {
            Some(Serial::parse(&req.serial)?)
        };
        let reason = req.failure_reason.trim();
        if reason.is_empty() || reason.len() > 1024 {
            return Err(E::InvalidArgument(
                "a FAILED report carries a failure_reason of 1 to 1024 bytes".into(),
            ));
        }
        let lease = self.leases.own(station, &req.lease_id).await?.record;
        let now = now_ms();
        let skew = self.config.auth_window.as_millis() as i64;
        if req.installed_at_ms < lease.issued_at_ms - skew
            || req.installed_at_ms > lease.not_after_ms
            || req.installed_at_ms > now + skew
        {
            return Err(E::InvalidArgument(format!(
                "the failure time {} is outside lease {}'s lifetime",
                req.installed_at_ms, lease.lease_id
            )));
        }
        let record = FailureRecord {
            order_id: lease.order_id.clone(),
            lease_id: lease.lease_id.clone(),
            station_id: station.station_id.clone(),
            product_id: lease.product_id,
            serial,
            reason: reason.to_owned(),
            failed_at_ms: req.installed_at_ms,
            recorded_at_ms: now,
            test_outcome,
            test_log: test_log.to_owned(),
        };
        let key = record.key();
        let committed = self
            .db
            .commit(Txn::new().absent::<FailureRecord>(&key).put(&key, &record))
            .await?;
        let record = if committed {
            tracing::info!(
                serial = ?serial.map(|s| s.hex()), lease = %lease.lease_id, order = %lease.order_id,
                station = %station.station_id, "failed target recorded (not registered)"
            );
            record
        } else {
            // A re-sent report: the first one got through.
            self.db
                .get::<FailureRecord>(&key)
                .await?
                .map(|r| r.record)
                .ok_or_else(|| {
                    E::Unavailable("the failure record is being written; retry".into())
                })?
        };
        let remaining_in_lease = if lease.state == LeaseState::Active {
            lease.count - lease.used
        } else {
            0
        };
        Ok(v1::ReportInstallResponse {
            device: None,
            remaining_in_lease,
            failure: Some(record.to_proto()),
        })
    }
}
