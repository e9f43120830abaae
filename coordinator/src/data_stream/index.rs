//! The index from a data-stream device id (the serial's first 8 bytes) to the registered
//! devices that have it: written in the transaction that registers a device, read with one
//! prefix query per unknown id, so a record never makes the ingest scan the registry.
//!
//! | key | value |
//! | --- | --- |
//! | `data/device_ids/{device id hex}/{product_id:010}/{serial}` | [`IndexEntry`] |

use flashgate_protocol::data_stream::{self, DEVICE_ID_LEN};
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

/// Writes and reads the index.
pub struct DeviceIdIndex;

impl DeviceIdIndex {
    /// Adds the index entry of a device being registered to the registering transaction.
    pub fn add(txn: Txn, product_id: ProductId, serial: Serial) -> Txn {
        let key = (
            DeviceId(data_stream::device_id(&serial.0)),
            (product_id, serial),
        );
        txn.put(&key, &IndexEntry { product_id, serial })
    }

    /// The registered devices whose serial starts with `id` (usually one; none for an unknown id).
    pub async fn lookup(db: &Db, id: &[u8; DEVICE_ID_LEN]) -> Result<Vec<(ProductId, Serial)>> {
        Ok(db
            .list(Scope::<IndexEntry>::under(&DeviceId(*id)))
            .await?
            .into_iter()
            .map(|e| (e.record.product_id, e.record.serial))
            .collect())
    }
}
