//! Per-product authority keys: the ed25519 keys that sign device certificates
//! (`flashgate_protocol::certificate`). One record per key generation, its private half sealed
//! under the KEK (AAD names the product and the key id), so a store breach learns no key and
//! cannot move a key to another product. The highest generation is the current key: new
//! certificates are signed with it. Bootloader and OS images pin the key they were signed for,
//! so rotating needs new bootloader/OS releases (and devices already made keep their key).

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use flashgate_proto::clock::now_ms;
use flashgate_protocol::certificate::authority_key_id;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::audit::{Actor, AuditLog, Entry};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::ProductId;
use crate::keys::KekRing;
use crate::repository::{hex, Cache, Db, JsonRecord, KeyPart, Record, Scope, Txn};

/// A key generation of one product: 1 for the key made with the product, +1 per rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Generation(pub u32);

impl KeyPart for Generation {
    fn write_key(&self, out: &mut String) {
        out.push_str(&format!("{:06}", self.0));
    }
}

/// `authority/{product_id:010}/{generation:06}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthorityKeyRecord {
    /// The product whose certificates it signs.
    pub product_id: ProductId,
    /// Its generation (the highest is current).
    pub generation: Generation,
    /// The ed25519 public key (what images pin and devices check).
    #[serde(with = "hex")]
    pub public_key: [u8; 32],
    /// The private half sealed under the KEK ([`authority_key_aad`]).
    #[serde(with = "hex")]
    pub sealed_private_key: Vec<u8>,
    /// When it was made (Unix milliseconds).
    pub created_at_ms: i64,
}

impl JsonRecord for AuthorityKeyRecord {
    const PREFIX: &'static str = "authority/";
    type Key = (ProductId, Generation);
}

/// AAD binding a sealed authority key to its product and key id.
pub fn authority_key_aad(product_id: ProductId, public_key: &[u8; 32]) -> Vec<u8> {
    let mut aad = b"flashgate-authority-key-v1".to_vec();
    aad.extend_from_slice(&product_id.0.to_be_bytes());
    aad.extend_from_slice(&authority_key_id(public_key));
    aad
}

impl AuthorityKeyRecord {
    /// The record's store key.
    pub fn key(&self) -> (ProductId, Generation) {
        (self.product_id, self.generation)
    }

    /// A fresh key of `generation` for `product_id`, sealed under `kek`.
    pub fn generate(product_id: ProductId, generation: Generation, kek: &KekRing) -> Self {
        let signing = SigningKey::generate(&mut OsRng);
        let public_key = signing.verifying_key().to_bytes();
        Self {
            product_id,
            generation,
            public_key,
            sealed_private_key: kek.seal(
                &authority_key_aad(product_id, &public_key),
                signing.as_bytes(),
            ),
            created_at_ms: now_ms(),
        }
    }

    /// Opens the private half; refused if it does not match the stored public key.
    pub fn signing_key(&self, kek: &KekRing) -> Result<SigningKey> {
        let secret: Zeroizing<[u8; 32]> = kek.open_key(
            &authority_key_aad(self.product_id, &self.public_key),
            &self.sealed_private_key,
        )?;
        let key = SigningKey::from_bytes(&secret);
        if key.verifying_key().to_bytes() != self.public_key {
            return Err(E::Internal(format!(
                "authority key {} of product {} does not match its public half",
                self.generation.0, self.product_id
            )));
        }
        Ok(key)
    }
}

/// Reads, creates and rotates authority keys.
#[derive(Clone)]
pub struct AuthorityKeys {
    db: Db,
    /// Each product's current key as last seen, with the key its successor would take: a use
    /// of it guards that successor's absence ([`CurrentAuthority::guard`]).
    current: Arc<Cache<ProductId, CurrentAuthority>>,
    /// Opened private halves by product and public key (a key generation never changes but
    /// for its KEK seal, which a rotation of the KEK replaces with the same key).
    opened: Arc<Cache<KeyOf, Arc<SigningKey>>>,
}

/// A key generation named by its product and public key.
type KeyOf = (ProductId, [u8; 32]);

/// A product's current authority key as this replica last saw it.
#[derive(Clone, Debug)]
pub struct CurrentAuthority {
    /// The key.
    pub record: AuthorityKeyRecord,
    /// The store key the next generation would be written under.
    pub successor: String,
}

impl CurrentAuthority {
    /// `txn` guarded on no newer generation having been made since this key was read, so a
    /// lease granted from a cached copy carries the current key, exactly as one read fresh.
    pub fn guard(&self, txn: Txn) -> Txn {
        let next = (
            self.record.product_id,
            Generation(self.record.generation.0 + 1),
        );
        txn.absent::<AuthorityKeyRecord>(&next)
    }
}

/// Authority keys a replica keeps in memory (current ones and opened ones).
const CACHED_KEYS: usize = 1024;

impl AuthorityKeys {
    /// Authority keys over `db`.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            current: Arc::new(Cache::new(CACHED_KEYS)),
            opened: Arc::new(Cache::new(CACHED_KEYS)),
        }
    }

    /// The current key of `product_id` as this replica last read it (use it under
    /// [`CurrentAuthority::guard`]).
    pub async fn current_cached(&self, product_id: ProductId) -> Result<CurrentAuthority> {
        if let Some(current) = self.current.get(&product_id) {
            return Ok(current);
        }
        let record = self.current(product_id).await?;
        let next = (record.product_id, Generation(record.generation.0 + 1));
        let current = CurrentAuthority {
            successor: AuthorityKeyRecord::key_of(&next),
            record,
        };
        self.current.put(product_id, current.clone());
        Ok(current)
    }

    /// Forgets the cached current key of `product_id` (a guard showed a newer generation).
    pub fn forget_current(&self, product_id: ProductId) {
        self.current.remove(&product_id);
    }

    /// The opened private half of `product_id`'s key `public_key`, if this replica opened it.
    pub fn opened_cached(
        &self,
        product_id: ProductId,
        public_key: &[u8; 32],
    ) -> Option<Arc<SigningKey>> {
        self.opened.get(&(product_id, *public_key))
    }

    /// `record`'s private half, opened once per replica.
    pub fn opened(&self, record: &AuthorityKeyRecord, kek: &KekRing) -> Result<Arc<SigningKey>> {
        let id = (record.product_id, record.public_key);
        if let Some(key) = self.opened.get(&id) {
            return Ok(key);
        }
        let key = Arc::new(record.signing_key(kek)?);
        self.opened.put(id, key.clone());
        Ok(key)
    }

    /// Every key of a product, oldest first.
    pub async fn all(&self, product_id: ProductId) -> Result<Vec<AuthorityKeyRecord>> {
        let mut keys: Vec<_> = self
            .db
            .list(Scope::<AuthorityKeyRecord>::under(&product_id))
            .await?
            .into_iter()
            .map(|s| s.record)
            .collect();
        keys.sort_by_key(|k| k.generation);
        Ok(keys)
    }

    /// The key new certificates of `product_id` are signed with.
    pub async fn current(&self, product_id: ProductId) -> Result<AuthorityKeyRecord> {
        self.all(product_id).await?.pop().ok_or_else(|| {
            E::FailedPrecondition(format!(
                "product {product_id} has no authority key; run `flashgate product rotate-authority {product_id}`"
            ))
        })
    }

    /// Adds a new current key (the next generation); the old ones stay for verification.
    pub async fn rotate(
        &self,
        product_id: ProductId,
        kek: &KekRing,
        audit: &AuditLog,
        by: &Actor,
    ) -> Result<AuthorityKeyRecord> {
        let next = self
            .all(product_id)
            .await?
            .last()
            .map_or(1, |k| k.generation.0 + 1);
        let record = AuthorityKeyRecord::generate(product_id, Generation(next), kek);
        let key = record.key();
        let entry = Entry::new(by, "authority key rotated", product_id).detail(format!(
            "generation {next}, public key {}",
            ::hex::encode(record.public_key)
        ));
        let txn = audit
            .append_global(
                Txn::new()
                    .absent::<AuthorityKeyRecord>(&key)
                    .put(&key, &record),
                entry,
            )
            .await?;
        if !self.db.commit(txn).await? {
            return Err(E::Unavailable(
                "another rotation of this product's authority key is under way; retry".into(),
            ));
        }
        tracing::info!(product = %product_id, generation = next, "authority key rotated");
        Ok(record)
    }
}
