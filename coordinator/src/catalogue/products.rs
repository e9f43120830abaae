//! Products: created once by an operator, never changed (leases and devices refer to them).
//! Each is created with its first authority key ([`super::authority`]), which rotates apart.

use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use serde::{Deserialize, Serialize};

use super::authority::{AuthorityKeyRecord, AuthorityKeys, Generation};
use super::names::valid_name;
use crate::audit::{Actor, AuditLog, Entry};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::ProductId;
use crate::keys::KekRing;
use crate::repository::{hex, Attempt, Cache, CasRetry, Db, JsonRecord, Scope, Txn};

/// Products a replica keeps in memory.
const CACHED_PRODUCTS: usize = 1024;

/// `products/{product_id:010}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProductRecord {
    /// The product number, chosen by the operator; unique.
    pub product_id: ProductId,
    /// A human name (checked by `valid_name`).
    pub name: String,
    /// The ed25519 key that signs the product's releases.
    #[serde(with = "hex")]
    pub vendor_public_key: [u8; 32],
    /// When the product was created (Unix milliseconds).
    pub created_at_ms: i64,
}

impl JsonRecord for ProductRecord {
    const PREFIX: &'static str = "products/";
    type Key = ProductId;
}

impl ProductRecord {
    /// The product as the API shows it, with its authority keys (oldest first).
    pub fn to_proto(&self, authority: &[AuthorityKeyRecord]) -> v1::Product {
        v1::Product {
            product_id: self.product_id.0,
            name: self.name.clone(),
            vendor_public_key: self.vendor_public_key.to_vec(),
            created_at_ms: self.created_at_ms,
            authority_public_key: authority
                .last()
                .map(|k| k.public_key.to_vec())
                .unwrap_or_default(),
            authority_public_keys: authority.iter().map(|k| k.public_key.to_vec()).collect(),
        }
    }
}

/// Creates and reads products.
#[derive(Clone)]
pub struct Products {
    db: Db,
    audit: AuditLog,
    kek: Arc<KekRing>,
    authority: AuthorityKeys,
    /// Products never change once created, so a copy read once stays true.
    cached: Arc<Cache<ProductId, Arc<ProductRecord>>>,
}

impl Products {
    /// Products over `db`, created under the audit log `audit`; authority keys are sealed
    /// under `kek`.
    pub fn new(db: Db, kek: Arc<KekRing>, audit: AuditLog) -> Self {
        Self {
            authority: AuthorityKeys::new(db.clone()),
            db,
            audit,
            kek,
            cached: Arc::new(Cache::new(CACHED_PRODUCTS)),
        }
    }

    /// The products' authority keys.
    pub fn authority(&self) -> &AuthorityKeys {
        &self.authority
    }

    /// Makes a new current authority key for a product and returns the product.
    pub async fn rotate_authority(&self, by: &Actor, id: ProductId) -> Result<v1::Product> {
        let product = self.get(id).await?;
        self.authority
            .rotate(id, &self.kek, &self.audit, by)
            .await?;
        Ok(product.to_proto(&self.authority.all(id).await?))
    }

    /// Creates a product; refused if its id is taken or its vendor key is not an ed25519 point.
    pub async fn create(&self, by: &Actor, req: v1::CreateProductRequest) -> Result<v1::Product> {
        valid_name(&req.name, "a product name")?;
        let key: [u8; 32] = req.vendor_public_key.as_slice().try_into().map_err(|_| {
            E::InvalidArgument(format!(
                "the vendor public key must be a 32-byte ed25519 key; got {} bytes",
                req.vendor_public_key.len()
            ))
        })?;
        VerifyingKey::from_bytes(&key).map_err(|_| {
            E::InvalidArgument("the vendor public key is not a valid ed25519 point".into())
        })?;
        let id = ProductId(req.product_id);
        let record = ProductRecord {
            product_id: id,
            name: req.name,
            vendor_public_key: key,
            created_at_ms: now_ms(),
        };
        let authority = AuthorityKeyRecord::generate(id, Generation(1), &self.kek);
        CasRetry::new("the audit log")
            .run(|| async {
                if self.db.get::<ProductRecord>(&id).await?.is_some() {
                    return Err(E::AlreadyExists(format!(
                        "product {id} already exists; products are immutable, pick another product id"
                    )));
                }
                let txn = Txn::new()
                    .absent::<ProductRecord>(&id)
                    .absent::<AuthorityKeyRecord>(&authority.key())
                    .put(&id, &record)
                    .put(&authority.key(), &authority);
                let entry = Entry::new(by, "product created", id).detail(format!(
                    "name {:?}, vendor key {}, authority key {}",
                    record.name,
                    ::hex::encode(record.vendor_public_key),
                    ::hex::encode(authority.public_key)
                ));
                let txn = self.audit.append_global(txn, entry).await?;
                Ok(Attempt::committed(self.db.commit(txn).await?, ()))
            })
            .await?;
        Ok(record.to_proto(&[authority]))
    }

    /// Every product, in id order.
    pub async fn list(&self) -> Result<Vec<v1::Product>> {
        let mut out = Vec::new();
        for p in self.db.list(Scope::<ProductRecord>::all()).await? {
            let keys = self.authority.all(p.record.product_id).await?;
            out.push(p.record.to_proto(&keys));
        }
        Ok(out)
    }

    /// One product, read once per replica (products are immutable).
    pub async fn cached(&self, id: ProductId) -> Result<Arc<ProductRecord>> {
        if let Some(product) = self.cached.get(&id) {
            return Ok(product);
        }
        let product = Arc::new(self.get(id).await?);
        self.cached.put(id, product.clone());
        Ok(product)
    }

    /// The private half of a product's authority key, opened (from its KEK seal) once per
    /// replica and kept in memory, where signing needs it anyway.
    pub fn opened_authority(&self, record: &AuthorityKeyRecord) -> Result<Arc<SigningKey>> {
        self.authority.opened(record, &self.kek)
    }

    /// One product; `NotFound` if it does not exist.
    pub async fn get(&self, id: ProductId) -> Result<ProductRecord> {
        Ok(self
            .db
            .get::<ProductRecord>(&id)
            .await?
            .ok_or_else(|| {
                E::NotFound(format!(
                    "product {id} does not exist; create it with `flashgate product create`"
                ))
            })?
            .record)
    }
}
