//! The coordinator's state and its catalogue operations (products, releases, orders, stations,
//! registry queries). The lease flow is in [`crate::quota`], request authentication in
//! [`crate::auth`].

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use flashgate_proto::v1;
use flashgate_protocol::image::{BodyHasher, ImageKind, SignedImageHeader, SIGNED_HEADER_LEN};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{CoordinatorError as E, Result};
use crate::keys::{device_key_aad, KekRing};
use crate::records::*;
use crate::store::{Guard, KvStore, Write};

/// Tunables; the defaults suit production.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Validity of a lease when the station asks for none.
    pub default_lease_validity: Duration,
    /// Longest validity a station may ask for.
    pub max_lease_validity: Duration,
    /// Most devices one lease may cover.
    pub max_lease_count: u32,
    /// How long after a lease's not-after installs done before it may still be reported.
    pub report_grace: Duration,
    /// Accepted clock difference for signed station requests (each side).
    pub auth_window: Duration,
    /// This replica's name in the leadership record.
    pub node_id: String,
    /// How often the leader looks for expired leases and stale nonces.
    pub sweep_interval: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        let mut id = [0u8; 6];
        OsRng.fill_bytes(&mut id);
        Self {
            default_lease_validity: Duration::from_secs(8 * 3600),
            max_lease_validity: Duration::from_secs(7 * 24 * 3600),
            max_lease_count: 100_000,
            report_grace: Duration::from_secs(3600),
            auth_window: Duration::from_secs(120),
            node_id: format!("coordinator-{}", hex::encode(id)),
            sweep_interval: Duration::from_secs(2),
        }
    }
}

/// Current unix time in milliseconds.
pub fn now_ms() -> i64 {
    flashgate_proto::station_auth::now_ms() as i64
}

pub(crate) fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

pub(crate) fn decode_hex(text: &str, what: &str) -> Result<Vec<u8>> {
    hex::decode(text).map_err(|_| E::Internal(format!("stored {what} is not hex")))
}

/// One coordinator replica: the store, the KEK ring, the lease signing key.
pub struct Coordinator {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) kek: KekRing,
    pub(crate) signing_key: SigningKey,
    pub(crate) operator_token_hash: [u8; 32],
    pub(crate) config: CoordinatorConfig,
}

fn valid_name(name: &str, what: &str) -> Result<()> {
    if name.len() > 128 || name.chars().any(char::is_control) {
        return Err(E::InvalidArgument(format!(
            "{what} must be at most 128 printable characters"
        )));
    }
    Ok(())
}

fn valid_station_id(id: &str) -> Result<()> {
    if id.len() != 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(E::InvalidArgument(format!(
            "station id {id:?} is not a fingerprint (32 lowercase hex characters)"
        )));
    }
    Ok(())
}

pub(crate) fn parse_serial(bytes: &[u8]) -> Result<[u8; 16]> {
    flashgate_proto::serial::from_bytes(bytes).ok_or_else(|| {
        E::InvalidArgument(format!(
            "a serial is the board's 16-byte unique id; got {} bytes",
            bytes.len()
        ))
    })
}

fn image_kind_to_proto(kind: u16) -> i32 {
    match kind {
        1 => v1::ImageKind::Bootloader as i32,
        2 => v1::ImageKind::Os as i32,
        3 => v1::ImageKind::App as i32,
        4 => v1::ImageKind::TestApp as i32,
        _ => v1::ImageKind::Unspecified as i32,
    }
}

impl Coordinator {
    /// A coordinator over `store`. `operator_token` is the bearer token operators present.
    pub fn new(
        store: Arc<dyn KvStore>,
        kek: KekRing,
        signing_key: SigningKey,
        operator_token: &str,
        config: CoordinatorConfig,
    ) -> Self {
        Self {
            store,
            kek,
            signing_key,
            operator_token_hash: Sha256::digest(operator_token.as_bytes()).into(),
            config,
        }
    }

    /// The key stations verify leases with.
    pub fn lease_verifying_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    pub(crate) async fn read<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, i64)>> {
        match self.store.get(key).await? {
            None => Ok(None),
            Some(v) => Ok(Some((decode(key, &v.value)?, v.revision))),
        }
    }

    pub(crate) async fn read_all<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(T, i64)>> {
        let items = self.store.list(prefix).await?;
        items
            .into_iter()
            .map(|(k, v)| Ok((decode(&k, &v.value)?, v.revision)))
            .collect()
    }

    pub fn info(&self) -> v1::CoordinatorInfo {
        v1::CoordinatorInfo {
            lease_signing_public_key: self.lease_verifying_key().to_bytes().to_vec(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    // ---- products -------------------------------------------------------------------------

    pub async fn create_product(&self, req: v1::CreateProductRequest) -> Result<v1::Product> {
        valid_name(&req.name, "a product name")?;
        let key: [u8; 32] = req.vendor_public_key.as_slice().try_into().map_err(|_| {
            E::InvalidArgument(format!(
                "the vendor public key must be a 32-byte ed25519 key; got {} bytes",
                req.vendor_public_key.len()
            ))
        })?;
        VerifyingKey::from_bytes(&key).map_err(|_| {
            E::InvalidArgument("the vendor public key is not a valid ed25519 point".into())
        })?;
        let record = ProductRecord {
            product_id: req.product_id,
            name: req.name,
            vendor_public_key: hex::encode(key),
            created_at_ms: now_ms(),
        };
        let k = product_key(req.product_id);
        if !self
            .store
            .commit(
                vec![Guard::Absent(k.clone())],
                vec![Write::Put(k, encode(&record))],
            )
            .await?
        {
            return Err(E::AlreadyExists(format!(
                "product {} already exists; products are immutable, pick another product id",
                req.product_id
            )));
        }
        Ok(product_to_proto(&record))
    }

    pub async fn list_products(&self) -> Result<Vec<v1::Product>> {
        Ok(self
            .read_all::<ProductRecord>("products/")
            .await?
            .iter()
            .map(|(p, _)| product_to_proto(p))
            .collect())
    }

    pub(crate) async fn product(&self, product_id: u32) -> Result<ProductRecord> {
        Ok(self
            .read::<ProductRecord>(&product_key(product_id))
            .await?
            .ok_or_else(|| {
                E::NotFound(format!(
                    "product {product_id} does not exist; create it with `flashgate product create`"
                ))
            })?
            .0)
    }

    // ---- releases -------------------------------------------------------------------------

    /// Stores a vendor-signed image after checking its signature (against the product's vendor
    /// key) and its body digest.
    pub async fn upload_release(&self, image: &[u8]) -> Result<v1::Release> {
        let signed = SignedImageHeader::parse(image).map_err(|e| {
            E::InvalidArgument(format!(
                "not a flashgate signed image (header: {e:?}); sign releases with the vendor tooling"
            ))
        })?;
        let product = self.product(signed.header.product_id).await?;
        let vendor_key: [u8; 32] = decode_hex(&product.vendor_public_key, "vendor key")?
            .try_into()
            .map_err(|_| E::Internal("stored vendor key has the wrong length".into()))?;
        let header = *signed.verify(&vendor_key).map_err(|_| {
            E::InvalidArgument(format!(
                "the image's vendor signature does not verify against product {}'s vendor key; the release was refused",
                product.product_id
            ))
        })?;
        let mut hasher = BodyHasher::new(header.body_size);
        hasher
            .update(&image[SIGNED_HEADER_LEN..])
            .and_then(|()| hasher.finish(&header.body_digest))
            .map_err(|e| {
                E::InvalidArgument(format!(
                    "the image body does not match its signed header ({e:?}): truncated or altered"
                ))
            })?;
        let digest = hex::encode(Sha256::digest(image));
        let record = ReleaseRecord {
            digest: digest.clone(),
            product_id: header.product_id,
            kind: header.kind as u16,
            version: header.version,
            load_address: header.load_addr,
            body_size: header.body_size,
            body_digest: hex::encode(header.body_digest),
            vendor_signature: hex::encode(signed.signature),
            uploaded_at_ms: now_ms(),
        };
        let key = release_key(&digest);
        let stored = self
            .store
            .commit(
                vec![Guard::Absent(key.clone())],
                vec![
                    Write::Put(image_key(&digest), image.to_vec()),
                    Write::Put(key.clone(), encode(&record)),
                ],
            )
            .await?;
        if !stored {
            // Same bytes, same digest: uploading twice is harmless.
            if let Some((existing, _)) = self.read::<ReleaseRecord>(&key).await? {
                return Ok(release_to_proto(&existing));
            }
        }
        Ok(release_to_proto(&record))
    }

    pub async fn list_releases(&self, product_id: u32) -> Result<Vec<v1::Release>> {
        Ok(self
            .read_all::<ReleaseRecord>("releases/")
            .await?
            .iter()
            .filter(|(r, _)| product_id == 0 || r.product_id == product_id)
            .map(|(r, _)| release_to_proto(r))
            .collect())
    }

    pub(crate) async fn release(&self, digest: &[u8]) -> Result<ReleaseRecord> {
        if digest.len() != 32 {
            return Err(E::InvalidArgument(format!(
                "a release digest is 32 bytes (SHA-256); got {}",
                digest.len()
            )));
        }
        let digest = hex::encode(digest);
        Ok(self
            .read::<ReleaseRecord>(&release_key(&digest))
            .await?
            .ok_or_else(|| {
                E::NotFound(format!("release {digest} does not exist; upload it first"))
            })?
            .0)
    }

    pub async fn release_image(&self, digest: &[u8]) -> Result<(v1::Release, Vec<u8>)> {
        let release = self.release(digest).await?;
        let image = self
            .store
            .get(&image_key(&release.digest))
            .await?
            .ok_or_else(|| {
                E::Internal(format!("image of release {} is missing", release.digest))
            })?;
        Ok((release_to_proto(&release), image.value))
    }

    // ---- orders ---------------------------------------------------------------------------

    pub async fn create_order(&self, req: v1::CreateOrderRequest) -> Result<v1::Order> {
        let product = self.product(req.product_id).await?;
        if req.count == 0 || req.count > 1_000_000_000 {
            return Err(E::InvalidArgument(format!(
                "an order's count must be between 1 and 1000000000; got {}",
                req.count
            )));
        }
        let bootloader = self.release(&req.bootloader_digest).await?;
        if bootloader.kind != ImageKind::Bootloader as u16
            || bootloader.product_id != product.product_id
        {
            return Err(E::InvalidArgument(format!(
                "release {} is not a bootloader of product {}",
                bootloader.digest, product.product_id
            )));
        }
        let test_app_digest = if req.test_app_digest.is_empty() {
            String::new()
        } else {
            let app = self.release(&req.test_app_digest).await?;
            if app.kind != ImageKind::TestApp as u16 || app.product_id != product.product_id {
                return Err(E::InvalidArgument(format!(
                    "release {} is not a test app of product {}",
                    app.digest, product.product_id
                )));
            }
            app.digest
        };
        for id in &req.station_ids {
            valid_station_id(id)?;
        }
        valid_name(&req.factory, "a factory name")?;
        if req.station_ids.is_empty() && req.factory.is_empty() {
            return Err(E::InvalidArgument(
                "an order needs the stations (--station) or the factory (--factory) that may make it".into(),
            ));
        }
        let order_id = if req.order_id.is_empty() {
            random_id("ord-")
        } else {
            if req.order_id.len() > 64
                || !req
                    .order_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(E::InvalidArgument(
                    "an order id is 1-64 characters of letters, digits, '-' and '_'".into(),
                ));
            }
            req.order_id
        };
        let record = OrderRecord {
            order_id: order_id.clone(),
            product_id: product.product_id,
            bootloader_digest: bootloader.digest,
            bootloader_version: bootloader.version,
            test_app_digest,
            station_ids: req.station_ids,
            factory: req.factory,
            count: req.count,
            created_at_ms: now_ms(),
        };
        let created = self
            .store
            .commit(
                vec![
                    Guard::Absent(order_key(&order_id)),
                    Guard::Absent(quota_key(&order_id)),
                ],
                vec![
                    Write::Put(order_key(&order_id), encode(&record)),
                    Write::Put(
                        quota_key(&order_id),
                        encode(&QuotaRecord {
                            remaining: req.count,
                        }),
                    ),
                ],
            )
            .await?;
        if !created {
            return Err(E::AlreadyExists(format!("order {order_id} already exists")));
        }
        Ok(order_to_proto(&record))
    }

    pub(crate) async fn order(&self, order_id: &str) -> Result<OrderRecord> {
        if order_id.is_empty() {
            return Err(E::InvalidArgument("an order id is required".into()));
        }
        Ok(self
            .read::<OrderRecord>(&order_key(order_id))
            .await?
            .ok_or_else(|| {
                E::NotFound(format!(
                    "order {order_id} does not exist; list orders with `flashgate orders status`"
                ))
            })?
            .0)
    }

    pub async fn order_status(&self, order_id: &str) -> Result<v1::OrderStatus> {
        let order = self.order(order_id).await?;
        let leases = self.read_all::<LeaseRecord>("leases/").await?;
        self.status_of(&order, &leases).await
    }

    async fn status_of(
        &self,
        order: &OrderRecord,
        leases: &[(LeaseRecord, i64)],
    ) -> Result<v1::OrderStatus> {
        let quota = self
            .read::<QuotaRecord>(&quota_key(&order.order_id))
            .await?
            .ok_or_else(|| E::Internal(format!("quota of order {} is missing", order.order_id)))?
            .0;
        let failed = self
            .store
            .list(&failure_prefix(&order.order_id))
            .await?
            .len() as u64;
        let mut status = v1::OrderStatus {
            order: Some(order_to_proto(order)),
            remaining: quota.remaining,
            failed,
            ..Default::default()
        };
        for (lease, _) in leases.iter().filter(|(l, _)| l.order_id == order.order_id) {
            status.consumed += u64::from(lease.used);
            if lease.state == LeaseState::Active {
                status.reserved += u64::from(lease.count - lease.used);
                status.active_leases += 1;
            }
        }
        Ok(status)
    }

    pub async fn list_orders(&self) -> Result<Vec<v1::OrderStatus>> {
        let leases = self.read_all::<LeaseRecord>("leases/").await?;
        let mut out = Vec::new();
        for (order, _) in self.read_all::<OrderRecord>("orders/").await? {
            out.push(self.status_of(&order, &leases).await?);
        }
        Ok(out)
    }

    pub(crate) fn station_may_work_on(station: &StationRecord, order: &OrderRecord) -> bool {
        if order.station_ids.is_empty() {
            !order.factory.is_empty() && order.factory == station.factory
        } else {
            order.station_ids.contains(&station.station_id)
        }
    }

    pub async fn assigned_orders(&self, station: &StationRecord) -> Result<Vec<v1::Order>> {
        Ok(self
            .read_all::<OrderRecord>("orders/")
            .await?
            .iter()
            .filter(|(o, _)| Self::station_may_work_on(station, o))
            .map(|(o, _)| order_to_proto(o))
            .collect())
    }

    // ---- stations -------------------------------------------------------------------------

    pub async fn list_stations(&self, state: i32) -> Result<Vec<v1::Station>> {
        Ok(self
            .read_all::<StationRecord>("stations/")
            .await?
            .iter()
            .map(|(s, _)| station_to_proto(s))
            .filter(|s| state == 0 || s.state == state)
            .collect())
    }

    async fn set_station_state(
        &self,
        station_id: &str,
        state: StationState,
    ) -> Result<v1::Station> {
        valid_station_id(station_id)?;
        let key = station_key(station_id);
        for _ in 0..16 {
            let (mut station, revision) = self
                .read::<StationRecord>(&key)
                .await?
                .ok_or_else(|| {
                    E::NotFound(format!(
                        "no station with fingerprint {station_id} has enrolled; check the fingerprint the station printed"
                    ))
                })?;
            station.state = state;
            if state == StationState::Approved {
                station.approved_at_ms = now_ms();
            }
            if self
                .store
                .commit(
                    vec![Guard::Revision(key.clone(), revision)],
                    vec![Write::Put(key.clone(), encode(&station))],
                )
                .await?
            {
                tracing::info!(station = %station_id, ?state, "station state changed");
                return Ok(station_to_proto(&station));
            }
        }
        Err(E::Unavailable(
            "the station record kept changing; retry".into(),
        ))
    }

    pub async fn approve_station(&self, station_id: &str) -> Result<v1::Station> {
        self.set_station_state(station_id, StationState::Approved)
            .await
    }

    pub async fn revoke_station(&self, station_id: &str) -> Result<v1::Station> {
        self.set_station_state(station_id, StationState::Revoked)
            .await
    }

    // ---- registry -------------------------------------------------------------------------

    pub async fn get_device(&self, product_id: u32, serial: &[u8]) -> Result<v1::Device> {
        let serial = parse_serial(serial)?;
        let hex_serial = hex::encode(serial);
        let (device, _) = self
            .read::<DeviceRecord>(&device_key(product_id, &hex_serial))
            .await?
            .ok_or_else(|| {
                E::NotFound(format!(
                    "no device {hex_serial} is registered for product {product_id}"
                ))
            })?;
        Ok(device_to_proto(&device))
    }

    pub async fn list_devices(&self, req: &v1::ListDevicesRequest) -> Result<Vec<v1::Device>> {
        let prefix = if req.product_id == 0 {
            "devices/".to_owned()
        } else {
            device_prefix(req.product_id)
        };
        let serial = if req.serial.is_empty() {
            None
        } else {
            Some(hex::encode(parse_serial(&req.serial)?))
        };
        let limit = if req.limit == 0 {
            usize::MAX
        } else {
            req.limit as usize
        };
        Ok(self
            .read_all::<DeviceRecord>(&prefix)
            .await?
            .iter()
            .map(|(d, _)| d)
            .filter(|d| req.order_id.is_empty() || d.order_id == req.order_id)
            .filter(|d| req.station_id.is_empty() || d.station_id == req.station_id)
            .filter(|d| req.from_ms == 0 || d.installed_at_ms >= req.from_ms)
            .filter(|d| req.to_ms == 0 || d.installed_at_ms < req.to_ms)
            .filter(|d| serial.as_ref().is_none_or(|s| *s == d.serial))
            .take(limit)
            .map(device_to_proto)
            .collect())
    }

    /// Recovers a registered device's key (opened from its KEK-sealed form). For the update
    /// and data paths; never sent over the API, never logged.
    pub async fn device_key(
        &self,
        product_id: u32,
        serial: &[u8; 16],
    ) -> Result<Zeroizing<[u8; 32]>> {
        let (device, _) = self
            .read::<DeviceRecord>(&device_key(product_id, &hex::encode(serial)))
            .await?
            .ok_or_else(|| E::NotFound("device is not registered".into()))?;
        let sealed = decode_hex(&device.sealed_device_key, "sealed device key")?;
        Ok(self
            .kek
            .open_key(&device_key_aad(product_id, serial), &sealed)?)
    }
}

pub(crate) fn product_to_proto(p: &ProductRecord) -> v1::Product {
    v1::Product {
        product_id: p.product_id,
        name: p.name.clone(),
        vendor_public_key: hex::decode(&p.vendor_public_key).unwrap_or_default(),
        created_at_ms: p.created_at_ms,
    }
}

pub(crate) fn release_to_proto(r: &ReleaseRecord) -> v1::Release {
    v1::Release {
        digest: hex::decode(&r.digest).unwrap_or_default(),
        product_id: r.product_id,
        kind: image_kind_to_proto(r.kind),
        version: r.version,
        load_address: r.load_address,
        body_size: r.body_size,
        body_digest: hex::decode(&r.body_digest).unwrap_or_default(),
        vendor_signature: hex::decode(&r.vendor_signature).unwrap_or_default(),
        uploaded_at_ms: r.uploaded_at_ms,
    }
}

pub(crate) fn order_to_proto(o: &OrderRecord) -> v1::Order {
    v1::Order {
        order_id: o.order_id.clone(),
        product_id: o.product_id,
        bootloader_digest: hex::decode(&o.bootloader_digest).unwrap_or_default(),
        test_app_digest: hex::decode(&o.test_app_digest).unwrap_or_default(),
        station_ids: o.station_ids.clone(),
        factory: o.factory.clone(),
        count: o.count,
        created_at_ms: o.created_at_ms,
    }
}

pub(crate) fn station_to_proto(s: &StationRecord) -> v1::Station {
    v1::Station {
        station_id: s.station_id.clone(),
        ed25519_public_key: hex::decode(&s.ed25519_public_key).unwrap_or_default(),
        x25519_public_key: hex::decode(&s.x25519_public_key).unwrap_or_default(),
        name: s.name.clone(),
        factory: s.factory.clone(),
        state: match s.state {
            StationState::Pending => v1::StationState::Pending,
            StationState::Approved => v1::StationState::Approved,
            StationState::Revoked => v1::StationState::Revoked,
        } as i32,
        enrolled_at_ms: s.enrolled_at_ms,
        approved_at_ms: s.approved_at_ms,
    }
}

pub(crate) fn device_to_proto(d: &DeviceRecord) -> v1::Device {
    v1::Device {
        serial: hex::decode(&d.serial).unwrap_or_default(),
        product_id: d.product_id,
        order_id: d.order_id.clone(),
        lease_id: d.lease_id.clone(),
        station_id: d.station_id.clone(),
        installed_at_ms: d.installed_at_ms,
        registered_at_ms: d.registered_at_ms,
        bootloader_version: d.bootloader_version,
        test_result: Some(v1::TestResult {
            outcome: d.test_outcome,
            log: d.test_log.clone(),
        }),
        outcome: d.outcome,
    }
}

pub(crate) fn failure_to_proto(f: &FailureRecord) -> v1::InstallFailure {
    v1::InstallFailure {
        order_id: f.order_id.clone(),
        lease_id: f.lease_id.clone(),
        station_id: f.station_id.clone(),
        product_id: f.product_id,
        serial: hex::decode(&f.serial).unwrap_or_default(),
        reason: f.reason.clone(),
        failed_at_ms: f.failed_at_ms,
        recorded_at_ms: f.recorded_at_ms,
        test_result: Some(v1::TestResult {
            outcome: f.test_outcome,
            log: f.test_log.clone(),
        }),
    }
}

pub(crate) fn lease_to_proto(l: &LeaseRecord) -> v1::LeaseInfo {
    v1::LeaseInfo {
        lease_id: l.lease_id.clone(),
        station_id: l.station_id.clone(),
        order_id: l.order_id.clone(),
        count: l.count,
        used: l.used,
        state: match l.state {
            LeaseState::Active => v1::LeaseState::Active,
            LeaseState::Returned => v1::LeaseState::Returned,
            LeaseState::Expired => v1::LeaseState::Expired,
        } as i32,
        issued_at_ms: l.issued_at_ms,
        not_after_ms: l.not_after_ms,
        released: l.released,
    }
}
