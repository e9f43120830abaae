//! What a probe actor is given for one target: the order's [`OrderPlan`] (shared by every target
//! of a lease), the [`CertificateIssuer`] that certifies each chip and, for an order with an OS,
//! where each board's package comes from ([`OsInstall`]), together a [`Job`].

use std::sync::Arc;

use flashgate_protocol::certificate::{DeviceCertificate, CERTIFICATE_LEN};
use flashgate_protocol::codec::Codec;
use flashgate_protocol::device_key_transport::SEALED_DEVICE_KEY_LEN;
use flashgate_protocol::hello::CHALLENGE_LEN;
use flashgate_protocol::image::{SignedImageHeader, SIGNED_HEADER_LEN};
use flashgate_protocol::provisioning::messages::MAX_IMAGE_CHUNK;
use flashgate_protocol::trust_anchors::{self, TrustAnchors};
use flashgate_protocol::Serial;

use super::{IssueError, LoaderImage, OsInstall, StationFault};

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
    anchors: TrustAnchors,
    rollback_floor: u32,
    chunk_size: usize,
    os_version: Option<u32>,
}

impl OrderPlan {
    /// A plan installing `bootloader` (a vendor-signed image) for `product_id`. The image is
    /// parsed here; its signature is the target's to check (and the release cache's, before it
    /// builds a plan). The keys each device's configuration names are the ones the bootloader
    /// pins (its trust anchors): the loader refuses any others.
    pub fn new(
        loader: LoaderImage,
        bootloader: Vec<u8>,
        product_id: u32,
    ) -> Result<Self, StationFault> {
        let header =
            SignedImageHeader::parse(&bootloader).map_err(StationFault::BadBootloaderImage)?;
        let anchors = bootloader
            .get(SIGNED_HEADER_LEN..)
            .ok_or(flashgate_protocol::ErrorCode::BadLength)
            .and_then(trust_anchors::read)
            .map_err(StationFault::BadBootloaderImage)?;
        Ok(Self {
            loader,
            bootloader_version: header.header.version,
            bootloader,
            test_app: None,
            product_id,
            anchors,
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

    /// The vendor and authority keys the bootloader pins, written into each device's
    /// configuration.
    pub fn anchors(&self) -> TrustAnchors {
        self.anchors
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

/// What the coordinator gave for one chip (`IssueDeviceCertificate`): its certificate, its
/// device key sealed to this loader run (the station cannot open it), and the challenge the
/// device's hello must answer in the install report.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    /// The chip's certificate, signed by the product's authority key.
    pub certificate: DeviceCertificate,
    /// The device key, sealed to the loader's ephemeral X25519 key.
    pub sealed_device_key: [u8; SEALED_DEVICE_KEY_LEN],
    /// The challenge the coordinator will check the device's hello against.
    pub hello_challenge: [u8; CHALLENGE_LEN],
    /// True when the chip already had this certificate (a retried install: no slot consumed).
    pub reissued: bool,
}

/// Asks the coordinator for one chip's certificate. Blocking (the flow runs on its own thread).
pub trait CertificateIssuer: Send + Sync + std::fmt::Debug {
    /// The certificate of the chip `serial`, its key sealed to `loader_public`, under `lease_id`.
    fn issue(
        &self,
        lease_id: &str,
        serial: &Serial,
        loader_public: &[u8; 32],
    ) -> Result<IssuedCertificate, IssueError>;
}

impl IssuedCertificate {
    /// Decodes `IssueDeviceCertificate`'s answer; `None` if a field has the wrong size.
    pub fn from_response(r: &flashgate_proto::v1::IssueDeviceCertificateResponse) -> Option<Self> {
        let certificate: [u8; CERTIFICATE_LEN] = r.certificate.as_slice().try_into().ok()?;
        Some(Self {
            certificate: DeviceCertificate::read_bytes(&certificate).ok()?,
            sealed_device_key: r.sealed_device_key.as_slice().try_into().ok()?,
            hello_challenge: r.hello_challenge.as_slice().try_into().ok()?,
            reissued: r.reissued,
        })
    }
}

/// One target's work, handed to a probe actor's thread: owned, no borrow.
#[derive(Clone, Debug)]
pub struct Job {
    /// What to install.
    pub plan: Arc<OrderPlan>,
    /// Where each chip's certificate comes from (the coordinator).
    pub issuer: Arc<dyn CertificateIssuer>,
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
