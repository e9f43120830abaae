//! The device registry: one record per certified chip, with its device key sealed under the
//! KEK and its certificate, written once by [`super::certificates`] (CERTIFIED, one lease slot
//! consumed) and marked INSTALLED by [`super::reports`] when the device's hello proof verifies.
//! Evidence of two devices behind one identity is kept on the record (`clone_evidence`). A target that
//! failed is recorded apart (a [`FailureRecord`]): counted in the order's yield, never
//! registered, no slot consumed. The update and data flows find devices and their keys here.

use std::sync::Arc;

use flashgate_proto::v1;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{CoordinatorError as E, Result};
use crate::ids::{LeaseId, OrderId, ProductId, Serial, StationId};
use crate::keys::{device_key_aad, KekRing};
use crate::repository::{hex, proto_enum, Db, JsonRecord, KeyPart, Scope, Stored};

/// `devices/{product_id:010}/{serial}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The device's 16-byte unique id, read from the board.
    pub serial: Serial,
    /// The product the board was made as.
    pub product_id: ProductId,
    /// The order it was made under.
    pub order_id: OrderId,
    /// The lease whose slot it consumed.
    pub lease_id: LeaseId,
    /// The station that installed it.
    pub station_id: StationId,
    /// When the station finished the install (Unix milliseconds, the station's clock).
    pub installed_at_ms: i64,
    /// When the coordinator recorded it (Unix milliseconds).
    pub registered_at_ms: i64,
    /// The bootloader version installed (the order's).
    pub bootloader_version: u32,
    /// The OS version the board left the factory running, as its verified status receipt
    /// showed (0: the order installs no OS).
    #[serde(default)]
    pub os_version: u32,
    /// What the factory test app said.
    #[serde(with = "proto_enum")]
    pub test_outcome: v1::TestOutcome,
    /// The test app's log, as the station reported it.
    pub test_log: String,
    /// How the install ended (only `Provisioned` devices are registered).
    #[serde(with = "proto_enum")]
    pub outcome: v1::InstallOutcome,
    /// The device key sealed under the KEK, AAD = product id + serial.
    #[serde(with = "hex")]
    pub sealed_device_key: Vec<u8>,
    /// Certified (certificate issued) or installed (hello proof verified).
    #[serde(default = "DeviceState::installed")]
    pub state: DeviceState,
    /// The device certificate (160 bytes).
    #[serde(with = "hex", default)]
    pub certificate: Vec<u8>,
    /// The challenge its install report must answer (from the issuance).
    #[serde(with = "hex", default)]
    pub hello_challenge: Vec<u8>,
    /// Why the coordinator suspects two devices behind this identity (empty: none).
    #[serde(default)]
    pub clone_evidence: Vec<String>,
    /// The signals from the device's own traffic already written as clone evidence (each is
    /// written once per device).
    #[serde(default)]
    pub clone_signals: Vec<CloneSignal>,
}

/// What in a device's own traffic shows two devices behind its identity (beyond field
/// verification's proofs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CloneSignal {
    /// Two records authenticate under the device key with one epoch and counter but different
    /// contents: two senders sealed with one counter journal.
    DataCounterReused,
    /// A record authenticates in an epoch after the device's own rotation record closed it.
    DataEpochForked,
    /// A verified status receipt shows a rollback floor or bootloader version below one an
    /// earlier verified receipt showed (neither ever goes down on one device).
    ReceiptWentBack,
}

impl std::fmt::Display for CloneSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::DataCounterReused => "data counter reused with other contents",
            Self::DataEpochForked => "data epoch continued after its rotation",
            Self::ReceiptWentBack => "status receipt went back",
        })
    }
}

/// Where a device record is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    /// Certificate issued and its lease slot consumed; the install is not yet proven.
    Certified,
    /// The device proved its key in a hello that named its own chip.
    Installed,
}

impl DeviceState {
    fn installed() -> Self {
        Self::Installed
    }

    fn to_proto(self) -> v1::DeviceState {
        match self {
            Self::Certified => v1::DeviceState::Certified,
            Self::Installed => v1::DeviceState::Installed,
        }
    }
}

impl JsonRecord for DeviceRecord {
    const PREFIX: &'static str = "devices/";
    type Key = (ProductId, Serial);
}

/// Clone evidence kept per device: the newest entries (a copy verified in a loop must not grow
/// the record without bound).
pub const MAX_CLONE_EVIDENCE: usize = 16;

impl DeviceRecord {
    /// The record's store key: product and serial.
    pub fn key(&self) -> (ProductId, Serial) {
        (self.product_id, self.serial)
    }

    /// Records why two devices seem to be behind this identity (the oldest entries go past
    /// [`MAX_CLONE_EVIDENCE`]).
    pub fn add_clone_evidence(&mut self, evidence: String) {
        self.clone_evidence.push(evidence);
        let excess = self.clone_evidence.len().saturating_sub(MAX_CLONE_EVIDENCE);
        self.clone_evidence.drain(..excess);
    }

    /// The device as the API shows it (without its key).
    pub fn to_proto(&self) -> v1::Device {
        v1::Device {
            serial: self.serial.0.to_vec(),
            product_id: self.product_id.0,
            order_id: self.order_id.to_string(),
            lease_id: self.lease_id.to_string(),
            station_id: self.station_id.to_string(),
            installed_at_ms: self.installed_at_ms,
            registered_at_ms: self.registered_at_ms,
            bootloader_version: self.bootloader_version,
            os_version: self.os_version,
            test_result: Some(v1::TestResult {
                outcome: self.test_outcome as i32,
                log: self.test_log.clone(),
            }),
            outcome: self.outcome as i32,
            state: self.state.to_proto() as i32,
            certificate: self.certificate.clone(),
            clone_evidence: self.clone_evidence.clone(),
        }
    }
}

/// A target that failed under a lease: recorded for the order's yield, never registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The order the target was being made under.
    pub order_id: OrderId,
    /// The lease it was made under (no slot of it is consumed).
    pub lease_id: LeaseId,
    /// The station that reported it.
    pub station_id: StationId,
    /// The order's product.
    pub product_id: ProductId,
    /// `None` when the station never learnt it (stored as `""`).
    #[serde(with = "hex::or_empty")]
    pub serial: Option<Serial>,
    /// Why the target failed, as the station reported it.
    pub reason: String,
    /// When the target failed (Unix milliseconds, the station's clock).
    pub failed_at_ms: i64,
    /// When the coordinator recorded it (Unix milliseconds).
    pub recorded_at_ms: i64,
    /// What the factory test app said, if it ran.
    #[serde(with = "proto_enum")]
    pub test_outcome: v1::TestOutcome,
    /// The test app's log, as the station reported it.
    pub test_log: String,
}

/// `failures/{order_id}/{lease_id}/{failed_at_ms:013}-{serial or "unknown"}`: one per failed
/// target, so a re-sent report finds its record.
pub struct FailureKey {
    order_id: OrderId,
    lease_id: LeaseId,
    failed_at_ms: i64,
    serial: Option<Serial>,
}

impl KeyPart for FailureKey {
    fn write_key(&self, out: &mut String) {
        let serial = self
            .serial
            .map_or_else(|| "unknown".to_owned(), |s| s.hex());
        (&self.order_id, &self.lease_id).write_key(out);
        out.push_str(&format!("/{:013}-{serial}", self.failed_at_ms));
    }
}

impl JsonRecord for FailureRecord {
    const PREFIX: &'static str = "failures/";
    type Key = FailureKey;
}

impl FailureRecord {
    /// The record's store key (one per failed target, so a re-sent report finds it).
    pub fn key(&self) -> FailureKey {
        FailureKey {
            order_id: self.order_id.clone(),
            lease_id: self.lease_id.clone(),
            failed_at_ms: self.failed_at_ms,
            serial: self.serial,
        }
    }

    /// The failure as the API shows it.
    pub fn to_proto(&self) -> v1::InstallFailure {
        v1::InstallFailure {
            order_id: self.order_id.to_string(),
            lease_id: self.lease_id.to_string(),
            station_id: self.station_id.to_string(),
            product_id: self.product_id.0,
            serial: self.serial.map(|s| s.0.to_vec()).unwrap_or_default(),
            reason: self.reason.clone(),
            failed_at_ms: self.failed_at_ms,
            recorded_at_ms: self.recorded_at_ms,
            test_result: Some(v1::TestResult {
                outcome: self.test_outcome as i32,
                log: self.test_log.clone(),
            }),
        }
    }
}

/// Reads registered devices and recorded failures, and opens device keys for the update and
/// data flows (written by [`super::reports`]).
#[derive(Clone)]
pub struct Registry {
    db: Db,
    kek: Arc<KekRing>,
}

impl Registry {
    /// The registry over `db`; device keys are opened with `kek`.
    pub fn new(db: Db, kek: Arc<KekRing>) -> Self {
        Self { db, kek }
    }

    /// Failures recorded under an order, oldest lease first.
    pub async fn list_failures(&self, order_id: &str) -> Result<Vec<v1::InstallFailure>> {
        let order_id = OrderId::parse(order_id)?;
        Ok(self
            .db
            .list(Scope::<FailureRecord>::under(&order_id))
            .await?
            .iter()
            .map(|f| f.record.to_proto())
            .collect())
    }

    /// A registered device.
    pub async fn device(
        &self,
        product_id: ProductId,
        serial: Serial,
    ) -> Result<Option<DeviceRecord>> {
        Ok(self
            .db
            .get::<DeviceRecord>(&(product_id, serial))
            .await?
            .map(|d| d.record))
    }

    /// A registered device as the API shows it; `NotFound` if none has that serial.
    pub async fn get_device(&self, product_id: u32, serial: &[u8]) -> Result<v1::Device> {
        let serial = Serial::parse(serial)?;
        self.device(ProductId(product_id), serial)
            .await?
            .map(|d| d.to_proto())
            .ok_or_else(|| {
                E::NotFound(format!(
                    "no device {serial} is registered for product {product_id}"
                ))
            })
    }

    /// Registered devices of one product, or of all (`None`).
    pub async fn devices(
        &self,
        product_id: Option<ProductId>,
    ) -> Result<Vec<Stored<DeviceRecord>>> {
        let scope = match product_id {
            Some(p) => Scope::under(&p),
            None => Scope::all(),
        };
        self.db.list(scope).await
    }

    /// Registered devices matching the request's filters (product, order, station, install
    /// time, serial), at most `limit` (0: all).
    pub async fn list_devices(&self, req: &v1::ListDevicesRequest) -> Result<Vec<v1::Device>> {
        let product = (req.product_id != 0).then_some(ProductId(req.product_id));
        let serial = if req.serial.is_empty() {
            None
        } else {
            Some(Serial::parse(&req.serial)?)
        };
        let limit = if req.limit == 0 {
            usize::MAX
        } else {
            req.limit as usize
        };
        Ok(self
            .devices(product)
            .await?
            .iter()
            .map(|d| &d.record)
            .filter(|d| req.order_id.is_empty() || d.order_id.as_str() == req.order_id)
            .filter(|d| req.station_id.is_empty() || d.station_id.as_str() == req.station_id)
            .filter(|d| req.from_ms == 0 || d.installed_at_ms >= req.from_ms)
            .filter(|d| req.to_ms == 0 || d.installed_at_ms < req.to_ms)
            .filter(|d| serial.is_none_or(|s| s == d.serial))
            .take(limit)
            .map(DeviceRecord::to_proto)
            .collect())
    }

    /// Recovers a registered device's key (opened from its KEK-sealed form). For the update
    /// and data paths; never sent over the API, never logged.
    pub async fn device_key(
        &self,
        product_id: u32,
        serial: &[u8; 16],
    ) -> Result<Zeroizing<[u8; 32]>> {
        let device = self
            .device(ProductId(product_id), Serial(*serial))
            .await?
            .ok_or_else(|| E::NotFound("device is not registered".into()))?;
        Ok(self.kek.open_key(
            &device_key_aad(product_id, serial),
            &device.sealed_device_key,
        )?)
    }
}
