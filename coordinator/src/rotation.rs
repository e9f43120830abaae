//! KEK rotation: re-seal every stored secret (lease secrets, device keys) under the current KEK.
//! Run with the new KEK as current and the old one as previous; afterwards the old KEK can be
//! retired. Each record is rewritten by compare-and-swap, so this is safe while coordinators
//! serve, and can be re-run after an interruption.

use crate::coordinator::{decode_hex, Coordinator};
use crate::error::{CoordinatorError as E, Result};
use crate::keys::{device_key_aad, lease_secret_aad};
use crate::records::*;
use crate::store::{Guard, Write};

/// Counts of records re-sealed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RewrapReport {
    pub leases: usize,
    pub devices: usize,
}

impl Coordinator {
    pub async fn rewrap_all(&self) -> Result<RewrapReport> {
        let mut report = RewrapReport::default();
        for _ in 0..10 {
            let mut conflicts = 0;
            for (mut lease, rev) in self.read_all::<LeaseRecord>("leases/").await? {
                let sealed = decode_hex(&lease.sealed_secret, "sealed lease secret")?;
                if self.kek.is_current(&sealed) {
                    continue;
                }
                let aad = lease_secret_aad(&lease.lease_id);
                let secret = self.kek.open(&aad, &sealed)?;
                lease.sealed_secret = hex::encode(self.kek.seal(&aad, &secret));
                let key = lease_key(&lease.lease_id);
                if self
                    .store
                    .commit(
                        vec![Guard::Revision(key.clone(), rev)],
                        vec![Write::Put(key, encode(&lease))],
                    )
                    .await?
                {
                    report.leases += 1;
                } else {
                    conflicts += 1;
                }
            }
            for (mut device, rev) in self.read_all::<DeviceRecord>("devices/").await? {
                let sealed = decode_hex(&device.sealed_device_key, "sealed device key")?;
                if self.kek.is_current(&sealed) {
                    continue;
                }
                let serial: [u8; 16] = decode_hex(&device.serial, "serial")?
                    .try_into()
                    .map_err(|_| E::Internal("stored serial has the wrong length".into()))?;
                let aad = device_key_aad(device.product_id, &serial);
                let secret = self.kek.open(&aad, &sealed)?;
                device.sealed_device_key = hex::encode(self.kek.seal(&aad, &secret));
                let key = device_key(device.product_id, &device.serial);
                if self
                    .store
                    .commit(
                        vec![Guard::Revision(key.clone(), rev)],
                        vec![Write::Put(key, encode(&device))],
                    )
                    .await?
                {
                    report.devices += 1;
                } else {
                    conflicts += 1;
                }
            }
            if conflicts == 0 {
                return Ok(report);
            }
        }
        Err(E::Unavailable(
            "records kept changing during the rewrap; run it again".into(),
        ))
    }
}
