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

use flashgate_protocol::data_stream::{self, DeviceRef, DEVICE_ID_LEN, HANDLE_LEN};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{ProductId, Serial};
use crate::repository::{Db, JsonRecord, KeyPart, Scope, Txn};

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
}
