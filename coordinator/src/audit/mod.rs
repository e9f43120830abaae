//! The tamper-evident audit log: every change of quota or trust, and every grant of rights, is
//! appended in the same transaction as the change itself, with who, what and when.
//!
//! The log is a set of hash chains, one per scope, each entry MAC'd (HMAC-SHA256) under a key
//! that lives in the store only sealed under the KEK ([`key`]): someone who can write the store
//! but does not hold the KEK can neither forge an entry nor re-link the chain after editing,
//! removing or reordering one ([`verify`]).
//!
//! No new serialization point: each chain's head (`seq`, `mac` of the last entry) lives in a
//! record the change's transaction already guards, so appending adds no contended key.
//!
//! | scope | head kept in | entries |
//! | --- | --- | --- |
//! | `global` | `audit/heads/global` ([`GlobalHead`]) | products, releases, stations (enrol, approve, revoke), credentials, enrolment tokens, update campaigns |
//! | `order/{id}` | the order's quota record | order created / cancelled, lease granted, lease returned / expired |
//! | `lease/{id}` | the lease record | installs registered under the lease (and, with per-chip certificates, issuance) |
//!
//! To audit a new change: read the record that holds its chain's head, then
//! `txn = audit.append(txn, &scope, &mut head, Entry::new(actor, "action", subject))?` before
//! writing that record back (with the updated head) in the same transaction. Global changes
//! use [`AuditLog::append_global`], which reads and guards the global head itself.

pub mod key;
pub mod verify;

use std::sync::Arc;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::Result;
use crate::keys::KekRing;
use crate::repository::{hex, Db, JsonRecord, KeyPart, Scope as RecordScope, Stored, Txn};

pub use key::AuditKey;
pub use verify::{verify, Verification};

/// The head of one chain: the last entry's sequence number and MAC (`seq` 0: empty chain).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Entries in the chain so far.
    pub seq: u64,
    /// The MAC of the last entry (zeros for an empty chain).
    #[serde(with = "hex")]
    pub mac: [u8; 32],
}

/// A chain's name: `global`, `order/{id}`, `lease/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainScope(String);

impl ChainScope {
    /// The chain of trust changes.
    pub fn global() -> Self {
        Self("global".into())
    }
    /// The chain of one order's quota.
    pub fn order(order_id: &impl std::fmt::Display) -> Self {
        Self(format!("order/{order_id}"))
    }
    /// The chain of one lease's slots.
    pub fn lease(lease_id: &impl std::fmt::Display) -> Self {
        Self(format!("lease/{lease_id}"))
    }
    /// The scope as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl KeyPart for ChainScope {
    fn write_key(&self, out: &mut String) {
        out.push_str(&self.0);
    }
}

/// Sequence numbers in keys: zero-padded so keys sort in chain order.
pub struct Seq(pub u64);

impl KeyPart for Seq {
    fn write_key(&self, out: &mut String) {
        out.push_str(&format!("{:016}", self.0));
    }
}

/// Who made a change: an operator credential, a station, or the coordinator itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// An operator, by credential name.
    pub fn operator(name: &str) -> Self {
        Self(format!("operator:{name}"))
    }
    /// A station, by id.
    pub fn station(id: &impl std::fmt::Display) -> Self {
        Self(format!("station:{id}"))
    }
    /// The coordinator's own housekeeping.
    pub fn coordinator() -> Self {
        Self("coordinator".into())
    }
    /// As written in the log.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What is appended: who did what to what (and details), stamped with the time on append.
#[derive(Clone, Debug)]
pub struct Entry {
    actor: Actor,
    action: &'static str,
    subject: String,
    detail: String,
}

impl Entry {
    /// `actor` did `action` (a short verb phrase, e.g. `"lease granted"`) to `subject`.
    pub fn new(actor: &Actor, action: &'static str, subject: impl std::fmt::Display) -> Self {
        Self {
            actor: actor.clone(),
            action,
            subject: subject.to_string(),
            detail: String::new(),
        }
    }

    /// With details (counts, digests; never a secret).
    pub fn detail(mut self, detail: impl std::fmt::Display) -> Self {
        self.detail = detail.to_string();
        self
    }
}

/// `audit/entries/{scope}/{seq:016}`: one entry, chained to the one before by `prev_mac`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The chain.
    pub scope: String,
    /// Its place in the chain, from 1.
    pub seq: u64,
    /// When it was appended (Unix milliseconds).
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// To what.
    pub subject: String,
    /// Details.
    pub detail: String,
    /// The previous entry's MAC (zeros for the first).
    #[serde(with = "hex")]
    pub prev_mac: [u8; 32],
    /// HMAC-SHA256 under the audit key over everything above.
    #[serde(with = "hex")]
    pub mac: [u8; 32],
}

impl JsonRecord for AuditRecord {
    const PREFIX: &'static str = "audit/entries/";
    type Key = (ChainScope, Seq);
}

impl AuditRecord {
    /// The entry as the API shows it.
    pub fn to_proto(&self) -> v1::AuditEntry {
        v1::AuditEntry {
            scope: self.scope.clone(),
            seq: self.seq,
            at_ms: self.at_ms,
            actor: self.actor.clone(),
            action: self.action.clone(),
            subject: self.subject.clone(),
            detail: self.detail.clone(),
        }
    }
}

/// `audit/heads/global`: the head of the global chain.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GlobalHead(pub ChainHead);

impl JsonRecord for GlobalHead {
    const PREFIX: &'static str = "audit/heads/";
    type Key = str;
}

const GLOBAL: &str = "global";

/// Appends entries (within their change's transaction) and reads them back.
#[derive(Clone)]
pub struct AuditLog {
    db: Db,
    key: Arc<AuditKey>,
}

impl AuditLog {
    /// The log over `db`; its MAC key is kept sealed under `kek` in the store.
    pub fn new(db: Db, kek: Arc<KekRing>) -> Self {
        Self {
            key: Arc::new(AuditKey::new(db.clone(), kek)),
            db,
        }
    }

    /// The MAC key (for re-sealing at KEK rotation and verification).
    pub fn key(&self) -> &AuditKey {
        &self.key
    }

    /// Adds `entry` to `txn` as the next entry of `scope`, whose head (read from a record the
    /// transaction guards) is `head`; `head` is advanced, and the caller writes it back in the
    /// same transaction.
    pub async fn append(
        &self,
        txn: Txn,
        scope: &ChainScope,
        head: &mut ChainHead,
        entry: Entry,
    ) -> Result<Txn> {
        let mac_key = self.key.get().await?;
        let mut record = AuditRecord {
            scope: scope.as_str().to_owned(),
            seq: head.seq + 1,
            at_ms: now_ms(),
            actor: entry.actor.0,
            action: entry.action.to_owned(),
            subject: entry.subject,
            detail: entry.detail,
            prev_mac: head.mac,
            mac: [0; 32],
        };
        record.mac = mac(&mac_key, &record);
        *head = ChainHead {
            seq: record.seq,
            mac: record.mac,
        };
        let key = (scope.clone(), Seq(record.seq));
        Ok(txn.absent::<AuditRecord>(&key).put(&key, &record))
    }

    /// Adds `entry` to the global chain: reads its head and guards it, so a transaction that
    /// loses the race to another global change fails its commit (retry it from a fresh read).
    pub async fn append_global(&self, txn: Txn, entry: Entry) -> Result<Txn> {
        let stored: Option<Stored<GlobalHead>> = self.db.get::<GlobalHead>(GLOBAL).await?;
        let mut head = stored.as_ref().map(|s| s.record.0).unwrap_or_default();
        let txn = match &stored {
            Some(s) => txn.unchanged(s),
            None => txn.absent::<GlobalHead>(GLOBAL),
        };
        let txn = self
            .append(txn, &ChainScope::global(), &mut head, entry)
            .await?;
        Ok(txn.put(GLOBAL, &GlobalHead(head)))
    }

    /// Entries of one scope (or all, `scope` empty), in chain order; with `limit`, the newest
    /// `limit` of each scope.
    pub async fn list(&self, scope: &str, limit: u32) -> Result<Vec<AuditRecord>> {
        let entries = if scope.is_empty() {
            self.db.list(RecordScope::<AuditRecord>::all()).await?
        } else {
            self.db
                .list(RecordScope::<AuditRecord>::under(&ChainScope(
                    scope.to_owned(),
                )))
                .await?
        };
        let mut out: Vec<AuditRecord> = entries.into_iter().map(|s| s.record).collect();
        if limit > 0 {
            let mut kept = Vec::new();
            let mut by_scope: std::collections::BTreeMap<String, Vec<AuditRecord>> =
                Default::default();
            for r in out {
                by_scope.entry(r.scope.clone()).or_default().push(r);
            }
            for (_, mut list) in by_scope {
                let skip = list.len().saturating_sub(limit as usize);
                kept.extend(list.drain(skip..));
            }
            out = kept;
        }
        Ok(out)
    }
}

/// HMAC-SHA256 over every field but `mac`, each length-prefixed so no two entries encode alike.
pub(crate) fn mac(key: &[u8; 32], r: &AuditRecord) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(b"flashgate-audit-entry-v1");
    for field in [
        r.scope.as_bytes(),
        &r.seq.to_le_bytes(),
        &r.at_ms.to_le_bytes(),
        r.actor.as_bytes(),
        r.action.as_bytes(),
        r.subject.as_bytes(),
        r.detail.as_bytes(),
        &r.prev_mac,
    ] {
        m.update(&(field.len() as u64).to_le_bytes());
        m.update(field);
    }
    m.finalize().into_bytes().into()
}
