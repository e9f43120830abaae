//! The catalogue: what may be made. Products (a number, a name, the vendor's key), releases
//! (vendor-signed images, checked on upload) and orders ("these stations or this factory may
//! make N boards of product P with this bootloader"). Orders are immutable; how much of an
//! order is left is the provisioning flow's quota (`crate::provisioning::quota`).
//!
//! | key | value |
//! | --- | --- |
//! | `products/{product_id:010}` | [`products::ProductRecord`] |
//! | `authority/{product_id:010}/{generation:06}` | [`authority::AuthorityKeyRecord`] (private half sealed under the KEK) |
//! | `releases/{digest}` / `images/{digest}` | [`releases::ReleaseRecord`] / the signed image sealed under the KEK |
//! | `orders/{order_id}` | [`orders::OrderRecord`] |

pub mod authority;
mod names;
pub mod orders;
pub mod products;
pub mod releases;

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::keys::KekRing;
use crate::repository::Db;

pub use orders::{OrderRecord, Orders};
pub use products::{ProductRecord, Products};
pub use releases::{ReleaseKind, ReleaseRecord, Releases};

/// The catalogue's three parts over one store.
#[derive(Clone)]
pub struct Catalogue {
    /// The products (number, name, vendor key).
    pub products: Products,
    /// The vendor-signed images of every product.
    pub releases: Releases,
    /// The orders: who may make how many boards of which product.
    pub orders: Orders,
}

impl Catalogue {
    /// The catalogue over `db`, its parts sharing it; images and authority keys are sealed
    /// with `kek`, changes audited in `audit`.
    pub fn new(db: Db, kek: Arc<KekRing>, audit: AuditLog) -> Self {
        let products = Products::new(db.clone(), kek.clone(), audit.clone());
        let releases = Releases::new(db.clone(), products.clone(), kek, audit);
        let orders = Orders::new(db, products.clone(), releases.clone());
        Self {
            products,
            releases,
            orders,
        }
    }
}
