//! The typed layer over [`KvStore`]: what every flow reads and writes instead of raw keys and
//! bytes.
//!
//! - A [`Record`] kind names its key prefix once (`leases/`, `devices/`, …) and how its key is
//!   written ([`KeyPart`], implemented by the typed ids of [`crate::ids`]).
//! - [`Db`] reads records ([`Stored`]: the record, its key and revision) and commits [`Txn`]s:
//!   guards and writes over records of any kinds, applied all or nothing.
//! - A stored value that does not decode is [`CoordinatorError::CorruptRecord`] naming its key,
//!   never a default; byte fields are hex in JSON through [`hex`], prost enums numbers through
//!   [`proto_enum`].
//! - [`retry`] runs an optimistic transaction again while other writers win the race.
//!
//! Each flow defines its own record kinds beside its code (`provisioning/leases.rs` has
//! `LeaseRecord`, …); this module knows none of them.

pub mod cache;
pub mod hex;
pub mod proto_enum;
pub mod retry;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{CoordinatorError, Result};
use crate::metrics::CommitOutcome;
use crate::store::{Guard, KvStore, Outcome, Write};

pub use cache::Cache;
pub use retry::{Attempt, CasRetry};

/// Something that can be written into a key (after the record kind's prefix).
pub trait KeyPart {
    /// Appends this part to `out` (which already holds the prefix and any earlier parts).
    fn write_key(&self, out: &mut String);
}

impl KeyPart for str {
    fn write_key(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

/// Composite keys: parts joined by `/`.
impl<A: KeyPart, B: KeyPart> KeyPart for (A, B) {
    fn write_key(&self, out: &mut String) {
        self.0.write_key(out);
        out.push('/');
        self.1.write_key(out);
    }
}

/// One kind of stored record: where its keys live and how its value is encoded.
pub trait Record: Sized {
    /// Every key of this kind starts with this (e.g. `leases/`); no other kind's prefix starts
    /// with it.
    const PREFIX: &'static str;
    /// What follows the prefix.
    type Key: KeyPart + ?Sized;
    /// The value as stored.
    fn encode(&self) -> Vec<u8>;
    /// Why the bytes are not a record of this kind, if they are not.
    fn decode(bytes: &[u8]) -> Result<Self, String>;

    /// The full key of the record named `key`.
    fn key_of(key: &Self::Key) -> String {
        let mut out = String::from(Self::PREFIX);
        key.write_key(&mut out);
        out
    }
}

/// Records stored as JSON (all of them but raw blobs): implementing this implements [`Record`].
pub trait JsonRecord: Serialize + DeserializeOwned {
    /// Every key of this kind starts with this; no other kind's prefix starts with it.
    const PREFIX: &'static str;
    /// What follows the prefix.
    type Key: KeyPart + ?Sized;
}

impl<T: JsonRecord> Record for T {
    const PREFIX: &'static str = <T as JsonRecord>::PREFIX;
    type Key = <T as JsonRecord>::Key;

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialize")
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// A record as read, with what a guard on it needs.
#[derive(Clone, Debug)]
pub struct Stored<R> {
    /// The decoded record.
    pub record: R,
    /// The full key it was read from.
    pub key: String,
    /// The store revision of its last write, for [`Txn::unchanged`].
    pub revision: i64,
}

/// The records of one kind under a key prefix (all of them, or those under one key part).
pub struct Scope<R> {
    prefix: String,
    _kind: PhantomData<R>,
}

impl<R: Record> Scope<R> {
    /// Every record of the kind.
    pub fn all() -> Self {
        Self {
            prefix: R::PREFIX.to_owned(),
            _kind: PhantomData,
        }
    }

    /// The records whose key starts with `part` and a `/`.
    pub fn under(part: &(impl KeyPart + ?Sized)) -> Self {
        let mut prefix = String::from(R::PREFIX);
        part.write_key(&mut prefix);
        prefix.push('/');
        Self {
            prefix,
            _kind: PhantomData,
        }
    }
}

/// The store, read and written in records.
#[derive(Clone)]
pub struct Db {
    store: Arc<dyn KvStore>,
}

fn decode<R: Record>(key: String, value: &[u8], revision: i64) -> Result<Stored<R>> {
    match R::decode(value) {
        Ok(record) => Ok(Stored {
            record,
            key,
            revision,
        }),
        Err(reason) => Err(CoordinatorError::CorruptRecord { key, reason }),
    }
}

impl Db {
    /// Typed records over `store`.
    pub fn new(store: Arc<dyn KvStore>) -> Self {
        Self { store }
    }

    /// The raw store underneath (for tools and tests; flows use typed records).
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// The record named `key`, if stored; `CorruptRecord` if its bytes do not decode.
    pub async fn get<R: Record>(&self, key: &R::Key) -> Result<Option<Stored<R>>> {
        let key = R::key_of(key);
        match self.store.get(&key).await? {
            Some(v) => decode(key, &v.value, v.revision).map(Some),
            None => Ok(None),
        }
    }

    /// `stored`'s record as the store holds it now (`None` if it was deleted).
    pub async fn reread<R: Record>(&self, stored: &Stored<R>) -> Result<Option<Stored<R>>> {
        match self.store.get(&stored.key).await? {
            Some(v) => decode(stored.key.clone(), &v.value, v.revision).map(Some),
            None => Ok(None),
        }
    }

    /// The records of `scope` in key order; the first that does not decode fails the call.
    pub async fn list<R: Record>(&self, scope: Scope<R>) -> Result<Vec<Stored<R>>> {
        self.store
            .list(&scope.prefix)
            .await?
            .into_iter()
            .map(|(key, v)| decode(key, &v.value, v.revision))
            .collect()
    }

    /// How many records `scope` holds (their values are not decoded).
    pub async fn count<R: Record>(&self, scope: Scope<R>) -> Result<usize> {
        Ok(self.store.list(&scope.prefix).await?.len())
    }

    /// Applies `txn` if all its guards hold: `Ok(false)` (nothing written) if one does not.
    pub async fn commit(&self, txn: Txn) -> Result<bool> {
        let started = Instant::now();
        let result = self.store.commit(txn.guards, txn.writes).await;
        let outcome = match &result {
            Ok(true) => CommitOutcome::Committed,
            Ok(false) => CommitOutcome::Refused,
            Err(_) => CommitOutcome::Failed,
        };
        crate::metrics::store_commit(outcome, started.elapsed().as_secs_f64());
        Ok(result?)
    }

    /// Applies `txn` in one round trip that answers with the revision the written records now
    /// have, or, if a guard did not hold, with the records of `read_on_refusal` as stored now
    /// ([`Refusal::take`] decodes them): an optimistic caller that guarded cached records
    /// learns the fresh ones without another read.
    pub async fn transact(&self, txn: Txn, read_on_refusal: &[String]) -> Result<Transacted> {
        let started = Instant::now();
        let result = self
            .store
            .transact(txn.guards, txn.writes, read_on_refusal.to_vec())
            .await;
        let outcome = match &result {
            Ok(Outcome::Committed { .. }) => CommitOutcome::Committed,
            Ok(Outcome::Refused { .. }) => CommitOutcome::Refused,
            Err(_) => CommitOutcome::Failed,
        };
        crate::metrics::store_commit(outcome, started.elapsed().as_secs_f64());
        match result? {
            Outcome::Committed { revision } => Ok(Transacted::Committed { revision }),
            Outcome::Refused { current } => Ok(Transacted::Refused(Refusal {
                current: read_on_refusal.iter().cloned().zip(current).collect(),
            })),
        }
    }
}

/// What [`Db::transact`] came to.
#[derive(Debug)]
pub enum Transacted {
    /// Applied: every record written now has this revision.
    Committed {
        /// The store revision of the transaction.
        revision: i64,
    },
    /// A guard did not hold; nothing was written.
    Refused(Refusal),
}

/// The records read back, in the same round trip, when a transaction was refused.
#[derive(Debug)]
pub struct Refusal {
    current: Vec<(String, Option<crate::store::Versioned>)>,
}

impl Refusal {
    /// The record stored now under `key` (one of the keys asked for on refusal; `None` if it
    /// is absent or was not asked for); `CorruptRecord` if it does not decode.
    pub fn take<R: Record>(&self, key: &str) -> Result<Option<Stored<R>>> {
        match self.current.iter().find(|(k, _)| k == key) {
            Some((key, Some(v))) => decode(key.clone(), &v.value, v.revision).map(Some),
            _ => Ok(None),
        }
    }

    /// Whether a record is stored now under `key` (asked for on refusal).
    pub fn present(&self, key: &str) -> bool {
        self.current.iter().any(|(k, v)| k == key && v.is_some())
    }
}

impl<R> Stored<R> {
    /// `record` as just written under `key` by a transaction committed at `revision`.
    pub fn written(key: String, record: R, revision: i64) -> Self {
        Self {
            record,
            key,
            revision,
        }
    }
}

/// Guards and writes over records, committed together by [`Db::commit`].
#[derive(Default)]
#[must_use = "a transaction does nothing until committed"]
pub struct Txn {
    guards: Vec<Guard>,
    writes: Vec<Write>,
}

impl Txn {
    /// An empty transaction: no guards, no writes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires that no record is stored under `key`.
    pub fn absent<R: Record>(mut self, key: &R::Key) -> Self {
        self.guards.push(Guard::Absent(R::key_of(key)));
        self
    }

    /// Requires that `stored` is still what the store holds (nobody wrote it since it was read).
    pub fn unchanged<R>(mut self, stored: &Stored<R>) -> Self {
        self.guards
            .push(Guard::Revision(stored.key.clone(), stored.revision));
        self
    }

    /// Writes `record` under `key` (created, or overwritten).
    pub fn put<R: Record>(mut self, key: &R::Key, record: &R) -> Self {
        self.writes
            .push(Write::Put(R::key_of(key), record.encode()));
        self
    }

    /// Replaces a record read before (under the key it was read from).
    pub fn replace<R: Record>(mut self, stored: &Stored<R>, record: &R) -> Self {
        self.writes
            .push(Write::Put(stored.key.clone(), record.encode()));
        self
    }

    /// Deletes a record read before.
    pub fn delete<R>(mut self, stored: &Stored<R>) -> Self {
        self.writes.push(Write::Delete(stored.key.clone()));
        self
    }

    /// Whether it has neither guards nor writes (committing it would do nothing).
    pub fn is_empty(&self) -> bool {
        self.guards.is_empty() && self.writes.is_empty()
    }
}
