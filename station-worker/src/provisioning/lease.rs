//! A lease as the station holds it: the coordinator's signature checked, its validity checked
//! against the clock, and its slots counted by a [`SlotLedger`]. A lease is an allowance of
//! slots, nothing more: each chip's key and certificate come from the coordinator
//! (`IssueDeviceCertificate`), which consumes the slot. A [`Slot`] is one device's worth of the lease, taken by value: it is either
//! consumed (an install was journaled) or released (the target failed), once.

use flashgate_proto::lease::{check_validity, verify_signed_lease, LeaseError};
use flashgate_proto::v1::{LeaseBody, SignedLease};
use prost::Message;

use crate::identity::StationIdentity;

/// Why a lease cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LeaseRefused {
    /// Signature, encoding or time.
    #[error("{0}")]
    Invalid(#[from] LeaseError),
    /// Issued to another station.
    #[error("lease {lease_id} names station {named}, not this station {ours}")]
    OtherStation {
        /// Lease id.
        lease_id: String,
        /// Who it names.
        named: String,
        /// This station.
        ours: String,
    },
    /// The journaled lease bytes are not a lease.
    #[error("journaled lease is not a SignedLease encoding")]
    Malformed,
}

/// One device's worth of a lease. Not `Clone`: [`Lease::consume`] and [`Lease::release`] take it
/// by value, so a slot is used at most once, one way:
///
/// ```compile_fail
/// # use flashgate_station::provisioning::{Lease, Slot};
/// fn consumed_and_released(lease: &mut Lease, slot: Slot) {
///     lease.consume(slot).unwrap();
///     lease.release(slot).unwrap(); // use of moved value
/// }
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a slot must be consumed or released"]
pub struct Slot {
    lease_id: String,
}

impl Slot {
    /// The lease the slot belongs to.
    pub fn lease_id(&self) -> &str {
        &self.lease_id
    }
}

/// A slot given back to a lease that is not its own.
#[derive(Debug, thiserror::Error)]
#[error("slot of lease {slot} given back to lease {lease}")]
pub struct ForeignSlot {
    /// The slot's lease.
    pub slot: String,
    /// The lease it was given to.
    pub lease: String,
}

/// How many of a lease's slots are used (installs journaled) and handed out (targets in
/// progress); the rest are free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotLedger {
    count: u32,
    used: u32,
    out: u32,
    /// The coordinator counts the rest spent: no slot is handed out any more.
    spent_elsewhere: bool,
}

impl SlotLedger {
    /// A ledger of `count` slots, `used` of them already (from the journal).
    pub fn new(count: u32, used: u32) -> Self {
        Self {
            count,
            used: used.min(count),
            out: 0,
            spent_elsewhere: false,
        }
    }

    /// Slots neither used nor handed out.
    pub fn free(&self) -> u32 {
        if self.spent_elsewhere {
            return 0;
        }
        self.count - self.used - self.out
    }

    /// True when the coordinator counts the lease's remaining slots spent.
    pub fn spent_at_coordinator(&self) -> bool {
        self.spent_elsewhere
    }

    /// Installs made under the lease.
    pub fn used(&self) -> u32 {
        self.used
    }

    /// Slots handed out and not yet consumed or released.
    pub fn out(&self) -> u32 {
        self.out
    }

    fn take(&mut self) -> bool {
        if self.free() == 0 {
            return false;
        }
        self.out += 1;
        true
    }

    fn settle(&mut self, consumed: bool) {
        self.out -= 1;
        if consumed {
            self.used += 1;
        }
    }
}

/// A verified lease and its slot ledger.
pub struct Lease {
    body: LeaseBody,
    signed: SignedLease,
    ledger: SlotLedger,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("lease_id", &self.body.lease_id)
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// Checks a lease (coordinator signature, validity at `now_ms`, addressed to this station).
    /// `used` slots are already spent (journal replay).
    pub fn open(
        signed: SignedLease,
        coordinator: &ed25519_dalek::VerifyingKey,
        identity: &StationIdentity,
        now_ms: i64,
        used: u32,
    ) -> Result<Self, LeaseRefused> {
        let body = verify_signed_lease(&signed, coordinator)?;
        check_validity(&body, now_ms)?;
        if body.station_id != identity.station_id() {
            return Err(LeaseRefused::OtherStation {
                lease_id: body.lease_id,
                named: body.station_id,
                ours: identity.station_id(),
            });
        }
        Ok(Self {
            ledger: SlotLedger::new(body.count, used),
            body,
            signed,
        })
    }

    /// Decodes a journaled lease (hex of the `SignedLease` encoding).
    pub fn decode_journaled(hex_text: &str) -> Result<SignedLease, LeaseRefused> {
        let bytes = hex::decode(hex_text).map_err(|_| LeaseRefused::Malformed)?;
        SignedLease::decode(bytes.as_slice()).map_err(|_| LeaseRefused::Malformed)
    }

    /// The encoding to journal.
    pub fn journal_form(&self) -> String {
        hex::encode(self.signed.encode_to_vec())
    }

    /// Lease id.
    pub fn id(&self) -> &str {
        &self.body.lease_id
    }

    /// The signed body.
    pub fn body(&self) -> &LeaseBody {
        &self.body
    }

    /// Its slot counts.
    pub fn ledger(&self) -> SlotLedger {
        self.ledger
    }

    /// True when past its not-after.
    pub fn expired(&self, now_ms: i64) -> bool {
        now_ms > self.body.not_after_ms
    }

    /// The coordinator counts every slot of the lease spent (certificates issued for installs
    /// the journal never saw): no more slots are handed out; the lease closes once the slots
    /// out come back.
    pub fn spent_at_coordinator(&mut self) {
        self.ledger.spent_elsewhere = true;
    }

    /// Hands out a slot, unless none is free or the lease has expired.
    pub fn take_slot(&mut self, now_ms: i64) -> Option<Slot> {
        if self.expired(now_ms) || !self.ledger.take() {
            return None;
        }
        Some(Slot {
            lease_id: self.body.lease_id.clone(),
        })
    }

    /// An install under `slot` was journaled: the slot is spent.
    pub fn consume(&mut self, slot: Slot) -> Result<(), ForeignSlot> {
        self.settle(slot, true)
    }

    /// The target under `slot` failed: the slot is free again.
    pub fn release(&mut self, slot: Slot) -> Result<(), ForeignSlot> {
        self.settle(slot, false)
    }

    fn settle(&mut self, slot: Slot, consumed: bool) -> Result<(), ForeignSlot> {
        if slot.lease_id != self.body.lease_id {
            return Err(ForeignSlot {
                slot: slot.lease_id,
                lease: self.body.lease_id.clone(),
            });
        }
        self.ledger.settle(consumed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_never_hands_out_more_than_its_count() {
        let mut ledger = SlotLedger::new(3, 1);
        assert!(ledger.take() && ledger.take());
        assert!(!ledger.take(), "1 used + 2 out = 3");
        ledger.settle(false);
        assert_eq!((ledger.used(), ledger.out(), ledger.free()), (1, 1, 1));
        ledger.settle(true);
        assert_eq!((ledger.used(), ledger.out(), ledger.free()), (2, 0, 1));
        assert_eq!(SlotLedger::new(2, 5).free(), 0, "a journal over the count");
    }

    #[test]
    fn a_ledger_the_coordinator_counts_spent_hands_out_nothing_more() {
        let mut ledger = SlotLedger::new(4, 0);
        assert!(ledger.take() && ledger.take());
        ledger.spent_elsewhere = true;
        assert!(
            !ledger.take(),
            "2 slots left by the journal, none by the coordinator"
        );
        ledger.settle(false);
        ledger.settle(false);
        assert_eq!(
            (ledger.out(), ledger.free()),
            (0, 0),
            "closes once the slots out are back"
        );
        assert!(ledger.spent_at_coordinator());
    }
}
