//! The ingest path shared by the gRPC service and the UDP listener: a batch of records is
//! verified in memory against the devices' windows and committed in one transaction guarded
//! by the revisions of the windows it read, so replicas (and concurrent batches of one
//! replica: there is no lock across store calls) cannot accept one counter twice. Every
//! refusal is counted by reason ([`IngestStats`]).
//!
//! Built to take a flood ([`super::limits`]): a record from a source over its rate limit is
//! dropped unread; a device id is found through the index (`super::index`, one prefix read),
//! an unknown one is remembered as unknown for a while, and lookups of ids not seen before
//! share one budget per second, so a flood of made-up ids from many addresses costs the store
//! a bounded number of reads (beyond it they are refused as unknown, unread). A record is
//! authenticated before its device's window is read: device keys are kept in memory with a
//! bound and a stream key costs one HKDF, so a forged record for a real device costs no store
//! read; only stream keys of records that authenticated are cached.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::data_stream::{self, Direction, RecordHeader, RecordKind, DEVICE_ID_LEN};
use flashgate_protocol::ErrorCode;
use zeroize::Zeroizing;

use super::index::DeviceIdIndex;
use super::limits::{BoundedMap, IngestLimits, RateLimiter, TokenBucket};
use super::records::{DataRecordEntry, EntryKey, WindowRecord};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{ProductId, Serial};
use crate::provisioning::Registry;
use crate::repository::{Attempt, CasRetry, Db, Scope, Stored, Txn};

/// Largest batch one `IngestRecords` call may carry.
pub const MAX_BATCH: usize = 1024;

/// One verdict per record: accepted, or refused with its code.
pub type Verdict = std::result::Result<(), ErrorCode>;

/// Accepted records and refusals by reason since start.
#[derive(Clone, Debug, Default)]
pub struct IngestStats {
    /// Records accepted (opened, fresh, from a registered device).
    pub accepted: u64,
    /// Records refused, counted by their [`ErrorCode`] number.
    pub rejected: BTreeMap<u32, u64>,
}

/// Registered devices by data-stream id (several may share the 8-byte prefix); an empty list
/// is an id known to be unknown.
type Directory = BoundedMap<[u8; DEVICE_ID_LEN], Vec<(ProductId, Serial)>>;
/// Stream keys by (serial, epoch).
type KeyCache = BoundedMap<(Serial, u32), Zeroizing<[u8; 32]>>;

/// A device's window as loaded for one batch.
struct Loaded {
    record: WindowRecord,
    stored: Option<Stored<WindowRecord>>,
    dirty: bool,
}

/// A batch verified in memory: its verdicts and what committing it writes.
struct Verified {
    verdicts: Vec<Verdict>,
    txn: Txn,
}

/// Verifies, de-duplicates and stores sealed data records from devices, batch by batch,
/// caching the device directory and stream keys of this replica.
pub struct DataIngest {
    db: Db,
    registry: Registry,
    /// Device id → registered (product, serial) with that prefix.
    directory: std::sync::Mutex<Directory>,
    /// Device ids no registered device has, for a while.
    unknown: std::sync::Mutex<BoundedMap<[u8; DEVICE_ID_LEN], ()>>,
    /// (serial, epoch) → stream key, of records that authenticated.
    keys: std::sync::Mutex<KeyCache>,
    /// Serial → device key, opened from the registry.
    device_keys: std::sync::Mutex<BoundedMap<Serial, Zeroizing<[u8; 32]>>>,
    limiter: std::sync::Mutex<RateLimiter>,
    /// Store lookups of device ids not seen before.
    lookups: std::sync::Mutex<TokenBucket>,
    stats: std::sync::Mutex<IngestStats>,
}

impl DataIngest {
    /// An ingest over `db`, finding devices and their keys in `registry`, within `limits`.
    pub fn new(db: Db, registry: Registry, limits: IngestLimits) -> Self {
        Self {
            db,
            registry,
            directory: std::sync::Mutex::new(BoundedMap::new(limits.directory_entries, None)),
            unknown: std::sync::Mutex::new(BoundedMap::new(
                limits.unknown_entries,
                Some(limits.unknown_ttl),
            )),
            keys: std::sync::Mutex::new(BoundedMap::new(limits.key_entries, None)),
            device_keys: std::sync::Mutex::new(BoundedMap::new(limits.device_key_entries, None)),
            limiter: std::sync::Mutex::new(RateLimiter::new(&limits)),
            lookups: std::sync::Mutex::new(TokenBucket::new(
                limits.lookups_per_sec,
                limits.lookup_burst,
            )),
            stats: Default::default(),
        }
    }

    /// Entries in the bounded caches: (device ids, unknown ids, stream keys).
    pub fn cache_sizes(&self) -> (usize, usize, usize) {
        (
            self.directory.lock().expect("directory lock").len(),
            self.unknown.lock().expect("unknown lock").len(),
            self.keys.lock().expect("keys lock").len(),
        )
    }

    /// Accepted and refused counts since this ingest was made.
    pub fn stats(&self) -> IngestStats {
        self.stats.lock().expect("stats lock").clone()
    }

    fn count(&self, verdict: &Verdict) {
        let mut stats = self.stats.lock().expect("stats lock");
        match verdict {
            Ok(()) => stats.accepted += 1,
            Err(code) => *stats.rejected.entry(*code as u32).or_default() += 1,
        }
    }

    async fn candidates(&self, id: &[u8; DEVICE_ID_LEN]) -> Result<Vec<(ProductId, Serial)>> {
        if let Some(found) = self.directory.lock().expect("directory lock").get(id) {
            return Ok(found);
        }
        if self.unknown.lock().expect("unknown lock").get(id).is_some() {
            return Ok(Vec::new());
        }
        // Over the budget the id is refused as unknown unread (and not remembered: a real
        // device is found once the flood is over).
        if !self.lookups.lock().expect("lookups lock").take() {
            return Ok(Vec::new());
        }
        let found = DeviceIdIndex::lookup(&self.db, id).await?;
        if found.is_empty() {
            self.unknown.lock().expect("unknown lock").insert(*id, ());
        } else {
            self.directory
                .lock()
                .expect("directory lock")
                .insert(*id, found.clone());
        }
        Ok(found)
    }

    /// The stream key of `serial` in `epoch`: cached, or one HKDF from the device key (itself
    /// read from the registry once per device). Not cached here: see [`Self::remember_key`].
    async fn key(
        &self,
        product_id: ProductId,
        serial: Serial,
        epoch: u32,
    ) -> Result<Zeroizing<[u8; 32]>> {
        if let Some(k) = self.keys.lock().expect("keys lock").get(&(serial, epoch)) {
            return Ok(k);
        }
        let cached = self
            .device_keys
            .lock()
            .expect("device keys lock")
            .get(&serial);
        let device_key = match cached {
            Some(k) => k,
            None => {
                let k = self.registry.device_key(product_id.0, &serial.0).await?;
                self.device_keys
                    .lock()
                    .expect("device keys lock")
                    .insert(serial, k.clone());
                k
            }
        };
        Ok(data_stream::epoch_key(&device_key, Direction::Up, epoch))
    }

    /// Caches the stream key of a record that authenticated (forged ones with made-up epochs
    /// would only churn the cache).
    fn remember_key(&self, serial: Serial, epoch: u32, key: Zeroizing<[u8; 32]>) {
        self.keys
            .lock()
            .expect("keys lock")
            .insert((serial, epoch), key);
    }

    /// Verifies and stores a batch; one verdict per record, in order. Store failures are
    /// errors of the whole call (nothing of the batch was stored).
    pub async fn ingest(&self, records: &[Vec<u8>], source: &str) -> Result<Vec<Verdict>> {
        self.ingest_from(None, records, source).await
    }

    /// [`Self::ingest`] for records sent from `peer`: those beyond the peer's rate limit are
    /// refused unread ([`ErrorCode::DataRateLimited`]).
    pub async fn ingest_from(
        &self,
        peer: Option<IpAddr>,
        records: &[Vec<u8>],
        source: &str,
    ) -> Result<Vec<Verdict>> {
        if records.len() > MAX_BATCH {
            return Err(E::InvalidArgument(format!(
                "at most {MAX_BATCH} records per call"
            )));
        }
        let admitted = match peer {
            Some(ip) => self
                .limiter
                .lock()
                .expect("limiter lock")
                .admit(ip, records.len()),
            None => records.len(),
        };
        let (records, dropped) = records.split_at(admitted);
        let mut verdicts = CasRetry::new("a device's data window")
            .attempts(8)
            .run(|| async {
                let batch = self.verify_batch(records, source).await?;
                if batch.txn.is_empty() {
                    return Ok(Attempt::Done(batch.verdicts));
                }
                Ok(Attempt::committed(
                    self.db.commit(batch.txn).await?,
                    batch.verdicts,
                ))
            })
            .await?;
        verdicts.extend(dropped.iter().map(|_| Err(ErrorCode::DataRateLimited)));
        for v in &verdicts {
            self.count(v);
        }
        Ok(verdicts)
    }

    async fn verify_batch(&self, records: &[Vec<u8>], source: &str) -> Result<Verified> {
        let now = now_ms();
        let mut windows: HashMap<Serial, Loaded> = HashMap::new();
        let mut verdicts = Vec::with_capacity(records.len());
        let mut txn = Txn::new();
        for raw in records {
            let verdict = match self.verify_one(raw, source, now, &mut windows).await? {
                Ok((key, entry)) => {
                    txn = txn.put(&key, &entry);
                    Ok(())
                }
                Err(code) => {
                    tracing::trace!(code = %code, len = raw.len(), source, "data record refused");
                    Err(code)
                }
            };
            verdicts.push(verdict);
        }
        for (serial, loaded) in windows.into_iter().filter(|(_, l)| l.dirty) {
            txn = match &loaded.stored {
                Some(stored) => txn.unchanged(stored).replace(stored, &loaded.record),
                None => txn
                    .absent::<WindowRecord>(&serial)
                    .put(&serial, &loaded.record),
            };
        }
        Ok(Verified { verdicts, txn })
    }

    async fn load_window(
        &self,
        product_id: ProductId,
        serial: Serial,
        epoch: u32,
    ) -> Result<Loaded> {
        Ok(match self.db.get::<WindowRecord>(&serial).await? {
            Some(stored) => Loaded {
                record: stored.record.clone(),
                stored: Some(stored),
                dirty: false,
            },
            None => Loaded {
                record: WindowRecord::new(product_id, epoch),
                stored: None,
                dirty: false,
            },
        })
    }

    /// Checks one record against the windows (updated in `windows` if it authenticates); the
    /// entry to store, or why it is refused.
    async fn verify_one(
        &self,
        raw: &[u8],
        source: &str,
        now: i64,
        windows: &mut HashMap<Serial, Loaded>,
    ) -> Result<std::result::Result<(EntryKey, DataRecordEntry), ErrorCode>> {
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
            // Authenticated first: a forged record costs no store read.
            let key = self.key(product_id, serial, header.epoch).await?;
            let mut buf = raw.to_vec();
            let opened = match data_stream::open_in_place(&key, &mut buf) {
                Ok(o) => o,
                Err(code) => {
                    last = code;
                    continue;
                }
            };
            if let Entry::Vacant(slot) = windows.entry(serial) {
                slot.insert(self.load_window(product_id, serial, header.epoch).await?);
            }
            let loaded = windows.get_mut(&serial).expect("inserted above");
            // Work on a copy: nothing changes unless the record is fresh.
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
            self.remember_key(serial, header.epoch, key);
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
            let entry_key = EntryKey {
                serial,
                received_ms: now,
                epoch: header.epoch,
                counter: header.counter,
            };
            let entry = DataRecordEntry {
                product_id,
                epoch: header.epoch,
                counter: header.counter,
                kind: opened.kind as u8,
                body: buf[opened.body].to_vec(),
                received_at_ms: now,
                source: source.to_owned(),
                wire_len: raw.len() as u32,
            };
            return Ok(Ok((entry_key, entry)));
        }
        Ok(Err(last))
    }

    /// Records of one device, oldest first (the newest `limit` when limited).
    pub async fn query(&self, req: &v1::QueryRecordsRequest) -> Result<Vec<v1::DataRecord>> {
        let serial = Serial::parse(&req.serial)?;
        let mut out: Vec<v1::DataRecord> = self
            .db
            .list(Scope::<DataRecordEntry>::under(&serial))
            .await?
            .iter()
            .map(|e| &e.record)
            .filter(|r| req.from_ms == 0 || r.received_at_ms >= req.from_ms)
            .filter(|r| req.to_ms == 0 || r.received_at_ms < req.to_ms)
            .map(|r| r.to_proto(serial))
            .collect();
        if req.limit != 0 && out.len() > req.limit as usize {
            out.drain(..out.len() - req.limit as usize);
        }
        Ok(out)
    }
}
