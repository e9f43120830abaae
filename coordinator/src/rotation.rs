//! KEK rotation: re-seal every stored secret (authority keys, device keys, update content keys,
//! release images, the audit log's MAC key)
//! under the current KEK. Run with the new KEK as current and the old one as previous;
//! afterwards the old KEK can be retired. Each record is rewritten by compare-and-swap (retried
//! if it changed meanwhile), so this is safe while coordinators serve, and can be re-run after
//! an interruption.

use crate::audit::key::{SealedAuditKey, AAD as AUDIT_KEY_AAD};
use crate::catalogue::authority::{authority_key_aad, AuthorityKeyRecord};
use crate::catalogue::releases::ReleaseImage;
use crate::error::Result;
use crate::keys::{device_key_aad, release_image_aad, KekRing};
use crate::provisioning::DeviceRecord;
use crate::repository::{Attempt, CasRetry, Db, Record, Scope, Stored, Txn};
use crate::update::records::{content_key_aad, CampaignRecord};

/// Counts of records re-sealed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Authority keys re-sealed.
    pub authority_keys: usize,
    /// Device records whose key was re-sealed.
    pub devices: usize,
    /// Update campaigns whose content key was re-sealed.
    pub campaigns: usize,
    /// Release images re-sealed.
    pub images: usize,
    /// The audit log's MAC key (0 or 1).
    pub audit_keys: usize,
}

/// A record kind holding one secret sealed under the KEK.
trait Sealed: Record + Clone {
    fn sealed(&self) -> &[u8];
    /// The AAD it is sealed with; `key` is the record's full store key.
    fn aad(&self, key: &str) -> Vec<u8>;
    fn set_sealed(&mut self, sealed: Vec<u8>);
}

impl Sealed for ReleaseImage {
    fn sealed(&self) -> &[u8] {
        &self.0
    }
    fn aad(&self, key: &str) -> Vec<u8> {
        let mut digest = [0u8; 32];
        // A key that does not name a digest gets an AAD nothing opens with: reported Tampered.
        let _ = ::hex::decode_to_slice(key.trim_start_matches(Self::PREFIX), &mut digest);
        release_image_aad(&digest)
    }
    fn set_sealed(&mut self, sealed: Vec<u8>) {
        self.0 = sealed;
    }
}

impl Sealed for SealedAuditKey {
    fn sealed(&self) -> &[u8] {
        &self.sealed
    }
    fn aad(&self, _key: &str) -> Vec<u8> {
        AUDIT_KEY_AAD.to_vec()
    }
    fn set_sealed(&mut self, sealed: Vec<u8>) {
        self.sealed = sealed;
    }
}

impl Sealed for AuthorityKeyRecord {
    fn sealed(&self) -> &[u8] {
        &self.sealed_private_key
    }
    fn aad(&self, _key: &str) -> Vec<u8> {
        authority_key_aad(self.product_id, &self.public_key)
    }
    fn set_sealed(&mut self, sealed: Vec<u8>) {
        self.sealed_private_key = sealed;
    }
}

impl Sealed for DeviceRecord {
    fn sealed(&self) -> &[u8] {
        &self.sealed_device_key
    }
    fn aad(&self, _key: &str) -> Vec<u8> {
        device_key_aad(self.product_id.0, &self.serial.0)
    }
    fn set_sealed(&mut self, sealed: Vec<u8>) {
        self.sealed_device_key = sealed;
    }
}

impl Sealed for CampaignRecord {
    fn sealed(&self) -> &[u8] {
        &self.sealed_content_key
    }
    fn aad(&self, _key: &str) -> Vec<u8> {
        content_key_aad(&self.campaign_id)
    }
    fn set_sealed(&mut self, sealed: Vec<u8>) {
        self.sealed_content_key = sealed;
    }
}

/// Re-seals every authority key, device key, update content key, release image and the audit
/// key not sealed under the current KEK.
pub async fn rewrap_all(db: &Db, kek: &KekRing) -> Result<RewrapReport> {
    Ok(RewrapReport {
        authority_keys: rewrap::<AuthorityKeyRecord>(db, kek).await?,
        devices: rewrap::<DeviceRecord>(db, kek).await?,
        campaigns: rewrap::<CampaignRecord>(db, kek).await?,
        images: rewrap::<ReleaseImage>(db, kek).await?,
        audit_keys: rewrap::<SealedAuditKey>(db, kek).await?,
    })
}

async fn rewrap<R: Sealed>(db: &Db, kek: &KekRing) -> Result<usize> {
    let mut rewrapped = 0;
    for listed in db.list(Scope::<R>::all()).await? {
        let done = CasRetry::new("a record being re-sealed")
            .run(|| async {
                // Read again: a retry must see what the winning writer stored.
                match db.reread(&listed).await? {
                    Some(stored) => rewrap_one(db, kek, stored).await,
                    None => Ok(Attempt::Done(false)),
                }
            })
            .await?;
        rewrapped += usize::from(done);
    }
    Ok(rewrapped)
}

async fn rewrap_one<R: Sealed>(db: &Db, kek: &KekRing, stored: Stored<R>) -> Result<Attempt<bool>> {
    if kek.is_current(stored.record.sealed()) {
        return Ok(Attempt::Done(false));
    }
    let aad = stored.record.aad(&stored.key);
    let secret = kek.open(&aad, stored.record.sealed())?;
    let mut record = stored.record.clone();
    record.set_sealed(kek.seal(&aad, &secret));
    let committed = db
        .commit(Txn::new().unchanged(&stored).replace(&stored, &record))
        .await?;
    Ok(Attempt::committed(committed, true))
}
