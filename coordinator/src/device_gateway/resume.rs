//! Envelopes of unfinished transfers, so that a device cut off mid-download resumes.
//!
//! The device's staging slot keeps the hash of the envelope it was receiving and the chunks it
//! has: a `begin` with the *same* envelope resumes at the next chunk. The coordinator makes a
//! fresh envelope (a fresh package nonce) each time a package is asked for, so the gateway
//! keeps the last envelope it delivered to each device, per campaign, until the transfer
//! completes. It is only ciphertext made for that one device (no secret), kept in this
//! replica's memory: a device that reconnects to another replica starts its transfer over.

use std::collections::HashMap;
use std::sync::Mutex;

/// At most this many unfinished transfers are remembered (the oldest is forgotten first).
const CAPACITY: usize = 4096;

type DeviceId = (u32, [u8; 16]);

/// The envelope of each device's unfinished transfer, by campaign.
#[derive(Default)]
pub struct Envelopes {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_device: HashMap<DeviceId, (String, Vec<u8>, u64)>,
    clock: u64,
}

impl Envelopes {
    /// The envelope to deliver for `campaign_id`: the one given to this device before for the
    /// same campaign, else `fresh` (remembered from now on).
    pub fn envelope(&self, device: DeviceId, campaign_id: &str, fresh: Vec<u8>) -> Vec<u8> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        if let Some((campaign, envelope, used)) = inner.by_device.get_mut(&device) {
            if campaign == campaign_id {
                *used = now;
                return envelope.clone();
            }
        }
        if inner.by_device.len() >= CAPACITY {
            let oldest = inner
                .by_device
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                inner.by_device.remove(&oldest);
            }
        }
        inner
            .by_device
            .insert(device, (campaign_id.to_owned(), fresh.clone(), now));
        fresh
    }

    /// The transfer completed: nothing to resume.
    pub fn forget(&self, device: DeviceId) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_device.remove(&device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_campaign_gets_the_same_envelope_until_forgotten() {
        let e = Envelopes::default();
        let dev = (7, [1; 16]);
        assert_eq!(e.envelope(dev, "c1", vec![1]), vec![1]);
        assert_eq!(e.envelope(dev, "c1", vec![2]), vec![1]);
        // A new campaign replaces it.
        assert_eq!(e.envelope(dev, "c2", vec![3]), vec![3]);
        assert_eq!(e.envelope(dev, "c2", vec![4]), vec![3]);
        e.forget(dev);
        assert_eq!(e.envelope(dev, "c2", vec![5]), vec![5]);
        // Another device has its own.
        assert_eq!(e.envelope((7, [2; 16]), "c2", vec![6]), vec![6]);
    }
}
