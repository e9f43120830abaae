//! Releases: vendor-signed images. An upload is stored only if its signature verifies against
//! the product's vendor key and its body matches the signed header; the digest (SHA-256 of the
//! whole signed image) names it. Uploading the same bytes twice is harmless.

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::image::{BodyHasher, ImageKind, SignedImageHeader, SIGNED_HEADER_LEN};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use std::sync::Arc;

use zeroize::Zeroizing;

use super::products::Products;
use crate::audit::{Actor, AuditLog, Entry};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{Digest, ProductId};
use crate::keys::{release_image_aad, KekRing};
use crate::repository::{hex, Attempt, CasRetry, Db, JsonRecord, Record, Scope, Txn};

/// What a release is, stored as the image header's kind number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub enum ReleaseKind {
    /// The secure bootloader, installed by the station under a lease.
    Bootloader,
    /// The operating system the bootloader verifies and starts.
    Os,
    /// An application the OS installs into its app slot.
    App,
    /// The factory self-test the RAM loader runs before the board is locked.
    TestApp,
}

impl From<ImageKind> for ReleaseKind {
    fn from(kind: ImageKind) -> Self {
        match kind {
            ImageKind::Bootloader => Self::Bootloader,
            ImageKind::Os => Self::Os,
            ImageKind::App => Self::App,
            ImageKind::TestApp => Self::TestApp,
        }
    }
}

impl From<ReleaseKind> for u16 {
    fn from(kind: ReleaseKind) -> u16 {
        match kind {
            ReleaseKind::Bootloader => ImageKind::Bootloader as u16,
            ReleaseKind::Os => ImageKind::Os as u16,
            ReleaseKind::App => ImageKind::App as u16,
            ReleaseKind::TestApp => ImageKind::TestApp as u16,
        }
    }
}

impl TryFrom<u16> for ReleaseKind {
    type Error = String;
    fn try_from(n: u16) -> Result<Self, String> {
        [Self::Bootloader, Self::Os, Self::App, Self::TestApp]
            .into_iter()
            .find(|k| u16::from(*k) == n)
            .ok_or_else(|| format!("{n} is not an image kind"))
    }
}

impl ReleaseKind {
    /// The kind with its article, for messages ("a bootloader").
    pub fn described(self) -> &'static str {
        match self {
            Self::Bootloader => "a bootloader",
            Self::Os => "an OS",
            Self::App => "an app",
            Self::TestApp => "a test app",
        }
    }

    fn to_proto(self) -> v1::ImageKind {
        match self {
            Self::Bootloader => v1::ImageKind::Bootloader,
            Self::Os => v1::ImageKind::Os,
            Self::App => v1::ImageKind::App,
            Self::TestApp => v1::ImageKind::TestApp,
        }
    }
}

/// `releases/{digest}`: the checked header of a stored image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// SHA-256 of the whole signed image: the release's name.
    pub digest: Digest,
    /// The product whose vendor key signed it.
    pub product_id: ProductId,
    /// What the image is (from its header).
    pub kind: ReleaseKind,
    /// The image's version (from its header; anti-rollback compares it).
    pub version: u32,
    /// Where the image is written on the target (from its header).
    pub load_address: u32,
    /// Length of the body after the signed header, in bytes.
    pub body_size: u32,
    /// SHA-256 of the body, as signed in the header.
    #[serde(with = "hex")]
    pub body_digest: [u8; 32],
    /// The vendor's ed25519 signature over the header.
    #[serde(with = "hex")]
    pub vendor_signature: [u8; 64],
    /// When it was uploaded (Unix milliseconds).
    pub uploaded_at_ms: i64,
}

impl JsonRecord for ReleaseRecord {
    const PREFIX: &'static str = "releases/";
    type Key = Digest;
}

impl ReleaseRecord {
    /// The release as the API shows it.
    pub fn to_proto(&self) -> v1::Release {
        v1::Release {
            digest: self.digest.0.to_vec(),
            product_id: self.product_id.0,
            kind: self.kind.to_proto() as i32,
            version: self.version,
            load_address: self.load_address,
            body_size: self.body_size,
            body_digest: self.body_digest.to_vec(),
            vendor_signature: self.vendor_signature.to_vec(),
            uploaded_at_ms: self.uploaded_at_ms,
        }
    }
}

/// `images/{digest}`: the signed image, sealed under the KEK (AAD names the digest). Its
/// plaintext exists only in the coordinator's memory while it is re-sealed for a station or
/// encrypted into an update campaign.
#[derive(Clone)]
pub struct ReleaseImage(pub Vec<u8>);

impl Record for ReleaseImage {
    const PREFIX: &'static str = "images/";
    type Key = Digest;
    fn encode(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        Ok(Self(bytes.to_vec()))
    }
}

/// Checks, stores and reads releases.
#[derive(Clone)]
pub struct Releases {
    db: Db,
    products: Products,
    kek: Arc<KekRing>,
    audit: AuditLog,
}

impl Releases {
    /// Releases over `db`, checked against the `products`' vendor keys; images are sealed with
    /// `kek`, uploads audited in `audit`.
    pub fn new(db: Db, products: Products, kek: Arc<KekRing>, audit: AuditLog) -> Self {
        Self {
            db,
            products,
            kek,
            audit,
        }
    }

    /// A bootloader or OS decides what boots through the keys it pins: they must be the
    /// product's vendor key and one of its authority keys, or no device made with it would
    /// accept its certificate (or it would accept another product's).
    async fn check_anchors(&self, product: &super::ProductRecord, body: &[u8]) -> Result<()> {
        let anchors = flashgate_protocol::trust_anchors::read(body)
            .ok()
            .filter(|a| a.is_filled())
            .ok_or_else(|| {
                E::InvalidArgument(
                    "the image pins no trust anchors; sign it with `flashgate image sign --vendor-pub … --authority-pub …`".into(),
                )
            })?;
        if anchors.vendor_public != product.vendor_public_key {
            return Err(E::InvalidArgument(format!(
                "the image pins vendor key {}, not product {}'s vendor key",
                ::hex::encode(anchors.vendor_public),
                product.product_id
            )));
        }
        let known = self.products.authority().all(product.product_id).await?;
        if !known
            .iter()
            .any(|k| k.public_key == anchors.authority_public)
        {
            return Err(E::InvalidArgument(format!(
                "the image pins authority key {}, which product {} never had; see `flashgate product list`",
                ::hex::encode(anchors.authority_public),
                product.product_id
            )));
        }
        Ok(())
    }

    /// Stores a vendor-signed image (sealed under the KEK) after checking its signature
    /// (against the product's vendor key) and its body digest.
    pub async fn upload(&self, by: &Actor, image: &[u8]) -> Result<v1::Release> {
        let signed = SignedImageHeader::parse(image).map_err(|e| {
            E::InvalidArgument(format!(
                "not a flashgate signed image (header: {e:?}); sign releases with the vendor tooling"
            ))
        })?;
        let product = self
            .products
            .get(ProductId(signed.header.product_id))
            .await?;
        let header = *signed.verify(&product.vendor_public_key).map_err(|_| {
            E::InvalidArgument(format!(
                "the image's vendor signature does not verify against product {}'s vendor key; the release was refused",
                product.product_id
            ))
        })?;
        let mut hasher = BodyHasher::new(header.body_size);
        hasher
            .update(&image[SIGNED_HEADER_LEN..])
            .and_then(|()| hasher.finish(&header.body_digest))
            .map_err(|e| {
                E::InvalidArgument(format!(
                    "the image body does not match its signed header ({e:?}): truncated or altered"
                ))
            })?;
        if matches!(header.kind, ImageKind::Bootloader | ImageKind::Os) {
            self.check_anchors(&product, &image[SIGNED_HEADER_LEN..])
                .await?;
        }
        let digest = Digest(Sha256::digest(image).into());
        let record = ReleaseRecord {
            digest,
            product_id: ProductId(header.product_id),
            kind: header.kind.into(),
            version: header.version,
            load_address: header.load_addr,
            body_size: header.body_size,
            body_digest: header.body_digest,
            vendor_signature: signed.signature,
            uploaded_at_ms: now_ms(),
        };
        let sealed = ReleaseImage(self.kek.seal(&release_image_aad(&digest.0), image));
        CasRetry::new("the audit log")
            .run(|| async {
                // Same bytes, same digest: uploading twice is harmless.
                if let Some(existing) = self.db.get::<ReleaseRecord>(&digest).await? {
                    return Ok(Attempt::Done(existing.record.to_proto()));
                }
                let txn = Txn::new()
                    .absent::<ReleaseRecord>(&digest)
                    .put(&digest, &sealed)
                    .put(&digest, &record);
                let entry = Entry::new(by, "release uploaded", digest).detail(format!(
                    "product {}, {:?} version {}, {} bytes",
                    record.product_id, record.kind, record.version, record.body_size
                ));
                let txn = self.audit.append_global(txn, entry).await?;
                Ok(Attempt::committed(
                    self.db.commit(txn).await?,
                    record.to_proto(),
                ))
            })
            .await
    }

    /// Every release, or those of one product (`product_id` ≠ 0).
    pub async fn list(&self, product_id: u32) -> Result<Vec<v1::Release>> {
        Ok(self
            .db
            .list(Scope::<ReleaseRecord>::all())
            .await?
            .iter()
            .map(|r| &r.record)
            .filter(|r| product_id == 0 || r.product_id.0 == product_id)
            .map(ReleaseRecord::to_proto)
            .collect())
    }

    /// One release's record; `NotFound` if no image has that digest.
    pub async fn get(&self, digest: &Digest) -> Result<ReleaseRecord> {
        Ok(self
            .db
            .get::<ReleaseRecord>(digest)
            .await?
            .ok_or_else(|| {
                E::NotFound(format!("release {digest} does not exist; upload it first"))
            })?
            .record)
    }

    /// A release and its signed image (opened from its sealed form; wiped when dropped), named by
    /// digest bytes from a request.
    pub async fn with_image(&self, digest: &[u8]) -> Result<(ReleaseRecord, Zeroizing<Vec<u8>>)> {
        let release = self.get(&Digest::parse(digest)?).await?;
        let image = self
            .db
            .get::<ReleaseImage>(&release.digest)
            .await?
            .ok_or_else(|| {
                E::Internal(format!("image of release {} is missing", release.digest))
            })?;
        let image = self
            .kek
            .open(&release_image_aad(&release.digest.0), &image.record.0)?;
        Ok((release, image))
    }
}
