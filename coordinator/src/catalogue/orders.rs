//! Orders: "these stations (or any station of this factory) may make `count` boards of this
//! product with this bootloader (and test app)". Checked against the catalogue when drafted;
//! stored together with their quota by `crate::provisioning::quota::Quota::open_order`, and
//! never changed after.

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use serde::{Deserialize, Serialize};

use super::names::valid_name;
use super::products::Products;
use super::releases::{ReleaseKind, Releases};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{Digest, OrderId, ProductId, StationId};
use crate::repository::{hex, Db, JsonRecord, Scope};

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
}

impl Orders {
    /// Orders over `db`, checked against `products` and `releases`.
    pub fn new(db: Db, products: Products, releases: Releases) -> Self {
        Self {
            db,
            products,
            releases,
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
            .releases
            .get(&Digest::parse(&req.bootloader_digest)?)
            .await?;
        if bootloader.kind != ReleaseKind::Bootloader || bootloader.product_id != product.product_id
        {
            return Err(E::InvalidArgument(format!(
                "release {} is not a bootloader of product {}",
                bootloader.digest, product.product_id
            )));
        }
        let test_app_digest = if req.test_app_digest.is_empty() {
            None
        } else {
            let app = self
                .releases
                .get(&Digest::parse(&req.test_app_digest)?)
                .await?;
            if app.kind != ReleaseKind::TestApp || app.product_id != product.product_id {
                return Err(E::InvalidArgument(format!(
                    "release {} is not a test app of product {}",
                    app.digest, product.product_id
                )));
            }
            Some(app.digest)
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
            station_ids,
            factory: req.factory,
            count: req.count,
            created_at_ms: now_ms(),
        })
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
