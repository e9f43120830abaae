//! Lease expiry: a lease still active after `not_after + report grace` was abandoned (the
//! station crashed, or forgot to return it); it is ended as expired and its unused slots go
//! back to the order ([`Leases::expire`], the same guarded transaction as a return).

use std::time::Duration;

use crate::error::Result;
use crate::provisioning::{LeaseState, Leases};

/// Ends every active lease whose report grace has passed at `now_ms`; how many this call ended.
pub async fn expire_leases(leases: &Leases, now_ms: i64, grace: Duration) -> Result<u32> {
    let grace = grace.as_millis() as i64;
    let mut ended = 0;
    for lease in leases.all().await? {
        let l = &lease.record;
        if l.state == LeaseState::Active
            && now_ms > l.not_after_ms + grace
            && leases.expire(&l.lease_id).await?
        {
            ended += 1;
        }
    }
    Ok(ended)
}
