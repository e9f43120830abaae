//! The lease flow, where the count is kept exact.
//!
//! Invariant per order, held by every transaction below:
//! `quota.remaining + Σ active leases (count − used) + Σ all leases used == order.count`,
//! and `Σ used == devices registered under the order`.
//! - acquire: one transaction guarded by the quota's revision moves n slots from the quota into
//!   a new lease;
//! - report: one transaction guarded by the lease's revision and the serial's absence adds the
//!   device and bumps `used`;
//! - return / expiry: one transaction guarded by the lease's and the quota's revisions ends the
//!   lease and gives `count − used` back. A second return or a racing expiry finds the lease no
//!   longer active, so the slots come back exactly once, whichever replica does it.
//!
//! A guard that fails means another writer won the race: re-read and retry.

use std::time::Duration;

use flashgate_proto::{lease::sign_lease, v1};
use flashgate_protocol::lease_keys::{derive_device_key, seal_lease_secret};
use rand_core::{OsRng, RngCore};
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::coordinator::{
    decode_hex, device_to_proto, failure_to_proto, lease_to_proto, now_ms, parse_serial, random_id,
    Coordinator,
};
use crate::error::{CoordinatorError as E, Result};
use crate::keys::{device_key_aad, lease_secret_aad};
use crate::records::*;
use crate::store::{Guard, Write};

/// Attempts before a contended transaction gives up with UNAVAILABLE.
const MAX_ATTEMPTS: u32 = 200;

async fn backoff(attempt: u32) {
    let cap = 1u64 << attempt.min(5);
    let jitter = u64::from(OsRng.next_u32()) % (cap * 1000);
    tokio::time::sleep(Duration::from_micros(200 + jitter)).await;
}

fn contended(what: &str) -> E {
    E::Unavailable(format!("{what} is heavily contended; retry"))
}

impl Coordinator {
    /// Reserves up to `req.count` slots of an order for `station` and returns the signed lease.
    pub async fn acquire_lease(
        &self,
        station: &StationRecord,
        req: &v1::AcquireLeaseRequest,
    ) -> Result<v1::SignedLease> {
        let order = self.order(&req.order_id).await?;
        if !Self::station_may_work_on(station, &order) {
            return Err(E::PermissionDenied(format!(
                "station {} is not assigned to order {}",
                station.station_id, order.order_id
            )));
        }
        if req.count == 0 || req.count > self.config.max_lease_count {
            return Err(E::InvalidArgument(format!(
                "a lease covers 1 to {} devices; asked for {}",
                self.config.max_lease_count, req.count
            )));
        }
        let validity = if req.validity_seconds == 0 {
            self.config.default_lease_validity
        } else {
            Duration::from_secs(u64::from(req.validity_seconds)).min(self.config.max_lease_validity)
        };
        let vendor_public_key = decode_hex(
            &self.product(order.product_id).await?.vendor_public_key,
            "vendor key",
        )?;
        let station_x25519: [u8; 32] = decode_hex(&station.x25519_public_key, "station key")?
            .try_into()
            .map_err(|_| E::Internal("stored station X25519 key has the wrong length".into()))?;
        let quota_k = quota_key(&order.order_id);
        for attempt in 0..MAX_ATTEMPTS {
            let (quota, quota_rev) =
                self.read::<QuotaRecord>(&quota_k).await?.ok_or_else(|| {
                    E::Internal(format!("quota of order {} is missing", order.order_id))
                })?;
            let want = u64::from(req.count);
            let granted = if quota.remaining >= want {
                req.count
            } else if req.allow_partial && quota.remaining > 0 {
                quota.remaining as u32
            } else {
                return Err(E::Exhausted(format!(
                    "order {} has {} unreserved slots left, fewer than the {} asked for",
                    order.order_id, quota.remaining, req.count
                )));
            };
            let lease_id = random_id("lease-");
            let mut secret = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(&mut secret[..]);
            let sealed_for_station =
                seal_lease_secret(&station_x25519, &secret, lease_id.as_bytes(), &mut OsRng);
            let sealed_at_rest = self.kek.seal(&lease_secret_aad(&lease_id), &secret[..]);
            let issued_at_ms = now_ms();
            let record = LeaseRecord {
                lease_id: lease_id.clone(),
                station_id: station.station_id.clone(),
                order_id: order.order_id.clone(),
                product_id: order.product_id,
                count: granted,
                used: 0,
                state: LeaseState::Active,
                issued_at_ms,
                not_after_ms: issued_at_ms + validity.as_millis() as i64,
                sealed_secret: hex::encode(sealed_at_rest),
                released: 0,
            };
            let committed = self
                .store
                .commit(
                    vec![
                        Guard::Revision(quota_k.clone(), quota_rev),
                        Guard::Absent(lease_key(&lease_id)),
                    ],
                    vec![
                        Write::Put(
                            quota_k.clone(),
                            encode(&QuotaRecord {
                                remaining: quota.remaining - u64::from(granted),
                            }),
                        ),
                        Write::Put(lease_key(&lease_id), encode(&record)),
                    ],
                )
                .await?;
            if committed {
                tracing::info!(
                    lease = %lease_id, order = %order.order_id, station = %station.station_id,
                    count = granted, not_after_ms = record.not_after_ms, "lease granted"
                );
                crate::metrics::granted(&order.order_id, granted);
                crate::metrics::quota_remaining(
                    &order.order_id,
                    quota.remaining - u64::from(granted),
                );
                let body = v1::LeaseBody {
                    lease_id,
                    station_id: station.station_id.clone(),
                    order_id: order.order_id.clone(),
                    product_id: order.product_id,
                    bootloader_digest: hex::decode(&order.bootloader_digest).unwrap_or_default(),
                    bootloader_version: order.bootloader_version,
                    test_app_digest: hex::decode(&order.test_app_digest).unwrap_or_default(),
                    count: granted,
                    issued_at_ms,
                    not_after_ms: record.not_after_ms,
                    sealed_lease_secret: sealed_for_station.to_vec(),
                    vendor_public_key: vendor_public_key.clone(),
                };
                return Ok(sign_lease(&body, &self.signing_key));
            }
            backoff(attempt).await;
        }
        Err(contended("the order's quota"))
    }

    async fn own_lease(
        &self,
        station: &StationRecord,
        lease_id: &str,
    ) -> Result<(LeaseRecord, i64)> {
        if lease_id.is_empty() || lease_id.len() > 128 {
            return Err(E::InvalidArgument("a lease id is required".into()));
        }
        let (lease, revision) = self
            .read::<LeaseRecord>(&lease_key(lease_id))
            .await?
            .ok_or_else(|| {
                E::NotFound(format!(
                    "lease {lease_id} does not exist (never issued by this coordinator)"
                ))
            })?;
        if lease.station_id != station.station_id {
            return Err(E::PermissionDenied(format!(
                "lease {lease_id} was issued to another station; a station may only use its own leases"
            )));
        }
        Ok((lease, revision))
    }

    /// Registers one install made under a lease, or records a failed target
    /// ([`v1::InstallOutcome::Failed`]: see [`Coordinator::report_failure`]).
    pub async fn report_install(
        &self,
        station: &StationRecord,
        req: &v1::ReportInstallRequest,
    ) -> Result<v1::ReportInstallResponse> {
        let test = req.test_result.clone().unwrap_or_default();
        if test.log.len() > 16 * 1024 {
            return Err(E::InvalidArgument("a test log is at most 16 KiB".into()));
        }
        let outcome = match (
            v1::TestOutcome::try_from(test.outcome),
            v1::InstallOutcome::try_from(req.outcome),
        ) {
            (Ok(_), Ok(outcome)) => outcome,
            _ => {
                return Err(E::InvalidArgument(
                    "unknown test or install outcome (INSTALL_OUTCOME_REJECTED is retired: report a board that failed its test as FAILED)".into(),
                ))
            }
        };
        if outcome == v1::InstallOutcome::Failed {
            return self.report_failure(station, req, &test).await;
        }
        if test.outcome == v1::TestOutcome::Fail as i32 {
            return Err(E::InvalidArgument(
                "a board that failed its factory test is not registered: report it as INSTALL_OUTCOME_FAILED".into(),
            ));
        }
        if !req.failure_reason.is_empty() {
            return Err(E::InvalidArgument(
                "failure_reason is only for INSTALL_OUTCOME_FAILED".into(),
            ));
        }
        let serial = parse_serial(&req.serial)?;
        let serial_hex = hex::encode(serial);
        for attempt in 0..MAX_ATTEMPTS {
            let (mut lease, lease_rev) = self.own_lease(station, &req.lease_id).await?;
            let dev_key = device_key(lease.product_id, &serial_hex);
            // A re-sent report whose first answer was lost (same station, lease and install
            // time): answered as the first time, whatever became of the lease since. The
            // station reads the record, not a message, to know it was its own install.
            let existing = self.read::<DeviceRecord>(&dev_key).await?.map(|(d, _)| d);
            if let Some(existing) = &existing {
                if existing.station_id == station.station_id
                    && existing.lease_id == lease.lease_id
                    && existing.installed_at_ms == req.installed_at_ms
                {
                    return Ok(v1::ReportInstallResponse {
                        device: Some(device_to_proto(existing)),
                        remaining_in_lease: if lease.state == LeaseState::Active {
                            lease.count - lease.used
                        } else {
                            0
                        },
                        failure: None,
                    });
                }
            }
            if lease.state != LeaseState::Active {
                return Err(E::FailedPrecondition(format!(
                    "lease {} has ended ({:?}); its unused slots went back to the order",
                    lease.lease_id, lease.state
                )));
            }
            let now = now_ms();
            if req.installed_at_ms > lease.not_after_ms {
                return Err(E::FailedPrecondition(format!(
                    "the install time {} is after lease {}'s not-after {}: the lease had expired",
                    req.installed_at_ms, lease.lease_id, lease.not_after_ms
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
            if req.installed_at_ms < lease.issued_at_ms - skew || req.installed_at_ms > now + skew {
                return Err(E::InvalidArgument(format!(
                    "the install time {} is outside lease {}'s lifetime",
                    req.installed_at_ms, lease.lease_id
                )));
            }
            if lease.used >= lease.count {
                return Err(E::Exhausted(format!(
                    "lease {} covers {} installs and all {} are already reported; acquire a new lease",
                    lease.lease_id, lease.count, lease.used
                )));
            }
            if let Some(existing) = existing {
                return Err(duplicate(&existing));
            }
            let sealed_secret = decode_hex(&lease.sealed_secret, "sealed lease secret")?;
            let secret = self
                .kek
                .open_key(&lease_secret_aad(&lease.lease_id), &sealed_secret)?;
            let device_secret = derive_device_key(&secret, lease.product_id, &serial);
            let sealed_device_key = self.kek.seal(
                &device_key_aad(lease.product_id, &serial),
                &device_secret[..],
            );
            let device = DeviceRecord {
                serial: serial_hex.clone(),
                product_id: lease.product_id,
                order_id: lease.order_id.clone(),
                lease_id: lease.lease_id.clone(),
                station_id: station.station_id.clone(),
                installed_at_ms: req.installed_at_ms,
                registered_at_ms: now,
                bootloader_version: req.bootloader_version,
                test_outcome: test.outcome,
                test_log: test.log.clone(),
                outcome: req.outcome,
                sealed_device_key: hex::encode(sealed_device_key),
            };
            lease.used += 1;
            let committed = self
                .store
                .commit(
                    vec![
                        Guard::Revision(lease_key(&lease.lease_id), lease_rev),
                        Guard::Absent(dev_key.clone()),
                    ],
                    vec![
                        Write::Put(lease_key(&lease.lease_id), encode(&lease)),
                        Write::Put(dev_key.clone(), encode(&device)),
                    ],
                )
                .instrument(tracing::info_span!("registry_write", serial = %serial_hex, lease = %lease.lease_id, attempt))
                .await?;
            if committed {
                tracing::info!(
                    serial = %serial_hex, product = lease.product_id, lease = %lease.lease_id,
                    order = %lease.order_id, station = %station.station_id, "device registered"
                );
                return Ok(v1::ReportInstallResponse {
                    device: Some(device_to_proto(&device)),
                    remaining_in_lease: lease.count - lease.used,
                    failure: None,
                });
            }
            backoff(attempt).await;
        }
        Err(contended("the lease"))
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
        test: &v1::TestResult,
    ) -> Result<v1::ReportInstallResponse> {
        let serial_hex = if req.serial.is_empty() {
            String::new()
        } else {
            hex::encode(parse_serial(&req.serial)?)
        };
        let reason = req.failure_reason.trim();
        if reason.is_empty() || reason.len() > 1024 {
            return Err(E::InvalidArgument(
                "a FAILED report carries a failure_reason of 1 to 1024 bytes".into(),
            ));
        }
        let (lease, _) = self.own_lease(station, &req.lease_id).await?;
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
        let key = failure_key(
            &lease.order_id,
            &lease.lease_id,
            req.installed_at_ms,
            &serial_hex,
        );
        let record = FailureRecord {
            order_id: lease.order_id.clone(),
            lease_id: lease.lease_id.clone(),
            station_id: station.station_id.clone(),
            product_id: lease.product_id,
            serial: serial_hex.clone(),
            reason: reason.to_owned(),
            failed_at_ms: req.installed_at_ms,
            recorded_at_ms: now,
            test_outcome: test.outcome,
            test_log: test.log.clone(),
        };
        let committed = self
            .store
            .commit(
                vec![Guard::Absent(key.clone())],
                vec![Write::Put(key.clone(), encode(&record))],
            )
            .await?;
        let record = if committed {
            tracing::info!(
                serial = %serial_hex, lease = %lease.lease_id, order = %lease.order_id,
                station = %station.station_id, "failed target recorded (not registered)"
            );
            record
        } else {
            // A re-sent report: the first one got through.
            self.read::<FailureRecord>(&key)
                .await?
                .map(|(r, _)| r)
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
            failure: Some(failure_to_proto(&record)),
        })
    }

    /// Failures recorded under an order, oldest lease first.
    pub async fn list_failures(&self, order_id: &str) -> Result<Vec<v1::InstallFailure>> {
        Ok(self
            .read_all::<FailureRecord>(&failure_prefix(order_id))
            .await?
            .iter()
            .map(|(f, _)| failure_to_proto(f))
            .collect())
    }

    /// Ends a lease at the station's request and gives its unused slots back.
    pub async fn return_lease(
        &self,
        station: &StationRecord,
        lease_id: &str,
    ) -> Result<v1::ReturnLeaseResponse> {
        for attempt in 0..MAX_ATTEMPTS {
            let (lease, lease_rev) = self.own_lease(station, lease_id).await?;
            match self
                .end_lease(lease, lease_rev, LeaseState::Returned)
                .await?
            {
                Some(response) => return Ok(response),
                None => backoff(attempt).await,
            }
        }
        Err(contended("the lease"))
    }

    /// One attempt to end `lease`; `None` when a guard failed (re-read and retry).
    async fn end_lease(
        &self,
        mut lease: LeaseRecord,
        lease_rev: i64,
        state: LeaseState,
    ) -> Result<Option<v1::ReturnLeaseResponse>> {
        if lease.state != LeaseState::Active {
            // Already ended: the slots were given back then, never twice.
            return Ok(Some(v1::ReturnLeaseResponse {
                released: 0,
                lease: Some(lease_to_proto(&lease)),
            }));
        }
        let quota_k = quota_key(&lease.order_id);
        let (quota, quota_rev) = self
            .read::<QuotaRecord>(&quota_k)
            .await?
            .ok_or_else(|| E::Internal(format!("quota of order {} is missing", lease.order_id)))?;
        let released = lease.count - lease.used;
        lease.state = state;
        lease.released = released;
        let committed = self
            .store
            .commit(
                vec![
                    Guard::Revision(lease_key(&lease.lease_id), lease_rev),
                    Guard::Revision(quota_k.clone(), quota_rev),
                ],
                vec![
                    Write::Put(lease_key(&lease.lease_id), encode(&lease)),
                    Write::Put(
                        quota_k,
                        encode(&QuotaRecord {
                            remaining: quota.remaining + u64::from(released),
                        }),
                    ),
                ],
            )
            .await?;
        if !committed {
            return Ok(None);
        }
        tracing::info!(lease = %lease.lease_id, order = %lease.order_id, released, ?state, "lease ended");
        crate::metrics::quota_remaining(&lease.order_id, quota.remaining + u64::from(released));
        Ok(Some(v1::ReturnLeaseResponse {
            released,
            lease: Some(lease_to_proto(&lease)),
        }))
    }

    /// Ends every active lease whose report grace has passed. Safe to run on any number of
    /// replicas at once (each end is guarded); normally only the leader runs it.
    pub async fn expire_leases(&self) -> Result<u32> {
        let now = now_ms();
        let grace = self.config.report_grace.as_millis() as i64;
        let mut ended = 0;
        for (lease, _) in self.read_all::<LeaseRecord>("leases/").await? {
            if lease.state != LeaseState::Active || now <= lease.not_after_ms + grace {
                continue;
            }
            for attempt in 0..MAX_ATTEMPTS {
                let Some((current, rev)) = self
                    .read::<LeaseRecord>(&lease_key(&lease.lease_id))
                    .await?
                else {
                    break;
                };
                let was_active = current.state == LeaseState::Active;
                if self
                    .end_lease(current, rev, LeaseState::Expired)
                    .await?
                    .is_some()
                {
                    ended += u32::from(was_active);
                    break;
                }
                backoff(attempt).await;
            }
        }
        Ok(ended)
    }

    /// Deletes replay-cache entries older than twice the auth window.
    pub async fn sweep_nonces(&self) -> Result<usize> {
        let cutoff = now_ms() - 2 * self.config.auth_window.as_millis() as i64;
        let stale: Vec<Write> = self
            .store
            .list("nonces/")
            .await?
            .into_iter()
            .filter(|(_, v)| {
                std::str::from_utf8(&v.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .is_none_or(|ts| ts < cutoff)
            })
            .map(|(k, _)| Write::Delete(k))
            .collect();
        let n = stale.len();
        for chunk in stale.chunks(100) {
            self.store.commit(vec![], chunk.to_vec()).await?;
        }
        Ok(n)
    }

    /// Takes or renews leadership (a record with an expiry, written by compare-and-swap).
    /// Correctness never depends on it: it only keeps replicas from all sweeping at once.
    pub async fn try_lead(&self, ttl: Duration) -> Result<bool> {
        let now = now_ms();
        let me = LeaderRecord {
            node_id: self.config.node_id.clone(),
            expires_at_ms: now + ttl.as_millis() as i64,
        };
        let guard = match self.read::<LeaderRecord>(LEADER_KEY).await? {
            None => Guard::Absent(LEADER_KEY.into()),
            Some((current, rev))
                if current.node_id == me.node_id || current.expires_at_ms < now =>
            {
                Guard::Revision(LEADER_KEY.into(), rev)
            }
            Some(_) => return Ok(false),
        };
        Ok(self
            .store
            .commit(
                vec![guard],
                vec![Write::Put(LEADER_KEY.into(), encode(&me))],
            )
            .await?)
    }

    /// The leader's loop: expire leases and sweep nonces every `sweep_interval`. Runs until the
    /// task is dropped.
    pub async fn run_housekeeping(self: std::sync::Arc<Self>) {
        let interval = self.config.sweep_interval;
        loop {
            tokio::time::sleep(interval).await;
            match self.try_lead(interval * 3).await {
                Ok(true) => {
                    match self.expire_leases().await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(expired = n, "expired leases returned to their orders")
                        }
                        Err(e) => tracing::warn!(error = %e, "lease expiry sweep failed"),
                    }
                    if let Err(e) = self.sweep_nonces().await {
                        tracing::warn!(error = %e, "nonce sweep failed");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leadership check failed"),
            }
        }
    }

    pub async fn list_leases(
        &self,
        order_id: &str,
        station_id: &str,
    ) -> Result<Vec<v1::LeaseInfo>> {
        Ok(self
            .read_all::<LeaseRecord>("leases/")
            .await?
            .iter()
            .filter(|(l, _)| order_id.is_empty() || l.order_id == order_id)
            .filter(|(l, _)| station_id.is_empty() || l.station_id == station_id)
            .map(|(l, _)| lease_to_proto(l))
            .collect())
    }
}

fn duplicate(existing: &DeviceRecord) -> E {
    E::AlreadyExists(format!(
        "serial {} is already registered for product {} (order {}, station {}, at {}); a serial is registered once and never overwritten",
        existing.serial, existing.product_id, existing.order_id, existing.station_id, existing.registered_at_ms
    ))
}
