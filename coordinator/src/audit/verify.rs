//! Checking the log: every chain's entries must be numbered 1, 2, … in key order, each MAC must
//! verify under the audit key, each entry must name the MAC of the one before, and the last
//! entry must be the head its guarding record holds. An edited entry fails its MAC, a removed
//! one leaves a gap (or a head pointing past the end), two swapped ones sit under each other's
//! keys; none of that can be re-linked without the key.

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

use super::{mac, AuditLog, AuditRecord, ChainHead, GlobalHead, GLOBAL};
use crate::error::Result;
use crate::repository::Scope;

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Entries checked.
    pub entries: u64,
    /// Chains checked.
    pub chains: u32,
    /// One line per problem (empty: the log is intact).
    pub problems: Vec<String>,
}

impl Verification {
    /// No problem found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies every chain of `log`; `heads` are the chain heads kept in other records (orders'
/// quotas, leases), by scope. The global head is read here.
pub async fn verify(
    log: &AuditLog,
    mut heads: BTreeMap<String, ChainHead>,
) -> Result<Verification> {
    let mac_key = log.key().get().await?;
    if let Some(global) = log.db.get::<GlobalHead>(GLOBAL).await? {
        heads.insert(GLOBAL.to_owned(), global.record.0);
    }
    let mut chains: BTreeMap<String, Vec<(String, AuditRecord)>> = BTreeMap::new();
    for stored in log.db.list(Scope::<AuditRecord>::all()).await? {
        let scope = stored.record.scope.clone();
        chains
            .entry(scope)
            .or_default()
            .push((stored.key, stored.record));
    }
    let mut report = Verification::default();
    for (scope, entries) in &chains {
        report.chains += 1;
        let mut prev = ChainHead::default();
        for (key, entry) in entries {
            report.entries += 1;
            let expected_key = format!(
                "{}{scope}/{:016}",
                <AuditRecord as crate::repository::Record>::PREFIX,
                entry.seq
            );
            if *key != expected_key {
                report.problems.push(format!(
                    "{scope}: the entry stored at {key} says it is #{} (moved or swapped)",
                    entry.seq
                ));
            }
            if !bool::from(mac(&mac_key, entry).ct_eq(&entry.mac)) {
                report.problems.push(format!(
                    "{scope} #{}: the MAC does not verify (the entry was altered)",
                    entry.seq
                ));
            }
            if entry.seq != prev.seq + 1 {
                report.problems.push(format!(
                    "{scope}: #{} follows #{} (an entry is missing)",
                    entry.seq, prev.seq
                ));
            } else if entry.prev_mac != prev.mac {
                report.problems.push(format!(
                    "{scope} #{}: does not chain to #{} (reordered or replaced)",
                    entry.seq, prev.seq
                ));
            }
            prev = ChainHead {
                seq: entry.seq,
                mac: entry.mac,
            };
        }
        match heads.remove(scope) {
            Some(head) if head == prev => {}
            Some(head) => report.problems.push(format!(
                "{scope}: the chain ends at #{} but its head says #{} (entries removed at the end, or the head was rewritten)",
                prev.seq, head.seq
            )),
            None => report.problems.push(format!(
                "{scope}: no record holds this chain's head (its order or lease record is gone)"
            )),
        }
    }
    for (scope, head) in heads {
        if head.seq > 0 {
            report.problems.push(format!(
                "{scope}: its head says #{} but no entry of it is stored (entries removed)",
                head.seq
            ));
        }
    }
    Ok(report)
}
