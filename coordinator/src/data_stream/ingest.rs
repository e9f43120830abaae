//! The ingest path shared by the gRPC service and the UDP listener: a batch of records is
//! verified in memory against the devices' windows and committed in one transaction guarded
//! by the revisions of the windows it read, so replicas (and concurrent batches of one
//! replica: there is no lock across store calls) cannot accept one counter twice. Every
//! refusal is counted by reason ([`IngestStats`]).
//!
//! Built to take a flood ([`super::limits`]): a record from a source over its rate limit is
//! dropped unread; a device id or handle is found through the index (`super::index`, one prefix
//! read), an unknown one is remembered as unknown for a while, and lookups of ids not seen before
//! share one budget per second, so a flood of made-up ids from many addresses costs the store
//! a bounded number of reads (beyond it they are refused as unknown, unread). A record is
//! authenticated before its device's window is read: device keys are kept in memory with a
//! bound and a stream key costs one HKDF, so a forged record for a real device costs no store
//! read; only stream keys of records that authenticated are cached. A v2 record carries only its
//! epoch's low bits: they are completed from the device's current epoch as this replica last saw
//! it (kept in memory a while, so a forged v2 record costs no store read either), or from its
//! window read from the store.
//!
//! A record that authenticates but cannot come from the device whose records were accepted (an
//! accepted counter with other bytes, a counter after its epoch's rotation record) is refused as
//! [`ErrorCode::DataDiverged`] and reported as clone evidence after the batch
//! ([`CloneEvidence`]: once per device and signal).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::data_stream::{self, DeviceRef, Direction, Header, RecordKind};
use flashgate_protocol::ErrorCode;
use zeroize::Zeroizing;

use super::down::{DownQueue, Report};
use super::index::DeviceIdIndex;
use super::limits::{BoundedMap, IngestLimits, RateLimiter, TokenBucket};
use super::records::{record_digest, DataRecordEntry, EntryKey, WindowRecord};
use crate::audit::AuditLog;
use crate::error::{CoordinatorError as E, Result};
use crate::genuineness::evidence::CloneEvidence;
use crate::ids::{ProductId, Serial};
use crate::provisioning::registry::CloneSignal;
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

/// Registered devices by data-stream id or handle (several may share one).
type Directory = BoundedMap<DeviceRef, Vec<(ProductId, Serial)>>;
/// Stream keys by (serial, epoch).
type KeyCache = BoundedMap<(Serial, u32), Zeroizing<[u8; 32]>>;

/// A device's window as loaded for one batch.
struct Loaded {
    record: WindowRecord,
    stored: Option<Stored<WindowRecord>>,
    dirty: bool,
}

impl Loaded {
    /// The oldest epoch the device's window holds open: what a v2 record's epoch bits are
    /// completed from (`None`: nothing of it accepted yet).
    fn oldest_open_epoch(&self) -> Option<u32> {
        let r = &self.record;
        (self.stored.is_some() || self.dirty)
            .then(|| r.previous.as_ref().map_or(r.current.epoch, |p| p.epoch))
    }
}

/// One record being checked.
struct Received<'a> {
    raw: &'a [u8],
    header: Header,
    source: &'a str,
    now: i64,
}

/// A batch verified in memory: its verdicts, what committing it writes, and the clone
/// evidence it found.
struct Verified {
    verdicts: Vec<Verdict>,
    txn: Txn,
    evidence: Vec<Sighting>,
    accepted: Vec<Sender>,
}

/// The device an accepted record came from, and the down-link report it carries, if any.
#[derive(Clone, Debug)]
pub struct Sender {
    /// Its product.
    pub product_id: ProductId,
    /// Its serial.
    pub serial: Serial,
    /// `down-ack …` or `down-refused …` ([`Report::parse`]).
    pub report: Option<Report>,
}

/// Clone evidence found in a record: written after the batch (see [`CloneEvidence`]).
struct Sighting {
    product_id: ProductId,
    serial: Serial,
    signal: CloneSignal,
    detail: String,
}

/// What checking one record against one device gives.
enum Checked {
    Accepted(EntryKey, DataRecordEntry),
    /// Authenticated, but a second device seems to share the key.
    Diverged(Sighting),
    Refused(ErrorCode),
}

/// Verifies, de-duplicates and stores sealed data records from devices, batch by batch,
/// caching the device directory and stream keys of this replica.
pub struct DataIngest {
    db: Db,
    down: DownQueue,
    registry: Registry,
    evidence: Arc<CloneEvidence>,
    /// Device id or handle → registered (product, serial) that have it.
    directory: std::sync::Mutex<Directory>,
    /// Device ids and handles no registered device has, for a while.
    unknown: std::sync::Mutex<BoundedMap<DeviceRef, ()>>,
    /// Ids and handles whose cached devices were re-read from the index lately.
    refreshed: std::sync::Mutex<BoundedMap<DeviceRef, ()>>,
    /// Serial → its oldest open epoch as last read or accepted here (`None`: no window stored
    /// yet): what a v2 record's epoch bits are completed from without a store read.
    epochs: std::sync::Mutex<BoundedMap<Serial, Option<u32>>>,
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
    /// An ingest over `db`, finding devices and their keys in `registry`, writing clone
    /// evidence through `evidence`, within `limits`.
    pub fn new(
        db: Db,
        registry: Registry,
        evidence: Arc<CloneEvidence>,
        audit: AuditLog,
        limits: IngestLimits,
    ) -> Self {
        Self {
            down: DownQueue::new(db.clone(), registry.clone(), audit),
            db,
            registry,
            evidence,
            directory: std::sync::Mutex::new(BoundedMap::new(limits.directory_entries, None)),
            unknown: std::sync::Mutex::new(BoundedMap::new(
                limits.unknown_entries,
                Some(limits.unknown_ttl),
            )),
            refreshed: std::sync::Mutex::new(BoundedMap::new(
                limits.unknown_entries,
                Some(limits.unknown_ttl),
            )),
            keys: std::sync::Mutex::new(BoundedMap::new(limits.key_entries, None)),
            epochs: std::sync::Mutex::new(BoundedMap::new(
                limits.device_key_entries,
                Some(limits.epoch_hint_ttl),
            )),
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

    /// The down-link's queue (messages to devices, their delivery state).
    pub fn down(&self) -> &DownQueue {
        &self.down
    }

    /// Accepted and refused counts since this ingest was made.
    pub fn stats(&self) -> IngestStats {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Counts `n` records refused before they reached [`Self::ingest_from`] (the UDP
    /// receiver's queue was full) or whose batch the store did not take.
    pub fn count_refused(&self, code: ErrorCode, n: u64) {
        *self
            .stats
            .lock()
            .expect("stats lock")
            .rejected
            .entry(code as u32)
            .or_default() += n;
    }

    fn count(&self, verdict: &Verdict) {
        let mut stats = self.stats.lock().expect("stats lock");
        match verdict {
            Ok(()) => stats.accepted += 1,
            Err(code) => *stats.rejected.entry(*code as u32).or_default() += 1,
        }
    }

    async fn candidates(&self, id: &DeviceRef) -> Result<Vec<(ProductId, Serial)>> {
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
        Ok(self.ingest_senders(peer, records, source).await?.0)
    }

    /// [`Self::ingest_from`], also returning who sent the accepted records (the TCP port
    /// learns which device is on a connection from it). Down-link reports in accepted records
    /// move their messages' delivery state, whatever link carried them.
    pub async fn ingest_senders(
        &self,
        peer: Option<IpAddr>,
        records: &[Vec<u8>],
        source: &str,
    ) -> Result<(Vec<Verdict>, Vec<Sender>)> {
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
        let (mut verdicts, evidence, accepted) = CasRetry::new("a device's data window")
            .attempts(8)
            .run(|| async {
                let batch = self.verify_batch(records, source).await?;
                let found = (batch.verdicts, batch.evidence, batch.accepted);
                if batch.txn.is_empty() {
                    return Ok(Attempt::Done(found));
                }
                Ok(Attempt::committed(self.db.commit(batch.txn).await?, found))
            })
            .await?;
        for s in evidence {
            self.evidence
                .record(s.product_id, s.serial, s.signal, &s.detail)
                .await?;
        }
        for sender in &accepted {
            if let Some(report) = &sender.report {
                // The record is stored either way; a report that names no queued message
                // (another coordinator's, or one deleted) changes nothing.
                if let Err(error) = self.down.on_report(sender.serial, report).await {
                    tracing::warn!(serial = %sender.serial, error = %error, "down-link report not recorded");
                }
            }
        }
        verdicts.extend(dropped.iter().map(|_| Err(ErrorCode::DataRateLimited)));
        for v in &verdicts {
            self.count(v);
        }
        Ok((verdicts, accepted))
    }

    async fn verify_batch(&self, records: &[Vec<u8>], source: &str) -> Result<Verified> {
        let now = now_ms();
        let mut windows: HashMap<Serial, Loaded> = HashMap::new();
        let mut verdicts = Vec::with_capacity(records.len());
        let mut evidence = Vec::new();
        let mut accepted = Vec::new();
        let mut txn = Txn::new();
        for raw in records {
            let verdict = match self.verify_one(raw, source, now, &mut windows).await? {
                Checked::Accepted(key, entry) => {
                    accepted.push(Sender {
                        product_id: entry.product_id,
                        serial: key.serial,
                        report: (entry.kind == RecordKind::Telemetry as u8)
                            .then(|| Report::parse(&entry.body))
                            .flatten(),
                    });
                    txn = txn.put(&key, &entry);
                    Ok(())
                }
                Checked::Diverged(sighting) => {
                    evidence.push(sighting);
                    Err(ErrorCode::DataDiverged)
                }
                Checked::Refused(code) => {
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
        Ok(Verified {
            verdicts,
            txn,
            evidence,
            accepted,
        })
    }

    /// The device's window as stored (a first record creates it: see [`Self::verify_one`]).
    async fn load_window(&self, product_id: ProductId, serial: Serial) -> Result<Loaded> {
        let loaded = match self.db.get::<WindowRecord>(&serial).await? {
            Some(stored) => Loaded {
                record: stored.record.clone(),
                stored: Some(stored),
                dirty: false,
            },
            None => Loaded {
                record: WindowRecord::new(product_id, 0),
                stored: None,
                dirty: false,
            },
        };
        self.remember_epoch(serial, &loaded);
        Ok(loaded)
    }

    fn remember_epoch(&self, serial: Serial, loaded: &Loaded) {
        self.epochs
            .lock()
            .expect("epochs lock")
            .insert(serial, loaded.oldest_open_epoch());
    }

    /// The full epoch of a record from `serial`: v1 carries it; v2's low bits are completed from
    /// the window of this batch, the window this replica last saw, or the stored window (read
    /// once, then kept for the batch). `None`: past the last epoch.
    async fn epoch_of(
        &self,
        header: &Header,
        product_id: ProductId,
        serial: Serial,
        windows: &mut HashMap<Serial, Loaded>,
    ) -> Result<Option<u32>> {
        if !header.needs_current_epoch() {
            return Ok(header.epoch(None));
        }
        let oldest = match windows.get(&serial) {
            Some(loaded) => loaded.oldest_open_epoch(),
            None => {
                let hint = self.epochs.lock().expect("epochs lock").get(&serial);
                match hint {
                    Some(current) => current,
                    None => {
                        let loaded = self.load_window(product_id, serial).await?;
                        let oldest = loaded.oldest_open_epoch();
                        windows.insert(serial, loaded);
                        oldest
                    }
                }
            }
        };
        Ok(header.epoch(oldest))
    }

    /// Checks one record against the windows (updated in `windows` if it authenticates); the
    /// entry to store, or why it is refused.
    async fn verify_one(
        &self,
        raw: &[u8],
        source: &str,
        now: i64,
        windows: &mut HashMap<Serial, Loaded>,
    ) -> Result<Checked> {
        let header = match Header::decode(raw) {
            Ok((h, _)) => h,
            Err(code) => return Ok(Checked::Refused(code)),
        };
        let device = header.device();
        let candidates = self.candidates(&device).await?;
        if candidates.is_empty() {
            return Ok(Checked::Refused(ErrorCode::DataUnknownDevice));
        }
        let record = Received {
            raw,
            header,
            source,
            now,
        };
        let mut last = ErrorCode::DataForged;
        // Several devices may share an id or handle: the one whose key opens it is the sender.
        for &(product_id, serial) in &candidates {
            match self
                .try_device(&record, product_id, serial, windows)
                .await?
            {
                Checked::Refused(code) => last = code,
                found => return Ok(found),
            }
        }
        // Opened by none of the devices cached under its id: one registered since (on another
        // replica) may share it.
        if last == ErrorCode::DataForged {
            for (product_id, serial) in self.newcomers(&device, &candidates).await? {
                match self
                    .try_device(&record, product_id, serial, windows)
                    .await?
                {
                    Checked::Refused(code) => last = code,
                    found => return Ok(found),
                }
            }
        }
        Ok(Checked::Refused(last))
    }

    /// Devices under `device` in the index that `cached` lacks: read at most once per id per
    /// `unknown_ttl` and within the lookup budget, so forged records cost the store a bounded
    /// number of reads.
    async fn newcomers(
        &self,
        device: &DeviceRef,
        cached: &[(ProductId, Serial)],
    ) -> Result<Vec<(ProductId, Serial)>> {
        if self
            .refreshed
            .lock()
            .expect("refreshed lock")
            .get(device)
            .is_some()
            || !self.lookups.lock().expect("lookups lock").take()
        {
            return Ok(Vec::new());
        }
        self.refreshed
            .lock()
            .expect("refreshed lock")
            .insert(*device, ());
        let found = DeviceIdIndex::lookup(&self.db, device).await?;
        self.directory
            .lock()
            .expect("directory lock")
            .insert(*device, found.clone());
        Ok(found.into_iter().filter(|d| !cached.contains(d)).collect())
    }

    /// Checks `record` as sent by `serial`.
    async fn try_device(
        &self,
        record: &Received<'_>,
        product_id: ProductId,
        serial: Serial,
        windows: &mut HashMap<Serial, Loaded>,
    ) -> Result<Checked> {
        let header = &record.header;
        let counter = header.counter();
        let Some(epoch) = self.epoch_of(header, product_id, serial, windows).await? else {
            return Ok(Checked::Refused(ErrorCode::DataStaleEpoch));
        };
        // Authenticated first: a forged record costs no store read.
        let key = self.key(product_id, serial, epoch).await?;
        let mut buf = record.raw.to_vec();
        let opened = match data_stream::open_in_place(&key, &mut buf) {
            Ok(o) => o,
            Err(code) => return Ok(Checked::Refused(code)),
        };
        if let Entry::Vacant(slot) = windows.entry(serial) {
            slot.insert(self.load_window(product_id, serial).await?);
        }
        let loaded = windows.get_mut(&serial).expect("inserted above");
        // Work on a copy: nothing changes unless the record is fresh. A device's first
        // record opens its window at its own epoch.
        let mut state = match loaded.oldest_open_epoch() {
            Some(_) => loaded.record.clone(),
            None => WindowRecord::new(product_id, epoch),
        };
        let slot = match state.slot(epoch) {
            Ok(s) => s,
            Err(code) => return Ok(Checked::Refused(code)),
        };
        // It authenticated, so the device key sealed it: if it cannot come from the device
        // whose records were accepted, a second device holds the key.
        let digest = record_digest(record.raw);
        if let Some(closed_at) = slot.closed_at.filter(|c| counter > *c) {
            return Ok(Checked::Diverged(Sighting {
                product_id,
                serial,
                signal: CloneSignal::DataEpochForked,
                detail: format!(
                    "record {counter} of epoch {epoch} after the rotation record {closed_at} closed it"
                ),
            }));
        }
        let mut window = slot.window();
        if let Err(code) = window.check(counter) {
            if slot.digest_of(counter).is_some_and(|kept| kept != digest) {
                return Ok(Checked::Diverged(Sighting {
                    product_id,
                    serial,
                    signal: CloneSignal::DataCounterReused,
                    detail: format!(
                        "two different records with epoch {epoch}, counter {counter} (sources: {})",
                        record.source
                    ),
                }));
            }
            return Ok(Checked::Refused(code));
        }
        self.remember_key(serial, epoch, key);
        window
            .accept(counter)
            .expect("checked above, nothing accepted in between");
        slot.set(window);
        slot.keep_digest(counter, digest);
        if opened.kind == RecordKind::Rotation {
            // The device's last record of this epoch.
            slot.closed_at = Some(counter);
            let body = &buf[opened.body.clone()];
            let next = u32::from_le_bytes(body.try_into().expect("rotation body is 4 bytes"));
            if next == epoch.wrapping_add(1) && state.current.epoch == epoch {
                state.open_epoch(next);
            }
        }
        loaded.record = state;
        loaded.dirty = true;
        self.remember_epoch(serial, loaded);
        let entry_key = EntryKey {
            serial,
            received_ms: record.now,
            epoch,
            counter,
        };
        let entry = DataRecordEntry {
            product_id,
            epoch,
            counter,
            kind: opened.kind as u8,
            body: buf[opened.body].to_vec(),
            received_at_ms: record.now,
            source: record.source.to_owned(),
            wire_len: record.raw.len() as u32,
        };
        Ok(Checked::Accepted(entry_key, entry))
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
