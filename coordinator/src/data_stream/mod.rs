//! Data streams: verify, de-duplicate and store sealed telemetry records
//! (`flashgate_protocol::data_stream`), from gRPC (`DataService`) and plain UDP datagrams.
//!
//! Per device the store keeps one window record (`data/windows/<serial>`): the current epoch
//! and a [`ReplayWindow`] for it and for the previous epoch (records of the old epoch that were
//! still in flight when the device rotated are accepted; older epochs are refused). A batch of
//! records is verified in memory and committed in one transaction guarded by the revisions of
//! the window records it read, so replicas sharing a store cannot accept one counter twice.
//! Every refusal is counted by reason ([`IngestStats`]).
//!
//! Epoch changes: a `Rotation` record (sealed under the current epoch) opens `epoch + 1`; a
//! valid record of `current + 1` opens it too (its rotation record may have been lost on UDP).

mod service;
mod udp;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use flashgate_proto::v1;
use flashgate_protocol::data_stream::{
    self, Direction, RecordHeader, RecordKind, ReplayWindow, DEVICE_ID_LEN,
};
use flashgate_protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::coordinator::{now_ms, parse_serial, Coordinator};
use crate::error::{CoordinatorError as E, Result};
use crate::records::{self, DeviceRecord};
use crate::store::{Guard, Write};

pub use service::DataApi;
pub use udp::serve_udp;

/// Largest batch one `IngestRecords` call may carry.
pub const MAX_BATCH: usize = 1024;

fn window_key(serial_hex: &str) -> String {
    format!("data/windows/{serial_hex}")
}

fn record_prefix(serial_hex: &str) -> String {
    format!("data/records/{serial_hex}/")
}

fn record_key(serial_hex: &str, received_ms: i64, epoch: u32, counter: u32) -> String {
    format!("data/records/{serial_hex}/{received_ms:013}-{epoch:010}-{counter:010}")
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct EpochWindow {
    epoch: u32,
    highest: Option<u32>,
    bitmap: u64,
}

impl EpochWindow {
    fn window(&self) -> ReplayWindow {
        ReplayWindow {
            highest: self.highest,
            bitmap: self.bitmap,
        }
    }
    fn set(&mut self, w: ReplayWindow) {
        self.highest = w.highest;
        self.bitmap = w.bitmap;
    }
}

/// Stored per device: the open epochs' replay windows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct WindowRecord {
    product_id: u32,
    current: EpochWindow,
    previous: Option<EpochWindow>,
}

impl WindowRecord {
    fn open_epoch(&mut self, epoch: u32) {
        let old = std::mem::replace(
            &mut self.current,
            EpochWindow {
                epoch,
                ..EpochWindow::default()
            },
        );
        self.previous = Some(old);
    }

    fn slot(&mut self, epoch: u32) -> Result<&mut EpochWindow, ErrorCode> {
        if epoch == self.current.epoch.wrapping_add(1) && epoch != 0 {
            self.open_epoch(epoch);
        }
        if self.current.epoch == epoch {
            return Ok(&mut self.current);
        }
        match &mut self.previous {
            Some(p) if p.epoch == epoch => Ok(p),
            _ => Err(ErrorCode::DataStaleEpoch),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredRecord {
    product_id: u32,
    epoch: u32,
    counter: u32,
    kind: u8,
    body_hex: String,
    received_at_ms: i64,
    source: String,
    wire_len: u32,
}

/// Accepted records and refusals by reason since start.
#[derive(Clone, Debug, Default)]
pub struct IngestStats {
    pub accepted: u64,
    pub rejected: BTreeMap<u32, u64>,
}

/// Registered devices by data-stream id (several may share the 8-byte prefix).
type Directory = HashMap<[u8; DEVICE_ID_LEN], Vec<(u32, [u8; 16])>>;
/// Stream keys by (serial, epoch).
type KeyCache = HashMap<([u8; 16], u32), Zeroizing<[u8; 32]>>;

/// The ingest path shared by the gRPC service and the UDP listener.
pub struct DataIngest {
    coordinator: Arc<Coordinator>,
    /// Serialises batches on this replica (replicas are kept apart by the store's CAS).
    lock: Mutex<()>,
    /// Device id → registered (product, serial) with that prefix.
    directory: std::sync::Mutex<Directory>,
    /// (serial, epoch) → stream key.
    keys: std::sync::Mutex<KeyCache>,
    stats: std::sync::Mutex<IngestStats>,
}

struct Loaded {
    record: WindowRecord,
    revision: Option<i64>,
    dirty: bool,
}

impl DataIngest {
    pub fn new(coordinator: Arc<Coordinator>) -> Arc<Self> {
        Arc::new(Self {
            coordinator,
            lock: Mutex::new(()),
            directory: Default::default(),
            keys: Default::default(),
            stats: Default::default(),
        })
    }

    pub fn stats(&self) -> IngestStats {
        self.stats.lock().expect("stats lock").clone()
    }

    fn count(&self, verdict: &std::result::Result<(), ErrorCode>) {
        let mut stats = self.stats.lock().expect("stats lock");
        match verdict {
            Ok(()) => stats.accepted += 1,
            Err(code) => *stats.rejected.entry(*code as u32).or_default() += 1,
        }
    }

    async fn candidates(&self, id: &[u8; DEVICE_ID_LEN]) -> Result<Vec<(u32, [u8; 16])>> {
        if let Some(found) = self.directory.lock().expect("directory lock").get(id) {
            return Ok(found.clone());
        }
        // Unknown id: rescan the registry once (devices registered since the last scan).
        let mut directory = Directory::new();
        for (device, _) in self
            .coordinator
            .read_all::<DeviceRecord>("devices/")
            .await?
        {
            let Ok(serial) = hex::decode(&device.serial) else {
                continue;
            };
            let Ok(serial) = <[u8; 16]>::try_from(serial.as_slice()) else {
                continue;
            };
            directory
                .entry(data_stream::device_id(&serial))
                .or_default()
                .push((device.product_id, serial));
        }
        let found = directory.get(id).cloned().unwrap_or_default();
        *self.directory.lock().expect("directory lock") = directory;
        Ok(found)
    }

    async fn key(
        &self,
        product_id: u32,
        serial: &[u8; 16],
        epoch: u32,
    ) -> Result<Zeroizing<[u8; 32]>> {
        if let Some(k) = self.keys.lock().expect("keys lock").get(&(*serial, epoch)) {
            return Ok(k.clone());
        }
        let device_key = self.coordinator.device_key(product_id, serial).await?;
        let key = data_stream::epoch_key(&device_key, Direction::Up, epoch);
        self.keys
            .lock()
            .expect("keys lock")
            .insert((*serial, epoch), key.clone());
        Ok(key)
    }

    /// Verifies and stores a batch; one verdict per record, in order. Store failures are
    /// errors of the whole call (nothing of the batch was stored).
    pub async fn ingest(
        &self,
        records: &[Vec<u8>],
        source: &str,
    ) -> Result<Vec<std::result::Result<(), ErrorCode>>> {
        if records.len() > MAX_BATCH {
            return Err(E::InvalidArgument(format!(
                "at most {MAX_BATCH} records per call"
            )));
        }
        let _guard = self.lock.lock().await;
        for _attempt in 0..8 {
            let (verdicts, guards, writes) = self.verify_batch(records, source).await?;
            if writes.is_empty() || self.coordinator.store.commit(guards, writes).await? {
                for v in &verdicts {
                    self.count(v);
                }
                return Ok(verdicts);
            }
        }
        Err(E::Unavailable(
            "data windows changed concurrently too often; retry".into(),
        ))
    }

    async fn verify_batch(
        &self,
        records: &[Vec<u8>],
        source: &str,
    ) -> Result<(
        Vec<std::result::Result<(), ErrorCode>>,
        Vec<Guard>,
        Vec<Write>,
    )> {
        let now = now_ms();
        let mut windows: HashMap<[u8; 16], Loaded> = HashMap::new();
        let mut verdicts = Vec::with_capacity(records.len());
        let mut writes = Vec::new();
        for raw in records {
            let verdict = self
                .verify_one(raw, source, now, &mut windows, &mut writes)
                .await?;
            if let Err(code) = verdict {
                tracing::debug!(code = %code, len = raw.len(), source, "data record refused");
            }
            verdicts.push(verdict);
        }
        let mut guards = Vec::new();
        for (serial, loaded) in windows {
            if !loaded.dirty {
                continue;
            }
            let key = window_key(&hex::encode(serial));
            guards.push(match loaded.revision {
                Some(r) => Guard::Revision(key.clone(), r),
                None => Guard::Absent(key.clone()),
            });
            writes.push(Write::Put(key, records::encode(&loaded.record)));
        }
        Ok((verdicts, guards, writes))
    }

    async fn verify_one(
        &self,
        raw: &[u8],
        source: &str,
        now: i64,
        windows: &mut HashMap<[u8; 16], Loaded>,
        writes: &mut Vec<Write>,
    ) -> Result<std::result::Result<(), ErrorCode>> {
        let header = match RecordHeader::decode(raw) {
            Ok((h, _)) => h,
            Err(code) => return Ok(Err(code)),
        };
        let candidates = self.candidates(&header.device_id).await?;
        if candidates.is_empty() {
            return Ok(Err(ErrorCode::DataUnknownDevice));
        }
        let mut last = ErrorCode::DataForged;
        // Several devices may share the 8-byte id prefix: the one whose key opens it is the sender.
        for (product_id, serial) in candidates {
            if let std::collections::hash_map::Entry::Vacant(slot) = windows.entry(serial) {
                let key = window_key(&hex::encode(serial));
                let loaded = match self.coordinator.store.get(&key).await? {
                    Some(v) => Loaded {
                        record: records::decode(&key, &v.value)?,
                        revision: Some(v.revision),
                        dirty: false,
                    },
                    None => Loaded {
                        record: WindowRecord {
                            product_id,
                            current: EpochWindow {
                                epoch: header.epoch,
                                ..EpochWindow::default()
                            },
                            previous: None,
                        },
                        revision: None,
                        dirty: false,
                    },
                };
                slot.insert(loaded);
            }
            let loaded = windows.get_mut(&serial).expect("inserted above");
            // Work on a copy: nothing changes unless the record authenticates.
            let mut state = loaded.record.clone();
            let slot = match state.slot(header.epoch) {
                Ok(s) => s,
                Err(code) => {
                    last = code;
                    continue;
                }
            };
            let mut window = slot.window();
            if let Err(code) = window.check(header.counter) {
                last = code;
                continue;
            }
            let key = self.key(product_id, &serial, header.epoch).await?;
            let mut buf = raw.to_vec();
            let opened = match data_stream::open_in_place(&key, &mut buf) {
                Ok(o) => o,
                Err(code) => {
                    last = code;
                    continue;
                }
            };
            window
                .accept(header.counter)
                .expect("checked above, nothing accepted in between");
            slot.set(window);
            if opened.kind == RecordKind::Rotation {
                let body = &buf[opened.body.clone()];
                let next = u32::from_le_bytes(body.try_into().expect("rotation body is 4 bytes"));
                if next == header.epoch.wrapping_add(1) && state.current.epoch == header.epoch {
                    state.open_epoch(next);
                }
            }
            loaded.record = state;
            loaded.dirty = true;
            let serial_hex = hex::encode(serial);
            writes.push(Write::Put(
                record_key(&serial_hex, now, header.epoch, header.counter),
                records::encode(&StoredRecord {
                    product_id,
                    epoch: header.epoch,
                    counter: header.counter,
                    kind: opened.kind as u8,
                    body_hex: hex::encode(&buf[opened.body]),
                    received_at_ms: now,
                    source: source.to_owned(),
                    wire_len: raw.len() as u32,
                }),
            ));
            return Ok(Ok(()));
        }
        Ok(Err(last))
    }

    /// Records of one device, oldest first (the newest `limit` when limited).
    pub async fn query(&self, req: &v1::QueryRecordsRequest) -> Result<Vec<v1::DataRecord>> {
        let serial = parse_serial(&req.serial)?;
        let prefix = record_prefix(&hex::encode(serial));
        let mut out = Vec::new();
        for (key, v) in self.coordinator.store.list(&prefix).await? {
            let r: StoredRecord = records::decode(&key, &v.value)?;
            if (req.from_ms != 0 && r.received_at_ms < req.from_ms)
                || (req.to_ms != 0 && r.received_at_ms >= req.to_ms)
            {
                continue;
            }
            out.push(v1::DataRecord {
                serial: serial.to_vec(),
                product_id: r.product_id,
                epoch: r.epoch,
                counter: r.counter,
                kind: u32::from(r.kind),
                body: hex::decode(&r.body_hex).unwrap_or_default(),
                received_at_ms: r.received_at_ms,
                source: r.source,
                wire_len: r.wire_len,
            });
        }
        if req.limit != 0 && out.len() > req.limit as usize {
            out.drain(..out.len() - req.limit as usize);
        }
        Ok(out)
    }
}

/// Text for a refusal code.
pub fn reason(code: u32) -> String {
    ErrorCode::from_u32(code).map_or_else(|| format!("code {code:#06x}"), |c| c.to_string())
}

#[cfg(test)]
mod tests;
