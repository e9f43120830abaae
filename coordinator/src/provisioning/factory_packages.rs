//! The OS a board leaves the factory with (issue 18), delivered so that the station never holds
//! it in clear: the station relays a per-device package through the bootloader's update path,
//! exactly as a field tool relays an update (`docs/protocol.md` §7).
//!
//! 1. The order's OS release is encrypted once, the first time one of its boards asks, into an
//!    update campaign ([`seal_campaign`]: a fresh content key sealed under the KEK, re-sealed by
//!    KEK rotation like every campaign) that a [`FactoryReleaseRecord`] names.
//! 2. `GetFactoryPackage(lease, serial)` ([`FactoryPackages::package`]): for a chip certified
//!    under the caller's own active lease (`super::certificates`) and not installed yet, its
//!    envelope is made now under its device key (the one drawn at certification, sealed under
//!    the KEK) with a fresh package nonce, beside the campaign's ciphertext chunks and a fresh status
//!    challenge, which a [`FactoryInstallRecord`] keeps. Asking again (a retried board) makes a
//!    new envelope and challenge.
//! 3. `ReportInstall` of that board ([`FactoryPackages::verified_os`], called by
//!    [`super::reports`]) carries the device's status receipt: it is checked by the field
//!    updates' own verifier ([`verify_receipt`], [`runs_confirmed`]) and must show the order's OS
//!    version running, confirmed. The install record is deleted in the registration's
//!    transaction, so a challenge answers one registration.
//!
//! | key | value |
//! | --- | --- |
//! | `factory_releases/{order_id}` | [`FactoryReleaseRecord`] |
//! | `factory_installs/{product_id:010}/{serial}` | [`FactoryInstallRecord`] |

use std::sync::Arc;

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::update::receipt::CHALLENGE_LEN;
use serde::{Deserialize, Serialize};

use super::leases::{LeaseRecord, LeaseState, Leases};
use super::registry::Registry;
use super::stations::StationRecord;
use crate::catalogue::{Catalogue, OrderRecord};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{CampaignId, Digest, LeaseId, OrderId, ProductId, Serial};
use crate::keys::{device_key_aad, KekRing};
use crate::repository::{hex, Db, JsonRecord, Stored, Txn};
use crate::update::campaigns::seal_campaign;
use crate::update::delivery::{
    envelope_for, receipt_challenge, runs_confirmed, sealed_release, verify_receipt,
};
use crate::update::records::{CampaignChunks, CampaignRecord};

/// `factory_releases/{order_id}`: the campaign holding an order's OS release, encrypted once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FactoryReleaseRecord {
    /// The order.
    pub order_id: OrderId,
    /// The campaign (`update_campaigns/`, `update_chunks/`) that holds the sealed release.
    pub campaign_id: CampaignId,
    /// The order's OS release.
    pub release_digest: Digest,
    /// Its version.
    pub version: u32,
}

impl JsonRecord for FactoryReleaseRecord {
    const PREFIX: &'static str = "factory_releases/";
    type Key = OrderId;
}

/// `factory_installs/{product_id:010}/{serial}`: the package last issued to a board for its
/// factory OS install, and the challenge its status receipt must answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FactoryInstallRecord {
    /// The board.
    pub serial: Serial,
    /// Its product.
    pub product_id: ProductId,
    /// The lease it is being made under (only that lease's report may use the receipt).
    pub lease_id: LeaseId,
    /// The campaign its package came from.
    pub campaign_id: CampaignId,
    /// The OS version the receipt must show running, confirmed.
    pub target_version: u32,
    /// The challenge the receipt must answer.
    #[serde(with = "hex")]
    pub challenge: [u8; CHALLENGE_LEN],
    /// When the package was issued (Unix milliseconds).
    pub issued_at_ms: i64,
}

impl JsonRecord for FactoryInstallRecord {
    const PREFIX: &'static str = "factory_installs/";
    type Key = (ProductId, Serial);
}

/// A board's OS install, proven by its verified status receipt.
pub struct VerifiedOs {
    /// The OS version it runs, confirmed.
    pub version: u32,
    /// The install record the receipt answered: delete it with the registration.
    pub install: Stored<FactoryInstallRecord>,
}

/// Packages of the orders' OS releases for the boards being made, and the check of the receipts
/// that prove the installs.
#[derive(Clone)]
pub struct FactoryPackages {
    db: Db,
    catalogue: Catalogue,
    leases: Leases,
    registry: Registry,
    kek: Arc<KekRing>,
}

impl FactoryPackages {
    /// Over `db`; orders and releases from `catalogue`, leases from `leases`, registered
    /// devices from `registry`; content keys sealed and opened with `kek`.
    pub fn new(
        db: Db,
        catalogue: Catalogue,
        leases: Leases,
        registry: Registry,
        kek: Arc<KekRing>,
    ) -> Self {
        Self {
            db,
            catalogue,
            leases,
            registry,
            kek,
        }
    }

    /// The package of the order's OS for board `req.serial` of `station`'s own active lease
    /// `req.lease_id` (see the module documentation).
    pub async fn package(
        &self,
        station: &StationRecord,
        req: &v1::GetFactoryPackageRequest,
    ) -> Result<v1::UpdatePackage> {
        let serial = Serial::parse(&req.serial)?;
        let lease = self.leases.own(station, &req.lease_id).await?.record;
        if lease.state != LeaseState::Active || now_ms() > lease.not_after_ms {
            return Err(E::FailedPrecondition(format!(
                "lease {} has ended: no package is issued under it",
                lease.lease_id
            )));
        }
        let order = self.catalogue.orders.get(lease.order_id.as_str()).await?;
        let Some(os_digest) = order.os_release_digest else {
            return Err(E::FailedPrecondition(format!(
                "order {} installs no OS: its boards leave with the bootloader only",
                order.order_id
            )));
        };
        let device = self
            .registry
            .device(lease.product_id, serial)
            .await?
            .filter(|d| d.lease_id == lease.lease_id && d.station_id == station.station_id)
            .ok_or_else(|| {
                E::FailedPrecondition(format!(
                    "chip {serial} was not certified under lease {}: IssueDeviceCertificate first (a package is made only for a certified chip, under its own device key)",
                    lease.lease_id
                ))
            })?;
        if device.installed_at_ms != 0 {
            return Err(E::AlreadyExists(format!(
                "device {serial} is registered already: update its OS in the field (`flashgate device update`)"
            )));
        }
        let factory = self.factory_release(&order, os_digest).await?;
        let (campaign, release) = sealed_release(&self.db, &self.kek, &factory.campaign_id).await?;
        let device_key = self.kek.open_key(
            &device_key_aad(lease.product_id.0, &serial.0),
            &device.sealed_device_key,
        )?;
        let envelope = envelope_for(&release, lease.product_id, serial, &device_key)?;
        let install = FactoryInstallRecord {
            serial,
            product_id: lease.product_id,
            lease_id: lease.lease_id.clone(),
            campaign_id: campaign.campaign_id.clone(),
            target_version: campaign.version,
            challenge: receipt_challenge(),
            issued_at_ms: now_ms(),
        };
        let key = (lease.product_id, serial);
        // A newer package for the same board replaces the older one (its challenge with it).
        self.db.commit(Txn::new().put(&key, &install)).await?;
        tracing::info!(%serial, lease = %lease.lease_id, version = campaign.version, "factory OS package issued");
        Ok(v1::UpdatePackage {
            campaign_id: campaign.campaign_id.to_string(),
            version: campaign.version,
            envelope,
            chunks: release.chunks,
            challenge: install.challenge.to_vec(),
        })
    }

    /// The OS a report of board `serial` under `lease` proves with `receipt`: `None` when the
    /// order installs no OS (then there must be no receipt), else the verified version.
    pub async fn verified_os(
        &self,
        lease: &LeaseRecord,
        serial: Serial,
        device_key: &[u8; 32],
        receipt: &[u8],
    ) -> Result<Option<VerifiedOs>> {
        let order = self.catalogue.orders.get(lease.order_id.as_str()).await?;
        if order.os_release_digest.is_none() {
            if !receipt.is_empty() {
                return Err(E::InvalidArgument(format!(
                    "order {} installs no OS: a report under it carries no status receipt",
                    order.order_id
                )));
            }
            return Ok(None);
        }
        let version = order.os_version;
        if receipt.is_empty() {
            return Err(E::FailedPrecondition(format!(
                "order {} installs OS version {version}: the report must carry the device's status receipt",
                order.order_id
            )));
        }
        let install = self
            .db
            .get::<FactoryInstallRecord>(&(lease.product_id, serial))
            .await?
            .filter(|i| i.record.lease_id == lease.lease_id)
            .ok_or_else(|| {
                E::FailedPrecondition(format!(
                    "no OS package was issued for device {serial} under lease {}: GetFactoryPackage first",
                    lease.lease_id
                ))
            })?;
        let r = verify_receipt(
            device_key,
            &install.record.challenge,
            receipt,
            lease.product_id,
            serial,
        )?;
        if !runs_confirmed(&r, version) {
            let runs = match r.state {
                DeviceState::OsRunning { version } => format!("OS version {version}"),
                DeviceState::NoValidImage { reason } => format!("no OS ({reason})"),
            };
            return Err(E::FailedPrecondition(format!(
                "device {serial}'s receipt shows {runs}, outcome {:?}{}: not OS version {version} running, confirmed",
                r.outcome,
                if r.on_trial() { ", on trial" } else { "" }
            )));
        }
        Ok(Some(VerifiedOs { version, install }))
    }

    /// The campaign of the order's OS release: sealed the first time it is needed (one writer
    /// wins; the others read its record).
    async fn factory_release(
        &self,
        order: &OrderRecord,
        os_digest: Digest,
    ) -> Result<FactoryReleaseRecord> {
        if let Some(existing) = self.db.get::<FactoryReleaseRecord>(&order.order_id).await? {
            return Ok(existing.record);
        }
        let (release, image) = self.catalogue.releases.with_image(&os_digest.0).await?;
        let (campaign, chunks) = seal_campaign(&self.kek, CampaignId::random(), &release, &image)?;
        let record = FactoryReleaseRecord {
            order_id: order.order_id.clone(),
            campaign_id: campaign.campaign_id.clone(),
            release_digest: release.digest,
            version: release.version,
        };
        let committed = self
            .db
            .commit(
                Txn::new()
                    .absent::<FactoryReleaseRecord>(&order.order_id)
                    .absent::<CampaignRecord>(&campaign.campaign_id)
                    .put(&order.order_id, &record)
                    .put(&campaign.campaign_id, &campaign)
                    .put::<CampaignChunks>(&campaign.campaign_id, &chunks),
            )
            .await?;
        if committed {
            tracing::info!(order = %order.order_id, campaign = %record.campaign_id, "order's OS release sealed for the factory");
            return Ok(record);
        }
        // Another replica (or station) sealed it first.
        self.db
            .get::<FactoryReleaseRecord>(&order.order_id)
            .await?
            .map(|r| r.record)
            .ok_or_else(|| E::Unavailable("the order's OS release is being sealed; retry".into()))
    }
}
