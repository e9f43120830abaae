//! Orders: "these stations (or any station of this factory) may make `count` boards of this
//! product with this bootloader (and test app), leaving with this OS". Checked against the catalogue when drafted;
//! stored together with their quota by `crate::provisioning::quota::Quota::open_order`, and
//! never changed after.

use std::sync::Arc;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::image::SignedImageHeader;
use serde::{Deserialize, Serialize};

use super::names::valid_name;
use super::products::{ProductRecord, Products};
use super::releases::{ReleaseKind, ReleaseRecord, Releases};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{Digest, OrderId, ProductId, StationId};
use crate::repository::{hex, Cache, Db, JsonRecord, Scope};

/// Orders a replica keeps in memory.
const CACHED_ORDERS: usize = 4096;

/// Largest order: far above any production run, far below what the counters hold.
const MAX_ORDER_COUNT: u64 = 1_000_000_000;

/// `orders/{order_id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The order's id, chosen by the coordinator when it is created.
    pub order_id: OrderId,
    /// The product every board of the order is.
    pub product_id: ProductId,
    /// The bootloader release installed on every board (a `Bootloader` release of the product).
    pub bootloader_digest: Digest,
    /// That bootloader's version, copied from its release when the order was drafted.
    pub bootloader_version: u32,
    /// The factory test app the loader runs, if any (stored as `""` when none).
    #[serde(with = "hex::or_empty")]
    pub test_app_digest: Option<Digest>,
    /// The OS release every board leaves the factory running, if any (an `Os` release of the
    /// product; `""` or absent when none). Installed from per-device packages after the lock
    /// (`crate::provisioning::factory_packages`).
    #[serde(default, with = "hex::or_empty")]
    pub os_release_digest: Option<Digest>,
    /// That OS release's version (0 when none).
    #[serde(default)]
    pub os_version: u32,
    /// The stations that may make it; empty: any station of `factory`.
    pub station_ids: Vec<StationId>,
    /// The factory whose stations may make it when `station_ids` is empty (`""`: none named).
    pub factory: String,
    /// How many boards the order allows, in all.
    pub count: u64,
    /// When the order was created (Unix milliseconds).
    pub created_at_ms: i64,
}

impl JsonRecord for OrderRecord {
    const PREFIX: &'static str = "orders/";
    type Key = OrderId;
}

impl OrderRecord {
    /// Whether the station `station_id` of `factory` may work on this order.
    pub fn admits(&self, station_id: &StationId, factory: &str) -> bool {
        if self.station_ids.is_empty() {
            !self.factory.is_empty() && self.factory == factory
        } else {
            self.station_ids.contains(station_id)
        }
    }

    /// The order as the API shows it.
    pub fn to_proto(&self) -> v1::Order {
        v1::Order {
            order_id: self.order_id.to_string(),
            product_id: self.product_id.0,
            bootloader_digest: self.bootloader_digest.0.to_vec(),
            test_app_digest: self
                .test_app_digest
                .map(|d| d.0.to_vec())
                .unwrap_or_default(),
            os_release_digest: self
                .os_release_digest
                .map(|d| d.0.to_vec())
                .unwrap_or_default(),
            os_version: self.os_version,
            station_ids: self.station_ids.iter().map(ToString::to_string).collect(),
            factory: self.factory.clone(),
            count: self.count,
            created_at_ms: self.created_at_ms,
        }
    }
}

/// Drafts, stores and reads orders, each checked against the products and releases.
#[derive(Clone)]
pub struct Orders {
    db: Db,
    products: Products,
    releases: Releases,
    /// Orders never change once stored, so a copy read once stays true.
    cached: Arc<Cache<OrderId, Arc<OrderRecord>>>,
}

impl Orders {
    /// Orders over `db`, checked against `products` and `releases`.
    pub fn new(db: Db, products: Products, releases: Releases) -> Self {
        Self {
            db,
            products,
            releases,
            cached: Arc::new(Cache::new(CACHED_ORDERS)),
        }
    }

    /// Checks a new order against the catalogue; the record to store (nothing is written).
    pub async fn draft(&self, req: v1::CreateOrderRequest) -> Result<OrderRecord> {
        let product = self.products.get(ProductId(req.product_id)).await?;
        if req.count == 0 || req.count > MAX_ORDER_COUNT {
            return Err(E::InvalidArgument(format!(
                "an order's count must be between 1 and {MAX_ORDER_COUNT}; got {}",
                req.count
            )));
        }
        let bootloader = self
            .release_of(&req.bootloader_digest, ReleaseKind::Bootloader, &product)
            .await?;
        let test_app_digest = match req.test_app_digest.as_slice() {
            [] => None,
            digest => Some(
                self.release_of(digest, ReleaseKind::TestApp, &product)
                    .await?
                    .digest,
            ),
        };
        let os = match req.os_release_digest.as_slice() {
            [] => None,
            digest => Some(self.os_release(digest, &product).await?),
        };
        let station_ids = req
            .station_ids
            .iter()
            .map(|id| StationId::parse(id))
            .collect::<Result<Vec<_>>>()?;
        valid_name(&req.factory, "a factory name")?;
        if station_ids.is_empty() && req.factory.is_empty() {
            return Err(E::InvalidArgument(
                "an order needs the stations (--station) or the factory (--factory) that may make it".into(),
            ));
        }
        let order_id = if req.order_id.is_empty() {
            OrderId::random()
        } else {
            match OrderId::parse(&req.order_id) {
                Ok(id) if req.order_id.len() <= 64 => id,
                _ => {
                    return Err(E::InvalidArgument(
                        "an order id is 1-64 characters of letters, digits, '-' and '_'".into(),
                    ))
                }
            }
        };
        Ok(OrderRecord {
            order_id,
            product_id: product.product_id,
            bootloader_digest: bootloader.digest,
            bootloader_version: bootloader.version,
            test_app_digest,
            os_release_digest: os.as_ref().map(|r| r.digest),
            os_version: os.map_or(0, |r| r.version),
            station_ids,
            factory: req.factory,
            count: req.count,
            created_at_ms: now_ms(),
        })
    }

    /// The release `digest` names, if it is a `kind` release of `product`.
    async fn release_of(
        &self,
        digest: &[u8],
        kind: ReleaseKind,
        product: &ProductRecord,
    ) -> Result<ReleaseRecord> {
        let release = self.releases.get(&Digest::parse(digest)?).await?;
        if release.kind != kind || release.product_id != product.product_id {
            return Err(E::InvalidArgument(format!(
                "release {} is not {} of product {}",
                release.digest,
                kind.described(),
                product.product_id
            )));
        }
        Ok(release)
    }

    /// The OS release an order's boards leave with: an OS of the product whose vendor signature
    /// verifies under the product's key now (checked again, not only at upload).
    async fn os_release(&self, digest: &[u8], product: &ProductRecord) -> Result<ReleaseRecord> {
        let release = self.release_of(digest, ReleaseKind::Os, product).await?;
        let (_, image) = self.releases.with_image(digest).await?;
        SignedImageHeader::parse(&image)
            .and_then(|h| h.verify(&product.vendor_public_key).map(|_| ()))
            .map_err(|code| {
                E::InvalidArgument(format!(
                    "OS release {} does not verify under product {}'s vendor key: {code}",
                    release.digest, product.product_id
                ))
            })?;
        Ok(release)
    }

    /// The order named by a caller.
    pub async fn get(&self, order_id: &str) -> Result<OrderRecord> {
        let id = OrderId::parse(order_id)?;
        Ok(self
            .db
            .get::<OrderRecord>(&id)
            .await?
            .ok_or_else(|| {
                E::NotFound(format!(
                    "order {id} does not exist; list orders with `flashgate orders status`"
                ))
            })?
            .record)
    }

    /// The order named by a caller, read once per replica (orders are never changed after they
    /// are stored; a cancellation changes the quota record, which callers guard).
    pub async fn cached(&self, order_id: &str) -> Result<Arc<OrderRecord>> {
        let id = OrderId::parse(order_id)?;
        if let Some(order) = self.cached.get(&id) {
            return Ok(order);
        }
        let order = Arc::new(self.get(order_id).await?);
        self.cached.put(id, order.clone());
        Ok(order)
    }

    /// Every order, in key order.
    pub async fn list(&self) -> Result<Vec<OrderRecord>> {
        Ok(self
            .db
            .list(Scope::<OrderRecord>::all())
            .await?
            .into_iter()
            .map(|o| o.record)
            .collect())
    }

    /// The orders a station may work on.
    pub async fn assigned_to(
        &self,
        station_id: &StationId,
        factory: &str,
    ) -> Result<Vec<v1::Order>> {
        Ok(self
            .list()
            .await?
            .iter()
            .filter(|o| o.admits(station_id, factory))
            .map(OrderRecord::to_proto)
            .collect())
    }
}
