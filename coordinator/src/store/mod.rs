//! Storage: one small transactional key-value interface ([`KvStore`]) with two backends.
//!
//! - [`etcd::EtcdStore`] for production: many coordinator replicas share one etcd cluster.
//! - [`embedded::EmbeddedStore`] for a single machine: an append-only, checksummed, fsynced log
//!   replayed into memory at start.
//!
//! Everything the coordinator keeps exact (quotas, leases, the registry) is written through
//! [`KvStore::commit`]: a compare-and-swap transaction over several keys that either applies all
//! its writes or none. Both backends pass the same contract suite (`tests/store_contract.rs`).
//!
//! Each backend also offers a leader election among the processes that share it
//! ([`KvStore::election`]): etcd's own election API, or a local one for the embedded store
//! (one process at a time uses it). Nothing the coordinator keeps exact depends on it.

pub mod embedded;
pub mod etcd;
mod etcd_batch;
mod etcd_election;

use std::time::Duration;

use async_trait::async_trait;

/// A stored value with the revision of its last write (etcd's `mod_revision`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The bytes stored.
    pub value: Vec<u8>,
    /// The store's revision of the last write to this key.
    pub revision: i64,
}

/// A condition a transaction requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The key does not exist.
    Absent(String),
    /// The key exists and was last written at this revision.
    Revision(String, i64),
}

/// A write a transaction applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Sets a key to a value.
    Put(String, Vec<u8>),
    /// Removes a key (nothing if it does not exist).
    Delete(String),
}

/// What a transaction came to ([`KvStore::transact`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every guard held and every write was applied; each key written now has `revision`
    /// (etcd's, or the embedded store's, revision of this transaction).
    Committed {
        /// The store revision of this transaction.
        revision: i64,
    },
    /// A guard did not hold and nothing was written. `current` holds the keys the caller asked
    /// to see on refusal, in the order asked, as the store holds them now (read in the same
    /// round trip, at the revision that refused the guard).
    Refused {
        /// The keys asked for, as stored now (`None`: absent).
        current: Vec<Option<Versioned>>,
    },
}

impl Outcome {
    /// Whether the writes were applied.
    pub fn committed(&self) -> bool {
        matches!(self, Self::Committed { .. })
    }
}

/// Why the store failed (not: why a guard did not hold — that is `Ok(false)`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// etcd failed or could not be reached.
    #[error("etcd is unreachable or refused the request: {0}")]
    Etcd(Box<etcd_client::Error>),
    /// The embedded store's file could not be read or written.
    #[error("the store file could not be read or written: {0}")]
    Io(#[from] std::io::Error),
    /// The embedded store's file holds something this version cannot read.
    #[error("the store holds a record this coordinator cannot read: {0}")]
    Corrupt(String),
}

impl From<etcd_client::Error> for StoreError {
    fn from(error: etcd_client::Error) -> Self {
        Self::Etcd(Box::new(error))
    }
}

/// The transactional key-value interface both backends implement.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Reads every key starting with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError>;
    /// Applies `writes` atomically if every guard holds; `Ok(false)` (and nothing written) if
    /// one does not. Once `Ok(true)` is returned the writes survive a crash.
    async fn commit(&self, guards: Vec<Guard>, writes: Vec<Write>) -> Result<bool, StoreError> {
        Ok(self.transact(guards, writes, Vec::new()).await?.committed())
    }
    /// [`Self::commit`] in one round trip that also answers with the new revision, or, when a
    /// guard does not hold, with the current values of `read_on_refusal` (so an optimistic
    /// caller that guarded a cached record learns the fresh one without another read).
    async fn transact(
        &self,
        guards: Vec<Guard>,
        writes: Vec<Write>,
        read_on_refusal: Vec<String>,
    ) -> Result<Outcome, StoreError>;
    /// A short description for logs ("etcd http://…", "embedded /var/lib/…").
    fn describe(&self) -> String;
    /// The election `name` among the processes sharing this store, entered as `candidate`.
    /// A leader that stops renewing (it crashed, or lost the store) loses leadership within
    /// about `ttl`.
    fn election(&self, name: &str, candidate: &str, ttl: Duration) -> Box<dyn Election>;
}

/// One candidate's seat in an election.
#[async_trait]
pub trait Election: Send + Sync {
    /// Waits until this candidate leads. At most one candidate of the election leads at a time
    /// (up to the store's lease expiry after a leader is cut off).
    async fn campaign(&self) -> Result<Box<dyn Leadership>, StoreError>;
}

/// Leadership held by this process, until lost or given up.
#[async_trait]
pub trait Leadership: Send {
    /// Resolves, with the reason, when leadership is lost (the store's lease expired or could
    /// not be renewed, or another candidate was elected).
    async fn lost(&mut self) -> String;
    /// Gives leadership up now, so another candidate takes over without waiting for expiry.
    async fn resign(self: Box<Self>);
}
