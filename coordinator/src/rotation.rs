//! KEK rotation: re-seal every stored secret (authority keys, device keys, update content keys)
//! under the current KEK. Run with the new KEK as current and the old one as previous;
//! afterwards the old KEK can be retired. Each record is rewritten by compare-and-swap (retried
//! if it changed meanwhile), so this is safe while coordinators serve, and can be re-run after
//! an interruption.

use crate::catalogue::authority::{authority_key_aad, AuthorityKeyRecord};
use crate::error::Result;
use crate::keys::{device_key_aad, KekRing};
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
}

/// A record kind holding one secret sealed under the KEK.
trait Sealed: Record + Clone {
    fn sealed(&self) -> &[u8];
    fn aad(&self) -> Vec<u8>;
    fn set_sealed(&mut self, sealed: Vec<u8>);
}

impl Sealed for AuthorityKeyRecord {
    fn sealed(&self) -> &[u8] {
        &self.sealed_private_key
    }
    fn aad(&self) -> Vec<u8> {
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
    fn aad(&self) -> Vec<u8> {
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
    fn aad(&self) -> Vec<u8> {
        content_key_aad(&self.campaign_id)
    }
    fn set_sealed(&mut self, sealed: Vec<u8>) {
        self.sealed_content_key = sealed;
    }
}

/// Re-seals every authority key, device key and update content key not sealed under the
/// current KEK.
pub async fn rewrap_all(db: &Db, kek: &KekRing) -> Result<RewrapReport> {
    Ok(RewrapReport {
        authority_keys: rewrap::<AuthorityKeyRecord>(db, kek).await?,
        devices: rewrap::<DeviceRecord>(db, kek).await?,
        campaigns: rewrap::<CampaignRecord>(db, kek).await?,
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
    let aad = stored.record.aad();
    let secret = kek.open(&aad, stored.record.sealed())?;
    let mut record = stored.record.clone();
    record.set_sealed(kek.seal(&aad, &secret));
    let committed = db
        .commit(Txn::new().unchanged(&stored).replace(&stored, &record))
        .await?;
    Ok(Attempt::committed(committed, true))
}
