//! `IssueDeviceCertificate`: the one place a device comes into being. After the loader's
//! handshake reveals a chip's unique id, the station asks for that chip's certificate; one
//! store transaction, guarded by the lease's revision and the serial's absence, consumes one
//! slot of the calling station's lease and writes the device record (CERTIFIED: the device key
//! sealed under the KEK, the certificate, the challenge its install report must answer).
//!
//! The device key is drawn here and leaves only sealed to the loader's ephemeral X25519 key
//! (`flashgate_protocol::device_key_transport`): the station never holds it.
//!
//! Idempotent per chip: a chip that already has a certificate from the same station gets the
//! same certificate back, its key re-sealed to the new loader key, and no slot is consumed (a
//! retried install, or a board back from rework). A chip certified by another station is
//! refused. A used-up, ended or expired lease, or another station's, is refused with nothing
//! written.
//!
//! Bound on a fully compromised station: every device that boots needs a certificate naming
//! its own unique id (the bootloader checks it at every reset), every certificate is one slot,
//! so the devices it can make are at most the slots of its leases, and Σ over stations ≤ the
//! order's count (`tests/provisioning.rs` in this crate: `a_station_gets_exactly_n_certificates`).
//!
//! Audited: the issuance and re-issue entries are appended to the lease's audit chain in the
//! transaction that writes them, chained in the lease record it already guards.

use std::sync::Arc;

use ed25519_dalek::SigningKey;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::certificate::{
    authority_key_id, key_commitment, order_ref, CertificateBody,
};
use flashgate_protocol::certificate::{DeviceCertificate, CERTIFICATE_LEN};
use flashgate_protocol::codec::Codec;
use flashgate_protocol::device_key_transport;
use flashgate_protocol::key_schedule::refuse_low_order;
use rand_core::{OsRng, RngCore};
use tracing::Instrument;
use zeroize::Zeroizing;

use super::leases::{LeaseRecord, LeaseState, Leases};
use super::registry::{DeviceRecord, DeviceState};
use super::signed_call::SignedCall;
use super::station_auth::StationAuth;
use crate::audit::{Actor, AuditLog, ChainScope, Entry};
use crate::catalogue::Products;
use crate::error::{CoordinatorError as E, Result};
use crate::ids::Serial;
use crate::keys::{device_key_aad, KekRing};
use crate::repository::{Attempt, CasRetry, Db, Record, Stored, Transacted, Txn};

/// Issues device certificates under leases.
#[derive(Clone)]
pub struct Certificates {
    db: Db,
    leases: Leases,
    products: Products,
    kek: Arc<KekRing>,
    audit: AuditLog,
    auth: StationAuth,
}

/// One issuance request, checked.
struct Ask<'a> {
    lease_id: &'a str,
    serial: Serial,
    loader_public: [u8; 32],
}

impl Ask<'_> {
    /// `device_key` sealed to this request's loader, bound to its chip and `certificate`.
    fn seal(
        &self,
        certificate: &DeviceCertificate,
        device_key: &[u8; 32],
    ) -> Result<[u8; device_key_transport::SEALED_DEVICE_KEY_LEN]> {
        device_key_transport::seal(
            &self.loader_public,
            &self.serial.0,
            certificate,
            device_key,
            &mut OsRng,
        )
        .map_err(|code| E::InvalidArgument(format!("cannot seal to the loader key: {code:?}")))
    }
}

impl Certificates {
    /// Certificates over `db`, consuming slots of `leases`, signed with the `products`'
    /// authority keys; device keys sealed under `kek`, issuance audited in `audit` (the
    /// lease's chain); callers authorised by `auth`.
    pub fn new(
        db: Db,
        leases: Leases,
        products: Products,
        kek: Arc<KekRing>,
        audit: AuditLog,
        auth: StationAuth,
    ) -> Self {
        Self {
            db,
            leases,
            products,
            kek,
            audit,
            auth,
        }
    }

    /// The certificate of one chip, with its device key sealed to the loader. In the steady
    /// state one store round trip: the lease comes from this replica's cache and the serial's
    /// absence, the lease's revision, the station and the nonce are all guards of the one
    /// transaction that issues ([`super::signed_call`]); a refusal reads them back in the same
    /// round trip and the issue is decided again from those.
    pub async fn issue(
        &self,
        mut call: SignedCall,
        req: &v1::IssueDeviceCertificateRequest,
    ) -> Result<v1::IssueDeviceCertificateResponse> {
        let loader_public: [u8; 32] =
            req.loader_public_key.as_slice().try_into().map_err(|_| {
                E::InvalidArgument(format!(
                    "the loader public key is a 32-byte X25519 key; got {} bytes",
                    req.loader_public_key.len()
                ))
            })?;
        refuse_low_order(&loader_public).map_err(|_| {
            E::InvalidArgument(
                "the loader public key is a low-order X25519 point: a key sealed to it would be public".into(),
            )
        })?;
        let ask = Ask {
            lease_id: &req.lease_id,
            serial: Serial::parse(&req.serial)?,
            loader_public,
        };
        let retry = CasRetry::new("the lease");
        for attempt in 0..CasRetry::DEFAULT_ATTEMPTS {
            match self.try_issue(&ask, &mut call).await? {
                Attempt::Done(issued) => return Ok(issued),
                Attempt::Conflict if attempt > 0 => {
                    tokio::time::sleep(CasRetry::pause(attempt)).await;
                }
                Attempt::Conflict => {}
            }
        }
        Err(retry.contended())
    }

    async fn try_issue(
        &self,
        ask: &Ask<'_>,
        call: &mut SignedCall,
    ) -> Result<Attempt<v1::IssueDeviceCertificateResponse>> {
        let mut lease = self.leases.own_cached(call.record(), ask.lease_id).await?;
        let key = (lease.record.product_id, ask.serial);
        if check_open(&lease.record).is_err() {
            // Off the hot path, decided from the store: the chip may be one already certified
            // (re-issued under any lease state), else the refusal stands.
            lease = self.leases.own(call.record(), ask.lease_id).await?;
            self.leases.remember(lease.clone());
            if let Some(existing) = self.db.get::<DeviceRecord>(&key).await? {
                return self.reissue(ask, call, &lease, &existing.record).await;
            }
            check_open(&lease.record)?;
        }
        let l = &lease.record;
        let product = self.products.cached(l.product_id).await?;
        let authority = self.authority_key(l).await?;
        let mut device_key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut device_key[..]);
        let now = now_ms();
        let certificate = CertificateBody {
            product_id: l.product_id.0,
            unique_id: ask.serial.0,
            key_commitment: key_commitment(&device_key),
            order_ref: order_ref(l.order_id.as_str()),
            sequence: l.first_sequence.saturating_add(l.used),
            issued_at_ms: u64::try_from(now).unwrap_or_default(),
        }
        .sign(&authority);
        let sealed = ask.seal(&certificate, &device_key)?;
        let mut challenge = [0u8; 32];
        OsRng.fill_bytes(&mut challenge);
        let station_id = call.record().station_id.clone();
        let device = DeviceRecord {
            serial: ask.serial,
            product_id: l.product_id,
            order_id: l.order_id.clone(),
            lease_id: l.lease_id.clone(),
            station_id: station_id.clone(),
            installed_at_ms: 0,
            registered_at_ms: now,
            bootloader_version: 0,
            os_version: 0,
            test_outcome: v1::TestOutcome::Unspecified,
            test_log: String::new(),
            outcome: v1::InstallOutcome::Provisioned,
            sealed_device_key: self.kek.seal(
                &device_key_aad(l.product_id.0, &ask.serial.0),
                &device_key[..],
            ),
            state: DeviceState::Certified,
            certificate: certificate.to_bytes().to_vec(),
            hello_challenge: challenge.to_vec(),
            clone_evidence: Vec::new(),
            clone_signals: Vec::new(),
        };
        let mut used = l.clone();
        used.used += 1;
        let entry = Entry::new(
            &Actor::station(&station_id),
            "certificate issued",
            ask.serial,
        )
        .detail(format!(
            "product {}, sequence {}, slot {} of {}",
            l.product_id, certificate.body.sequence, used.used, used.count
        ));
        let txn = self
            .audit
            .append(
                call.guard(Txn::new().unchanged(&lease).absent::<DeviceRecord>(&key)),
                &ChainScope::lease(&l.lease_id),
                &mut used.audit,
                entry,
            )
            .await?;
        let device_store_key = DeviceRecord::key_of(&key);
        let [station_key, nonce_key] = call.read_on_refusal();
        let reads = [
            lease.key.clone(),
            device_store_key.clone(),
            station_key,
            nonce_key,
        ];
        let outcome = self
            .db
            .transact(txn.replace(&lease, &used).put(&key, &device), &reads)
            .instrument(
                tracing::info_span!("certificate_write", serial = %ask.serial, lease = %l.lease_id),
            )
            .await?;
        let refusal = match outcome {
            Transacted::Committed { revision } => {
                self.leases
                    .remember(Stored::written(lease.key.clone(), used.clone(), revision));
                tracing::info!(
                    serial = %ask.serial, product = %l.product_id, lease = %l.lease_id,
                    sequence = certificate.body.sequence, station = %station_id,
                    "device certificate issued"
                );
                return Ok(Attempt::Done(v1::IssueDeviceCertificateResponse {
                    certificate: certificate.to_bytes().to_vec(),
                    sealed_device_key: sealed.to_vec(),
                    vendor_public_key: product.vendor_public_key.to_vec(),
                    authority_public_key: authority.verifying_key().to_bytes().to_vec(),
                    hello_challenge: challenge.to_vec(),
                    remaining_in_lease: used.count - used.used,
                    reissued: false,
                }));
            }
            Transacted::Refused(refusal) => refusal,
        };
        let settled = call.settle(&refusal);
        self.auth.remember(call);
        settled?;
        let Some(fresh) = refusal.take::<LeaseRecord>(&lease.key)? else {
            self.leases.forget(&l.lease_id);
            return Ok(Attempt::Conflict);
        };
        self.leases.remember(fresh.clone());
        if let Some(existing) = refusal.take::<DeviceRecord>(&device_store_key)? {
            return self.reissue(ask, call, &fresh, &existing.record).await;
        }
        Ok(Attempt::Conflict)
    }

    /// The same chip again (a retried install, a board back from rework): the same
    /// certificate, the key re-sealed to this loader run, no slot consumed.
    async fn reissue(
        &self,
        ask: &Ask<'_>,
        call: &SignedCall,
        stored: &Stored<LeaseRecord>,
        existing: &DeviceRecord,
    ) -> Result<Attempt<v1::IssueDeviceCertificateResponse>> {
        let lease = &stored.record;
        let station = call.record();
        if existing.station_id != station.station_id {
            return Err(E::AlreadyExists(format!(
                "chip {} of product {} was certified by another station ({}); a chip is certified once",
                ask.serial, existing.product_id, existing.station_id
            )));
        }
        let bytes: [u8; CERTIFICATE_LEN] =
            existing.certificate.as_slice().try_into().map_err(|_| {
                E::FailedPrecondition(format!(
                    "device {} was registered before certificates existed; it cannot be re-keyed",
                    ask.serial
                ))
            })?;
        let certificate = DeviceCertificate::read_bytes(&bytes)
            .map_err(|_| E::Internal(format!("stored certificate of {} is corrupt", ask.serial)))?;
        let device_key = self.kek.open_key(
            &device_key_aad(existing.product_id.0, &ask.serial.0),
            &existing.sealed_device_key,
        )?;
        let sealed = ask.seal(&certificate, &device_key)?;
        let product = self.products.get(existing.product_id).await?;
        let authority_public_key = self
            .products
            .authority()
            .all(existing.product_id)
            .await?
            .into_iter()
            .find(|k| authority_key_id(&k.public_key) == certificate.authority_key_id)
            .map(|k| k.public_key.to_vec())
            .unwrap_or_default();
        let mut audited = lease.clone();
        let entry = Entry::new(
            &Actor::station(&station.station_id),
            "certificate re-issued",
            ask.serial,
        )
        .detail(format!(
            "sequence {}, key re-sealed to a new loader run, no slot consumed",
            certificate.body.sequence
        ));
        let txn = self
            .audit
            .append(
                call.guard(Txn::new().unchanged(stored)),
                &ChainScope::lease(&lease.lease_id),
                &mut audited.audit,
                entry,
            )
            .await?;
        if !self.db.commit(txn.replace(stored, &audited)).await? {
            // Decided again from the store: the lease, the station or the nonce changed.
            self.leases.forget(&lease.lease_id);
            return Ok(Attempt::Conflict);
        }
        self.leases.forget(&lease.lease_id);
        tracing::info!(
            serial = %ask.serial, product = %existing.product_id, lease = %lease.lease_id,
            "device certificate re-issued (no slot consumed)"
        );
        let remaining_in_lease = match lease.state {
            LeaseState::Active => lease.count - lease.used,
            _ => 0,
        };
        Ok(Attempt::Done(v1::IssueDeviceCertificateResponse {
            certificate: bytes.to_vec(),
            sealed_device_key: sealed.to_vec(),
            vendor_public_key: product.vendor_public_key.to_vec(),
            authority_public_key,
            hello_challenge: existing.hello_challenge.clone(),
            remaining_in_lease,
            reissued: true,
        }))
    }

    /// The authority key the lease's certificates are signed with, opened once per replica.
    async fn authority_key(&self, lease: &LeaseRecord) -> Result<Arc<SigningKey>> {
        let authority = self.products.authority();
        if let Some(key) = authority.opened_cached(lease.product_id, &lease.authority_public_key) {
            return Ok(key);
        }
        let keys = authority.all(lease.product_id).await?;
        let record = keys
            .iter()
            .find(|k| k.public_key == lease.authority_public_key)
            .or(keys.last())
            .ok_or_else(|| {
                E::FailedPrecondition(format!("product {} has no authority key", lease.product_id))
            })?;
        self.products.opened_authority(record)
    }
}

/// A certificate consumes a slot only of an active, unexpired lease with one left.
fn check_open(lease: &LeaseRecord) -> Result<()> {
    if lease.state != LeaseState::Active {
        return Err(E::FailedPrecondition(format!(
            "lease {} has ended ({:?}); acquire a new lease",
            lease.lease_id, lease.state
        )));
    }
    if now_ms() > lease.not_after_ms {
        return Err(E::FailedPrecondition(format!(
            "lease {} expired at {}; acquire a new lease",
            lease.lease_id, lease.not_after_ms
        )));
    }
    if lease.used >= lease.count {
        return Err(E::Exhausted(format!(
            "lease {} covers {} chips and all are certified; acquire a new lease",
            lease.lease_id, lease.count
        )));
    }
    Ok(())
}
