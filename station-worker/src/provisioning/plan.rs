//! What a probe actor is given for one target: the order's [`OrderPlan`] (shared by every target
//! of a lease), the lease's [`DeviceKeys`] and, for an order with an OS, where each board's
//! package comes from ([`OsInstall`]), together a [`Job`].

use std::sync::Arc;

use flashgate_protocol::image::SignedImageHeader;
use flashgate_protocol::lease_keys::derive_device_key;
use flashgate_protocol::provisioning::messages::MAX_IMAGE_CHUNK;
use flashgate_protocol::Serial;
use zeroize::Zeroizing;

use super::{LoaderImage, OsInstall, StationFault};

/// Image bytes per sealed frame unless set otherwise.
pub const DEFAULT_CHUNK: usize = 4096;

/// What every target of an order gets: the loader, the vendor-signed bootloader (and factory test
/// application), and the device configuration. Built once per lease by
/// [`ReleaseCache`](super::ReleaseCache), which verifies the images under the lease's vendor key.
#[derive(Clone)]
pub struct OrderPlan {
    loader: LoaderImage,
    bootloader: Vec<u8>,
    bootloader_version: u32,
    test_app: Option<Vec<u8>>,
    product_id: u32,
    vendor_public: [u8; 32],
    rollback_floor: u32,
    chunk_size: usize,
    os_version: Option<u32>,
}

impl OrderPlan {
    /// A plan installing `bootloader` (a vendor-signed image) for `product_id`, trusting
    /// `vendor_public`. The image is parsed here; its signature is the target's to check (and
    /// the release cache's, before it builds a plan).
    pub fn new(
        loader: LoaderImage,
        bootloader: Vec<u8>,
        product_id: u32,
        vendor_public: [u8; 32],
    ) -> Result<Self, StationFault> {
        let header =
            SignedImageHeader::parse(&bootloader).map_err(StationFault::BadBootloaderImage)?;
        Ok(Self {
            loader,
            bootloader_version: header.header.version,
            bootloader,
            test_app: None,
            product_id,
            vendor_public,
            rollback_floor: 1,
            chunk_size: DEFAULT_CHUNK,
            os_version: None,
        })
    }

    /// Every board leaves with OS `version` installed (from per-device packages, after the
    /// lock; the station never holds the image).
    pub fn with_os(mut self, version: u32) -> Self {
        self.os_version = Some(version);
        self
    }

    /// The OS version every board leaves with, if the order installs one.
    pub fn os_version(&self) -> Option<u32> {
        self.os_version
    }

    /// Runs this vendor-signed factory test application on every target before the lock.
    pub fn with_test_app(mut self, signed_app: Vec<u8>) -> Result<Self, StationFault> {
        SignedImageHeader::parse(&signed_app).map_err(StationFault::BadTestApp)?;
        self.test_app = Some(signed_app);
        Ok(self)
    }

    /// Image bytes per sealed frame (64 ..= `MAX_IMAGE_CHUNK`).
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size.clamp(64, MAX_IMAGE_CHUNK);
        self
    }

    /// The RAM flash loader.
    pub fn loader(&self) -> &LoaderImage {
        &self.loader
    }

    /// The vendor-signed bootloader image.
    pub fn bootloader(&self) -> &[u8] {
        &self.bootloader
    }

    /// The bootloader's version (from its signed header).
    pub fn bootloader_version(&self) -> u32 {
        self.bootloader_version
    }

    /// The vendor-signed factory test application, if the order has one.
    pub fn test_app(&self) -> Option<&[u8]> {
        self.test_app.as_deref()
    }

    /// The product the devices become.
    pub fn product_id(&self) -> u32 {
        self.product_id
    }

    /// The vendor key written into each device's configuration.
    pub fn vendor_public(&self) -> [u8; 32] {
        self.vendor_public
    }

    /// The lowest OS version the bootloader will accept.
    pub fn rollback_floor(&self) -> u32 {
        self.rollback_floor
    }

    /// Image bytes per sealed frame.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }
}

/// Derives each device's key from its lease's secret (the coordinator derives the same key
/// when it registers the device). Zeroized on drop; never printed.
#[derive(Clone)]
pub struct DeviceKeys {
    lease_secret: Zeroizing<[u8; 32]>,
    product_id: u32,
}

impl std::fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("product_id", &self.product_id)
            .finish_non_exhaustive()
    }
}

impl DeviceKeys {
    /// Keys under `lease_secret` for `product_id` (a lease's opened secret; tests pick their own).
    pub fn new(lease_secret: Zeroizing<[u8; 32]>, product_id: u32) -> Self {
        Self {
            lease_secret,
            product_id,
        }
    }

    /// The key of the device with `serial`.
    pub fn for_serial(&self, serial: &Serial) -> Zeroizing<[u8; 32]> {
        derive_device_key(&self.lease_secret, self.product_id, serial)
    }
}

/// One target's work, handed to a probe actor's thread: owned, no borrow.
#[derive(Clone, Debug)]
pub struct Job {
    /// What to install.
    pub plan: Arc<OrderPlan>,
    /// The device keys of the lease the slot belongs to.
    pub keys: DeviceKeys,
    /// That lease (spans and reports).
    pub lease_id: String,
    /// The order's OS and where each board's package comes from (`None`: no OS installed).
    pub os: Option<OsInstall>,
}

impl std::fmt::Debug for OrderPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderPlan")
            .field("product_id", &self.product_id)
            .field("bootloader_version", &self.bootloader_version)
            .field("test_app", &self.test_app.is_some())
            .field("os_version", &self.os_version)
            .finish_non_exhaustive()
    }
}
