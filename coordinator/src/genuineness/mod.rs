//! Genuineness in the field: `flashgate device verify` asks for a fresh challenge
//! ([`Genuineness::start`]), relays it to a board in a `hello` and hands the answer back
//! ([`Genuineness::verify`]), which judges it against the registry ([`verdict`]): genuine,
//! unregistered, or clone suspected.
//!
//! A clone suspected is written onto the device's record as clone evidence, in the same
//! transaction that consumes the challenge and appends the verdict to the audit log (global
//! chain): the record then shows, to `flashgate devices show` and the console, that two
//! devices answer for one identity, even after the copy is gone. A device's own traffic
//! (data records, update receipts) adds evidence through [`evidence`].
//!
//! | key | value |
//! | --- | --- |
//! | `verifications/{verification_id}` | [`challenges::ChallengeRecord`]: an outstanding challenge, deleted by its answer |

pub mod challenges;
pub mod evidence;
pub mod verdict;

use std::sync::Arc;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::hello;
use rand_core::{OsRng, RngCore};

use crate::audit::{Actor, AuditLog, Entry};
use crate::catalogue::authority::AuthorityKeys;
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{ProductId, Serial, VerificationId};
use crate::keys::{device_key_aad, KekRing};
use crate::provisioning::DeviceRecord;
use crate::repository::{Attempt, CasRetry, Db, Stored, Txn};

use challenges::{ChallengeRecord, CHALLENGE_LIFETIME_MS};
use verdict::{judge, Registered, Verdict};

/// Field verification over one store.
#[derive(Clone)]
pub struct Genuineness {
    db: Db,
    kek: Arc<KekRing>,
    authority: AuthorityKeys,
    audit: AuditLog,
}

impl Genuineness {
    /// Verification over `db`: device keys are opened with `kek`, certificates checked under
    /// `authority`, verdicts audited in `audit`.
    pub fn new(db: Db, kek: Arc<KekRing>, authority: AuthorityKeys, audit: AuditLog) -> Self {
        Self {
            db,
            kek,
            authority,
            audit,
        }
    }

    /// A fresh challenge for one board's hello, answerable once within
    /// [`CHALLENGE_LIFETIME_MS`].
    pub async fn start(&self, by: &Actor) -> Result<v1::DeviceVerificationChallenge> {
        let mut challenge = [0u8; hello::CHALLENGE_LEN];
        OsRng.fill_bytes(&mut challenge);
        let record = ChallengeRecord {
            verification_id: VerificationId::random(),
            challenge,
            requested_by: by.as_str().to_owned(),
            expires_at_ms: now_ms() + CHALLENGE_LIFETIME_MS,
        };
        let key = &record.verification_id;
        let txn = Txn::new().absent::<ChallengeRecord>(key).put(key, &record);
        if !self.db.commit(txn).await? {
            return Err(E::Unavailable(
                "a fresh verification id collided; ask again".into(),
            ));
        }
        Ok(v1::DeviceVerificationChallenge {
            verification_id: record.verification_id.to_string(),
            challenge: challenge.to_vec(),
            expires_at_ms: record.expires_at_ms,
        })
    }

    /// The verdict on a board's answer to the challenge `req` names.
    pub async fn verify(
        &self,
        by: &Actor,
        req: v1::VerifyDeviceRequest,
    ) -> Result<v1::DeviceVerdict> {
        let id = VerificationId::parse(&req.verification_id)?;
        let claimed = hello::peek_identity(&req.hello_response).map_err(|code| {
            E::InvalidArgument(format!("the hello response does not decode: {code}"))
        })?;
        let verdict = CasRetry::new("the verified device")
            .run(|| self.try_verify(by, &id, &req.hello_response, &claimed))
            .await?;
        tracing::info!(
            serial = %Serial(claimed.serial),
            chip_uid = %Serial(claimed.chip_uid),
            verdict = ?verdict.verdict(),
            "device verified"
        );
        Ok(verdict)
    }

    async fn try_verify(
        &self,
        by: &Actor,
        id: &VerificationId,
        response: &[u8],
        claimed: &hello::HelloInfo,
    ) -> Result<Attempt<v1::DeviceVerdict>> {
        let outstanding = self.outstanding(id).await?;
        let product_id = ProductId(claimed.product_id);
        let serial = Serial(claimed.serial);
        let stored = self.db.get::<DeviceRecord>(&(product_id, serial)).await?;
        let verdict = match &stored {
            None => Verdict::Unregistered,
            Some(device) => {
                let device_key = self.kek.open_key(
                    &device_key_aad(product_id.0, &serial.0),
                    &device.record.sealed_device_key,
                )?;
                let authority_keys: Vec<[u8; 32]> = self
                    .authority
                    .all(product_id)
                    .await?
                    .iter()
                    .map(|k| k.public_key)
                    .collect();
                let registered = Registered {
                    device_key: &device_key,
                    certificate: &device.record.certificate,
                    authority_keys: &authority_keys,
                };
                judge(
                    &outstanding.record.challenge,
                    response,
                    claimed,
                    Some(&registered),
                )
            }
        };
        let mut txn = Txn::new().unchanged(&outstanding).delete(&outstanding);
        let mut device = stored.as_ref().map(|s| s.record.clone());
        if let (Verdict::CloneSuspected(reasons), Some(stored), Some(device)) =
            (&verdict, &stored, device.as_mut())
        {
            device.add_clone_evidence(format!(
                "{}: field verify by {} (chip {}): {}",
                utc(now_ms()),
                by.as_str(),
                Serial(claimed.chip_uid),
                reasons.join("; ")
            ));
            txn = txn.unchanged(stored).replace(stored, &*device);
        }
        let entry = Entry::new(by, "device verified", format!("{product_id}/{serial}")).detail(
            match &verdict {
                Verdict::Genuine => "genuine".to_owned(),
                Verdict::Unregistered => "unregistered".to_owned(),
                Verdict::CloneSuspected(reasons) => {
                    format!("clone suspected: {}", reasons.join("; "))
                }
            },
        );
        let txn = self.audit.append_global(txn, entry).await?;
        let committed = self.db.commit(txn).await?;
        Ok(Attempt::committed(
            committed,
            to_proto(&verdict, claimed, device.as_ref()),
        ))
    }

    async fn outstanding(&self, id: &VerificationId) -> Result<Stored<ChallengeRecord>> {
        let stored = self.db.get::<ChallengeRecord>(id).await?.ok_or_else(|| {
            E::NotFound(format!(
                "no outstanding challenge {id}: it was answered already, or never issued; verify again"
            ))
        })?;
        if now_ms() > stored.record.expires_at_ms {
            return Err(E::FailedPrecondition(format!(
                "challenge {id} expired (answers are taken for {} s); verify again",
                CHALLENGE_LIFETIME_MS / 1000
            )));
        }
        Ok(stored)
    }
}

fn to_proto(
    verdict: &Verdict,
    claimed: &hello::HelloInfo,
    device: Option<&DeviceRecord>,
) -> v1::DeviceVerdict {
    let (genuineness, reasons) = match verdict {
        Verdict::Genuine => (v1::Genuineness::Genuine, Vec::new()),
        Verdict::Unregistered => (
            v1::Genuineness::Unregistered,
            vec![format!(
                "serial {} is not registered for product {}",
                Serial(claimed.serial),
                claimed.product_id
            )],
        ),
        Verdict::CloneSuspected(reasons) => (v1::Genuineness::CloneSuspected, reasons.clone()),
    };
    v1::DeviceVerdict {
        verdict: genuineness as i32,
        reasons,
        serial: claimed.serial.to_vec(),
        chip_uid: claimed.chip_uid.to_vec(),
        product_id: claimed.product_id,
        device: device.map(DeviceRecord::to_proto),
    }
}

/// `2026-12-01 15:04:05 UTC` (the evidence is read by people).
pub(crate) fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000).map_or_else(
        |_| format!("unix {ms} ms"),
        |t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        },
    )
}
