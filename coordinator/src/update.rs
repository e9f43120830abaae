//! Updates: publishing a release to devices, issuing each device its package, and checking
//! the status receipts devices send back (`docs/protocol.md` §7).
//!
//! | key | value |
//! | --- | --- |
//! | `update_campaigns/{id}` | [`CampaignRecord`] (content key sealed under the KEK) |
//! | `update_chunks/{id}` | the release's ciphertext chunks, concatenated |
//! | `device_updates/{product_id:010}/{serial}` | [`DeviceUpdateRecord`] |
//!
//! The release is encrypted once at publish; a device's envelope (212 bytes: the content key
//! wrapped under a key derived from its device key) is made when its package is asked for.

use std::sync::Arc;

use flashgate_proto::v1::{self, update_service_server::UpdateService};
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::image::{ImageKind, SIGNED_HEADER_LEN};
use flashgate_protocol::update::boot_state::Outcome;
use flashgate_protocol::update::package::{SealedRelease, CHUNK_SIZE, TAG_LEN};
use flashgate_protocol::update::receipt;
use flashgate_protocol::ErrorCode;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::coordinator::{decode_hex, now_ms, parse_serial, random_id, Coordinator};
use crate::error::{CoordinatorError as E, Result};
use crate::records::{encode, release_key, DeviceRecord, ReleaseRecord};
use crate::store::{Guard, Write};

fn campaign_key(id: &str) -> String {
    format!("update_campaigns/{id}")
}
fn chunks_key(id: &str) -> String {
    format!("update_chunks/{id}")
}
fn device_update_prefix(product_id: u32) -> String {
    format!("device_updates/{product_id:010}/")
}
fn device_update_key(product_id: u32, serial_hex: &str) -> String {
    format!("device_updates/{product_id:010}/{serial_hex}")
}
fn content_key_aad(campaign_id: &str) -> Vec<u8> {
    [
        b"flashgate-update-content-key-v1:".as_slice(),
        campaign_id.as_bytes(),
    ]
    .concat()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CampaignRecord {
    pub campaign_id: String,
    pub product_id: u32,
    pub release_digest: String,
    pub version: u32,
    /// Signed image header (hex), 128 bytes.
    pub signed_header: String,
    /// The content key sealed under the KEK (hex).
    pub sealed_content_key: String,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeviceUpdateRecord {
    pub serial: String,
    pub product_id: u32,
    pub campaign_id: String,
    pub target_version: u32,
    pub state: String,
    /// Challenge the next receipt must answer (hex); empty when none is outstanding.
    pub challenge: String,
    pub bootloader_version: u32,
    pub os_version: u32,
    pub last_outcome: String,
    pub rollback_floor: u32,
    pub last_seen_ms: i64,
    pub updated_at_ms: i64,
    pub detail: String,
}

fn to_proto(r: &DeviceUpdateRecord) -> v1::DeviceUpdateStatus {
    v1::DeviceUpdateStatus {
        serial: hex::decode(&r.serial).unwrap_or_default(),
        product_id: r.product_id,
        campaign_id: r.campaign_id.clone(),
        target_version: r.target_version,
        state: r.state.clone(),
        bootloader_version: r.bootloader_version,
        os_version: r.os_version,
        last_outcome: r.last_outcome.clone(),
        last_seen_ms: r.last_seen_ms,
        updated_at_ms: r.updated_at_ms,
        rollback_floor: r.rollback_floor,
        detail: r.detail.clone(),
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::None => "none",
        Outcome::Updated => "updated",
        Outcome::RolledBack => "rolled-back",
        Outcome::InProgress => "in-progress",
    }
}

impl Coordinator {
    /// Encrypts an uploaded OS release once and targets devices with it.
    pub async fn publish_update(
        &self,
        req: v1::PublishUpdateRequest,
    ) -> Result<v1::PublishUpdateResponse> {
        let digest_hex = hex::encode(&req.release_digest);
        let (release, _) = self
            .read::<ReleaseRecord>(&release_key(&digest_hex))
            .await?
            .ok_or_else(|| E::NotFound(format!("no release {digest_hex}; upload it first")))?;
        if release.kind != ImageKind::Os as u16 {
            return Err(E::InvalidArgument(
                "only OS releases can be published as updates".into(),
            ));
        }
        let (_, image) = self.release_image(&req.release_digest).await?;
        let mut serials: Vec<String> = req.serials.iter().map(hex::encode).collect();
        for s in &req.serials {
            parse_serial(s)?;
        }
        if req.all_devices || !req.order_id.is_empty() {
            let devices = self
                .read_all::<DeviceRecord>(&crate::records::device_prefix(release.product_id))
                .await?;
            serials.extend(
                devices
                    .into_iter()
                    .map(|(d, _)| d)
                    .filter(|d| req.all_devices || d.order_id == req.order_id)
                    .map(|d| d.serial),
            );
        }
        serials.sort();
        serials.dedup();
        if serials.is_empty() {
            return Err(E::InvalidArgument(
                "no target devices: give serials, an order, or all devices".into(),
            ));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut key[..]);
        let sealed = SealedRelease::seal(&image, key)
            .map_err(|e| E::Internal(format!("release cannot be sealed: {e}")))?;
        let campaign_id = random_id("upd-");
        let campaign = CampaignRecord {
            campaign_id: campaign_id.clone(),
            product_id: release.product_id,
            release_digest: digest_hex,
            version: release.version,
            signed_header: hex::encode(sealed.signed_header),
            sealed_content_key: hex::encode(
                self.kek
                    .seal(&content_key_aad(&campaign_id), sealed.content_key()),
            ),
            created_at_ms: now_ms(),
        };
        let blob: Vec<u8> = sealed.chunks.concat();
        let mut writes = vec![
            Write::Put(campaign_key(&campaign_id), encode(&campaign)),
            Write::Put(chunks_key(&campaign_id), blob),
        ];
        for serial in &serials {
            let key = device_update_key(release.product_id, serial);
            let mut rec = self
                .read::<DeviceUpdateRecord>(&key)
                .await?
                .map(|(r, _)| r)
                .unwrap_or_default();
            rec.serial = serial.clone();
            rec.product_id = release.product_id;
            rec.campaign_id = campaign_id.clone();
            rec.target_version = release.version;
            rec.state = "pending".into();
            rec.challenge.clear();
            rec.detail.clear();
            writes.push(Write::Put(key, encode(&rec)));
        }
        if !self
            .store
            .commit(vec![Guard::Absent(campaign_key(&campaign_id))], writes)
            .await?
        {
            return Err(E::Internal("campaign id collision".into()));
        }
        tracing::info!(campaign = %campaign_id, devices = serials.len(), version = release.version, "update published");
        Ok(v1::PublishUpdateResponse {
            campaign_id,
            devices: serials.len() as u32,
            version: release.version,
        })
    }

    /// Every targeted device of a product (optionally of one campaign).
    pub async fn update_status(
        &self,
        product_id: u32,
        campaign_id: &str,
    ) -> Result<Vec<v1::DeviceUpdateStatus>> {
        Ok(self
            .read_all::<DeviceUpdateRecord>(&device_update_prefix(product_id))
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| campaign_id.is_empty() || r.campaign_id == campaign_id)
            .map(|r| to_proto(&r))
            .collect())
    }

    /// One device's status (registered devices only; "none" before any update).
    pub async fn device_status(
        &self,
        product_id: u32,
        serial: &[u8],
    ) -> Result<v1::DeviceUpdateStatus> {
        let device = self.get_device(product_id, serial).await?;
        let serial_hex = hex::encode(parse_serial(serial)?);
        let rec = self
            .read::<DeviceUpdateRecord>(&device_update_key(product_id, &serial_hex))
            .await?
            .map(|(r, _)| r)
            .unwrap_or_else(|| DeviceUpdateRecord {
                serial: serial_hex,
                product_id,
                state: "none".into(),
                bootloader_version: device.bootloader_version,
                ..Default::default()
            });
        Ok(to_proto(&rec))
    }

    /// The package of one device: its envelope (made now, under its device key), the
    /// campaign's chunks, and a fresh challenge for the receipt.
    pub async fn update_package(
        &self,
        product_id: u32,
        serial: &[u8],
    ) -> Result<v1::UpdatePackage> {
        let serial = parse_serial(serial)?;
        let serial_hex = hex::encode(serial);
        let key = device_update_key(product_id, &serial_hex);
        let (mut rec, revision) =
            self.read::<DeviceUpdateRecord>(&key)
                .await?
                .ok_or_else(|| {
                    E::NotFound(format!("no update is published for device {serial_hex}"))
                })?;
        let (campaign, _) = self
            .read::<CampaignRecord>(&campaign_key(&rec.campaign_id))
            .await?
            .ok_or_else(|| E::Internal("campaign record missing".into()))?;
        let content_key = self.kek.open_key(
            &content_key_aad(&campaign.campaign_id),
            &decode_hex(&campaign.sealed_content_key, "sealed content key")?,
        )?;
        let blob = self
            .store
            .get(&chunks_key(&campaign.campaign_id))
            .await?
            .ok_or_else(|| E::Internal("campaign chunks missing".into()))?
            .value;
        let header: [u8; SIGNED_HEADER_LEN] = decode_hex(&campaign.signed_header, "header")?
            .try_into()
            .map_err(|_| E::Internal("stored header has the wrong length".into()))?;
        let chunks: Vec<Vec<u8>> = blob
            .chunks(CHUNK_SIZE as usize + TAG_LEN)
            .map(<[u8]>::to_vec)
            .collect();
        let release = SealedRelease::from_parts(header, chunks, content_key);
        let device_key = self.device_key(product_id, &serial).await?;
        let envelope = release
            .envelope_for(&serial, product_id, &device_key)
            .map_err(|e| E::Internal(format!("envelope: {e}")))?;
        let mut challenge = [0u8; receipt::CHALLENGE_LEN];
        OsRng.fill_bytes(&mut challenge);
        rec.challenge = hex::encode(challenge);
        if rec.state == "pending" {
            rec.state = "issued".into();
        }
        if !self
            .store
            .commit(
                vec![Guard::Revision(key.clone(), revision)],
                vec![Write::Put(key, encode(&rec))],
            )
            .await?
        {
            return Err(E::FailedPrecondition(
                "the device's update record changed meanwhile; retry".into(),
            ));
        }
        Ok(v1::UpdatePackage {
            campaign_id: campaign.campaign_id,
            version: campaign.version,
            envelope: envelope.to_vec(),
            chunks: release.chunks,
            challenge: challenge.to_vec(),
        })
    }

    /// Checks a device's receipt against its key and the outstanding challenge, and records
    /// what it says. A device is marked updated only by a verified receipt that shows the
    /// target version running and confirmed.
    pub async fn report_update(
        &self,
        req: v1::ReportUpdateRequest,
    ) -> Result<v1::DeviceUpdateStatus> {
        let serial = parse_serial(&req.serial)?;
        let serial_hex = hex::encode(serial);
        let key = device_update_key(req.product_id, &serial_hex);
        let (mut rec, revision) =
            self.read::<DeviceUpdateRecord>(&key)
                .await?
                .ok_or_else(|| {
                    E::NotFound(format!("no update is published for device {serial_hex}"))
                })?;
        let now = now_ms();
        if req.receipt.is_empty() {
            let code = ErrorCode::from_u32(req.refused_code).map_or_else(
                || format!("code {:#x}", req.refused_code),
                |c| c.to_string(),
            );
            rec.state = "refused".into();
            rec.detail = format!("device refused the package (reported by the field tool): {code}");
        } else {
            let challenge: [u8; receipt::CHALLENGE_LEN] = hex::decode(&rec.challenge)
                .ok()
                .and_then(|c| c.try_into().ok())
                .ok_or_else(|| {
                    E::FailedPrecondition(
                        "no receipt challenge outstanding: fetch the package first".into(),
                    )
                })?;
            let device_key = self.device_key(req.product_id, &serial).await?;
            let r = receipt::verify(&device_key, &challenge, &req.receipt).map_err(|e| {
                E::PermissionDenied(format!("the receipt does not verify for this device: {e}"))
            })?;
            if r.serial != serial || r.product_id != req.product_id {
                return Err(E::PermissionDenied(
                    "the receipt names another device".into(),
                ));
            }
            rec.challenge.clear();
            rec.bootloader_version = r.bootloader_version;
            rec.os_version = match r.state {
                DeviceState::OsRunning { version } => version,
                DeviceState::NoValidImage { .. } => 0,
            };
            rec.rollback_floor = r.floor;
            rec.last_outcome = outcome_name(r.outcome).into();
            rec.last_seen_ms = now;
            let confirmed = r.outcome == Outcome::Updated && !r.on_trial();
            rec.state = if confirmed && rec.os_version == rec.target_version {
                rec.updated_at_ms = now;
                "updated".into()
            } else if r.outcome == Outcome::RolledBack && r.new_version == rec.target_version {
                "rolled-back".into()
            } else {
                "in-progress".into()
            };
            rec.detail = match r.state {
                DeviceState::NoValidImage { reason } => format!("no OS running: {reason}"),
                DeviceState::OsRunning { .. } if r.last_error != 0 => {
                    ErrorCode::from_u32(r.last_error)
                        .map_or_else(|| format!("code {:#x}", r.last_error), |c| c.to_string())
                }
                DeviceState::OsRunning { .. } => String::new(),
            };
        }
        if !self
            .store
            .commit(
                vec![Guard::Revision(key.clone(), revision)],
                vec![Write::Put(key, encode(&rec))],
            )
            .await?
        {
            return Err(E::FailedPrecondition(
                "the device's update record changed meanwhile; retry".into(),
            ));
        }
        tracing::info!(serial = %serial_hex, state = %rec.state, os_version = rec.os_version, "update report");
        Ok(to_proto(&rec))
    }
}

/// `flashgate.v1.UpdateService` (operator token on every call).
#[derive(Clone)]
pub struct UpdateApi(pub Arc<Coordinator>);

async fn call<T>(
    c: &Coordinator,
    request: &Request<impl Sized>,
    name: &'static str,
    f: impl std::future::Future<Output = Result<T>>,
) -> std::result::Result<Response<T>, Status> {
    let started = std::time::Instant::now();
    let result = async {
        c.check_operator(request)?;
        f.await
    }
    .await;
    let elapsed_us = started.elapsed().as_micros() as u64;
    match result {
        Ok(v) => {
            tracing::info!(method = name, elapsed_us, code = "OK", "rpc done");
            Ok(Response::new(v))
        }
        Err(e) => {
            let status = Status::from(e);
            tracing::warn!(method = name, elapsed_us, code = ?status.code(), message = status.message(), "rpc refused");
            Err(status)
        }
    }
}

#[tonic::async_trait]
impl UpdateService for UpdateApi {
    async fn publish_update(
        &self,
        request: Request<v1::PublishUpdateRequest>,
    ) -> std::result::Result<Response<v1::PublishUpdateResponse>, Status> {
        let req = request.get_ref().clone();
        call(
            &self.0,
            &request,
            "PublishUpdate",
            self.0.publish_update(req),
        )
        .await
    }
    async fn get_update_status(
        &self,
        request: Request<v1::GetUpdateStatusRequest>,
    ) -> std::result::Result<Response<v1::GetUpdateStatusResponse>, Status> {
        let req = request.get_ref().clone();
        call(&self.0, &request, "GetUpdateStatus", async {
            Ok(v1::GetUpdateStatusResponse {
                devices: self
                    .0
                    .update_status(req.product_id, &req.campaign_id)
                    .await?,
            })
        })
        .await
    }
    async fn get_update_package(
        &self,
        request: Request<v1::GetUpdatePackageRequest>,
    ) -> std::result::Result<Response<v1::UpdatePackage>, Status> {
        let req = request.get_ref().clone();
        call(
            &self.0,
            &request,
            "GetUpdatePackage",
            self.0.update_package(req.product_id, &req.serial),
        )
        .await
    }
    async fn report_update(
        &self,
        request: Request<v1::ReportUpdateRequest>,
    ) -> std::result::Result<Response<v1::DeviceUpdateStatus>, Status> {
        let req = request.get_ref().clone();
        call(&self.0, &request, "ReportUpdate", self.0.report_update(req)).await
    }
    async fn get_device_status(
        &self,
        request: Request<v1::GetDeviceStatusRequest>,
    ) -> std::result::Result<Response<v1::DeviceUpdateStatus>, Status> {
        let req = request.get_ref().clone();
        call(
            &self.0,
            &request,
            "GetDeviceStatus",
            self.0.device_status(req.product_id, &req.serial),
        )
        .await
    }
}
