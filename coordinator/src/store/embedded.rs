//! The single-machine backend: an append-only log of committed transactions, replayed into an
//! in-memory map at start.
//!
//! Log record: `len u32 LE | crc32(payload) u32 LE | payload`, payload =
//! `revision u64 LE | count u32 LE | (op u8 (1 put, 2 delete) | key_len u32 | key | [value_len u32 |
//! value])*`. A commit is acknowledged only after its record is written and `fsync`ed, so an
//! acknowledged transaction survives a crash; a record torn by a crash fails its length or
//! checksum and is cut off at replay, so a half-written transaction is never applied. At start
//! the log is compacted (live keys rewritten to a temporary file, fsynced, renamed over the log).
//!
//! Leader election is local: one process uses the store, so leadership is a seat shared by the
//! coordinators of this process (each clone of the store), held until given up.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Election, Guard, KvStore, Leadership, Outcome, StoreError, Versioned, Write};

const LOG_FILE: &str = "flashgate.log";
const MAX_RECORD: u32 = 64 * 1024 * 1024;

struct State {
    map: BTreeMap<String, Versioned>,
    revision: i64,
    log: File,
    /// Length of the log up to the last acknowledged record.
    log_len: u64,
    /// Set when a failed write could not be rolled back: the store then refuses every commit
    /// rather than append after a torn record (replay would drop everything after it).
    broken: bool,
}

/// File-backed store in one directory; one process at a time.
#[derive(Clone)]
pub struct EmbeddedStore {
    state: Arc<Mutex<State>>,
    dir: PathBuf,
    /// One seat per election name.
    elections: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

fn encode_record(revision: i64, writes: &[Write]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&(revision as u64).to_le_bytes());
    payload.extend_from_slice(&(writes.len() as u32).to_le_bytes());
    for write in writes {
        match write {
            Write::Put(key, value) => {
                payload.push(1);
                payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
                payload.extend_from_slice(key.as_bytes());
                payload.extend_from_slice(&(value.len() as u32).to_le_bytes());
                payload.extend_from_slice(value);
            }
            Write::Delete(key) => {
                payload.push(2);
                payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
                payload.extend_from_slice(key.as_bytes());
            }
        }
    }
    let mut record = Vec::with_capacity(payload.len() + 8);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    record
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Some(head)
}

fn take_u32(buf: &mut &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(take(buf, 4)?.try_into().ok()?))
}

fn decode_payload(mut payload: &[u8]) -> Option<(i64, Vec<Write>)> {
    let buf = &mut payload;
    let revision = u64::from_le_bytes(take(buf, 8)?.try_into().ok()?) as i64;
    let count = take_u32(buf)?;
    let mut writes = Vec::new();
    for _ in 0..count {
        let op = take(buf, 1)?[0];
        let key_len = take_u32(buf)? as usize;
        let key = String::from_utf8(take(buf, key_len)?.to_vec()).ok()?;
        match op {
            1 => {
                let value_len = take_u32(buf)? as usize;
                writes.push(Write::Put(key, take(buf, value_len)?.to_vec()));
            }
            2 => writes.push(Write::Delete(key)),
            _ => return None,
        }
    }
    buf.is_empty().then_some((revision, writes))
}

fn apply(map: &mut BTreeMap<String, Versioned>, revision: i64, writes: Vec<Write>) {
    for write in writes {
        match write {
            Write::Put(key, value) => {
                map.insert(key, Versioned { value, revision });
            }
            Write::Delete(key) => {
                map.remove(&key);
            }
        }
    }
}

/// Replays `bytes`; returns the state and the length of the valid prefix.
fn replay(bytes: &[u8]) -> (BTreeMap<String, Versioned>, i64, usize) {
    let mut map = BTreeMap::new();
    let mut revision = 0;
    let mut offset = 0;
    loop {
        let mut rest = &bytes[offset..];
        let Some(len) = take_u32(&mut rest) else {
            break;
        };
        let Some(crc) = take_u32(&mut rest) else {
            break;
        };
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = take(&mut rest, len as usize) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some((rev, writes)) = decode_payload(payload) else {
            break;
        };
        apply(&mut map, rev, writes);
        revision = revision.max(rev);
        offset += 8 + len as usize;
    }
    (map, revision, offset)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, replaying and compacting its log.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(LOG_FILE);
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)?.read_to_end(&mut bytes)?;
        }
        let (map, revision, valid) = replay(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                dropped_bytes = bytes.len() - valid,
                "embedded store: cut off a torn record at the end of the log (a crash during a write; that transaction was never acknowledged)"
            );
        }
        // Compact: one record per live key at its own revision, then an empty record carrying
        // the current revision so revisions never go back.
        let tmp = dir.join(format!("{LOG_FILE}.tmp"));
        {
            let mut out = File::create(&tmp)?;
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by_key(|(_, v)| v.revision);
            let mut buf = Vec::new();
            for (key, value) in entries {
                buf.extend_from_slice(&encode_record(
                    value.revision,
                    &[Write::Put(key.clone(), value.value.clone())],
                ));
            }
            buf.extend_from_slice(&encode_record(revision, &[]));
            out.write_all(&buf)?;
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        sync_dir(&dir)?;
        let log = OpenOptions::new().append(true).open(&path)?;
        let log_len = log.metadata()?.len();
        Ok(Self {
            state: Arc::new(Mutex::new(State {
                map,
                revision,
                log,
                log_len,
                broken: false,
            })),
            dir,
            elections: Arc::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-applied (the map is changed
        // only after the log write succeeded), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit_blocking(
        &self,
        guards: Vec<Guard>,
        writes: Vec<Write>,
        read_on_refusal: Vec<String>,
    ) -> Result<Outcome, StoreError> {
        let mut state = self.lock();
        if state.broken {
            return Err(StoreError::Corrupt(
                "an earlier write failed and could not be rolled back; restart the coordinator"
                    .into(),
            ));
        }
        for guard in &guards {
            let holds = match guard {
                Guard::Absent(key) => !state.map.contains_key(key),
                Guard::Revision(key, rev) => state.map.get(key).map(|v| v.revision) == Some(*rev),
            };
            if !holds {
                let current = read_on_refusal
                    .iter()
                    .map(|key| state.map.get(key).cloned())
                    .collect();
                return Ok(Outcome::Refused { current });
            }
        }
        let revision = state.revision + 1;
        let record = encode_record(revision, &writes);
        let written = state
            .log
            .write_all(&record)
            .and_then(|()| state.log.sync_data());
        if let Err(error) = written {
            let len = state.log_len;
            if state.log.set_len(len).is_err() {
                state.broken = true;
            }
            return Err(error.into());
        }
        state.log_len += record.len() as u64;
        state.revision = revision;
        apply(&mut state.map, revision, writes);
        Ok(Outcome::Committed { revision })
    }
}

#[async_trait]
impl KvStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.lock().map.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        let state = self.lock();
        Ok(state
            .map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn transact(
        &self,
        guards: Vec<Guard>,
        writes: Vec<Write>,
        read_on_refusal: Vec<String>,
    ) -> Result<Outcome, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.commit_blocking(guards, writes, read_on_refusal))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
    }

    fn describe(&self) -> String {
        format!("embedded {}", self.dir.display())
    }

    fn election(&self, name: &str, _candidate: &str, _ttl: Duration) -> Box<dyn Election> {
        let seat = self
            .elections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(1)))
            .clone();
        Box::new(LocalElection { seat })
    }
}

struct LocalElection {
    seat: Arc<Semaphore>,
}

#[async_trait]
impl Election for LocalElection {
    async fn campaign(&self) -> Result<Box<dyn Leadership>, StoreError> {
        let permit = self
            .seat
            .clone()
            .acquire_owned()
            .await
            .expect("the seat is never closed");
        Ok(Box::new(LocalLeadership { _seat: permit }))
    }
}

/// Held until dropped or given up: nothing outside this process can take it away.
struct LocalLeadership {
    _seat: OwnedSemaphorePermit,
}

#[async_trait]
impl Leadership for LocalLeadership {
    async fn lost(&mut self) -> String {
        std::future::pending().await
    }

    async fn resign(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_stops_at_a_torn_or_corrupt_record() {
        let mut log = encode_record(1, &[Write::Put("a".into(), b"1".to_vec())]);
        let second = encode_record(2, &[Write::Put("b".into(), b"2".to_vec())]);
        let good = log.len();
        log.extend_from_slice(&second[..second.len() - 1]);
        let (map, revision, valid) = replay(&log);
        assert_eq!((map.len(), revision, valid), (1, 1, good));

        let mut flipped = encode_record(1, &[Write::Put("a".into(), b"1".to_vec())]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(replay(&flipped).2, 0);
    }
}
