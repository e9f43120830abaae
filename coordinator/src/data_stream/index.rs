//! The indexes from what a record names its device by — the v1 device id (the serial's first 8
//! bytes) and the v2 handle (`data_stream::handle`, 3 bytes of a hash of the serial) — to the
//! registered devices that have it: written in the transaction that registers a device, read
//! with one prefix query per unknown id or handle, so a record never makes the ingest scan the
//! registry. Both spaces are global (across products): the ingest needs no product to find a
//! device, and devices that share an id or handle are told apart by whose key opens the record.
//!
//! | key | value |
//! | --- | --- |
//! | `data/device_ids/{device id hex}/{product_id:010}/{serial}` | [`IndexEntry`] |
//! | `data/handles/{handle hex}/{product_id:010}/{serial}` | [`HandleEntry`] |
//! | `data/index_version/current` | [`IndexVersion`] |
//!
//! A store whose devices were registered before handles existed has no handle entries, and
//! their v2 records would be refused as unknown: [`DeviceIdIndex::backfill`] writes every
//! registered device's entries once (at start, until the version says it is done).

use flashgate_protocol::data_stream::{self, DeviceRef, DEVICE_ID_LEN, HANDLE_LEN};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{ProductId, Serial};
use crate::provisioning::registry::DeviceRecord;
use crate::repository::{Db, JsonRecord, KeyPart, Scope, Txn};

/// What the indexes hold for every registered device: 1, device ids; 2, handles too.
pub const INDEX_VERSION: u32 = 2;
/// Devices whose entries one backfill transaction writes.
const BACKFILL_TXN: usize = 64;

/// Which entries every registered device has.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexVersion {
    /// [`INDEX_VERSION`] once backfilled.
    pub version: u32,
}

impl JsonRecord for IndexVersion {
    const PREFIX: &'static str = "data/index_version/";
    type Key = str;
}

/// A device id, hex in keys.
pub struct DeviceId(pub [u8; DEVICE_ID_LEN]);

impl KeyPart for DeviceId {
    fn write_key(&self, out: &mut String) {
        out.push_str(&hex::encode(self.0));
    }
}

/// A device handle, hex in keys.
pub struct Handle(pub [u8; HANDLE_LEN]);

impl KeyPart for Handle {
    fn write_key(&self, out: &mut String) {
        out.push_str(&hex::encode(self.0));
    }
}

/// One registered device with this id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Its product.
    pub product_id: ProductId,
    /// Its serial.
    pub serial: Serial,
}

impl JsonRecord for IndexEntry {
    const PREFIX: &'static str = "data/device_ids/";
    type Key = (DeviceId, (ProductId, Serial));
}

/// One registered device with this handle.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HandleEntry(pub IndexEntry);

impl JsonRecord for HandleEntry {
    const PREFIX: &'static str = "data/handles/";
    type Key = (Handle, (ProductId, Serial));
}

/// Writes and reads the indexes.
pub struct DeviceIdIndex;

impl DeviceIdIndex {
    /// Adds the index entries of a device being registered to the registering transaction.
    pub fn add(txn: Txn, product_id: ProductId, serial: Serial) -> Txn {
        let entry = IndexEntry { product_id, serial };
        let id = (
            DeviceId(data_stream::device_id(&serial.0)),
            (product_id, serial),
        );
        let handle = (Handle(data_stream::handle(&serial.0)), (product_id, serial));
        txn.put(&id, &entry)
            .put(&handle, &HandleEntry(entry.clone()))
    }

    /// The registered devices a record naming `device` may come from (usually one; none for an
    /// unknown id or handle).
    pub async fn lookup(db: &Db, device: &DeviceRef) -> Result<Vec<(ProductId, Serial)>> {
        let entries: Vec<IndexEntry> = match device {
            DeviceRef::Id(id) => db
                .list(Scope::<IndexEntry>::under(&DeviceId(*id)))
                .await?
                .into_iter()
                .map(|e| e.record)
                .collect(),
            DeviceRef::Handle(h) => db
                .list(Scope::<HandleEntry>::under(&Handle(*h)))
                .await?
                .into_iter()
                .map(|e| e.record.0)
                .collect(),
        };
        Ok(entries
            .into_iter()
            .map(|e| (e.product_id, e.serial))
            .collect())
    }

    /// Writes both index entries of every registered device unless the store says it was done
    /// ([`IndexVersion`]); the number of devices written (0 when it was done). Rewriting an
    /// entry puts what is already there, so replicas starting together cost only time.
    pub async fn backfill(db: &Db) -> Result<usize> {
        const CURRENT: &str = "current";
        if db
            .get::<IndexVersion>(CURRENT)
            .await?
            .is_some_and(|v| v.record.version >= INDEX_VERSION)
        {
            return Ok(0);
        }
        let devices = db.list(Scope::<DeviceRecord>::all()).await?;
        for chunk in devices.chunks(BACKFILL_TXN) {
            let txn = chunk.iter().fold(Txn::new(), |txn, d| {
                Self::add(txn, d.record.product_id, d.record.serial)
            });
            db.commit(txn).await?;
        }
        db.commit(Txn::new().put(
            CURRENT,
            &IndexVersion {
                version: INDEX_VERSION,
            },
        ))
        .await?;
        Ok(devices.len())
    }
}
