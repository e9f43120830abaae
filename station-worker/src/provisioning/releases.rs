//! The release cache: a lease names its bootloader (and test application) by digest; the images
//! are fetched from the coordinator once, checked against their digest, kept under
//! `<state-dir>/releases/` (so a journaled lease can resume while the coordinator is down) and
//! verified under the lease's vendor key before they become an [`OrderPlan`].

use std::path::{Path, PathBuf};

use flashgate_proto::v1::LeaseBody;
use flashgate_protocol::image::SignedImageHeader;
use flashgate_protocol::ErrorCode;
use sha2::{Digest, Sha256};

use super::{LoaderImage, OrderPlan};
use crate::coordinator_client::CoordinatorClient;

/// Why a lease's images cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// A journaled lease from a coordinator that did not sign the vendor key in yet, and no pin.
    #[error("lease {lease_id} carries no vendor key and none is pinned (--vendor-key)")]
    NoVendorKey {
        /// The lease.
        lease_id: String,
    },
    /// The lease's vendor key is not 32 bytes.
    #[error("lease {lease_id} carries a vendor key of {len} bytes, not 32")]
    BadVendorKey {
        /// The lease.
        lease_id: String,
        /// Its length.
        len: usize,
    },
    /// The lease names another vendor key than the station's pin.
    #[error("lease {lease_id} names vendor key {named} but this station is pinned to {pinned}: refusing to install")]
    VendorKeyPin {
        /// The lease.
        lease_id: String,
        /// The key in the lease, hex.
        named: String,
        /// The pinned key, hex.
        pinned: String,
    },
    /// The coordinator did not hand the image out.
    #[error("fetching release {digest}: {status}")]
    Fetch {
        /// The image's digest, hex.
        digest: String,
        /// The coordinator's answer.
        status: Box<tonic::Status>,
    },
    /// The coordinator's image does not hash to the digest the lease names.
    #[error("release {digest} does not hash to its digest")]
    DigestMismatch {
        /// The digest, hex.
        digest: String,
    },
    /// An image is malformed or its vendor signature does not verify under the lease's key.
    #[error("{what} release does not verify under the lease's vendor key: {code}")]
    Unverified {
        /// `bootloader` or `test application`.
        what: &'static str,
        /// Why.
        code: ErrorCode,
    },
    /// An image the plan cannot use (it verified, so this is a station bug).
    #[error("{0}")]
    Plan(#[from] super::StationFault),
    /// The cache directory could not be written.
    #[error("release cache {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ReleaseError {
    /// True when the coordinator could not be reached (retry later); the rest are for good.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Fetch { status, .. } if crate::coordinator_client::transient(status))
    }
}

/// Release images cached under the state directory, and the loader every plan uses.
#[derive(Clone)]
pub struct ReleaseCache {
    dir: PathBuf,
    loader: LoaderImage,
    pinned_vendor: Option<[u8; 32]>,
}

impl ReleaseCache {
    /// A cache in `dir`; `pinned_vendor` is the station's optional cross-check of the vendor key.
    pub fn new(
        dir: impl Into<PathBuf>,
        loader: LoaderImage,
        pinned_vendor: Option<[u8; 32]>,
    ) -> Self {
        Self {
            dir: dir.into(),
            loader,
            pinned_vendor,
        }
    }

    /// The plan for `lease`'s targets: its images (cached, else fetched), verified under the
    /// vendor key the lease names.
    pub async fn plan(
        &self,
        client: &CoordinatorClient,
        lease: &LeaseBody,
    ) -> Result<OrderPlan, ReleaseError> {
        let vendor_public = lease_vendor_key(lease, self.pinned_vendor)?;
        let bootloader = self.image(client, &lease.bootloader_digest).await?;
        verify(&bootloader, &vendor_public, "bootloader")?;
        let mut plan = OrderPlan::new(self.loader.clone(), bootloader, lease.product_id)?;
        // The bootloader decides what boots through the keys it pins: the vendor key that
        // signed it must be one of them (the loader refuses a mismatch too).
        if plan.anchors().vendor_public != vendor_public {
            return Err(super::StationFault::BadBootloaderImage(
                flashgate_protocol::ErrorCode::TrustAnchorMismatch,
            )
            .into());
        }
        if !lease.test_app_digest.is_empty() {
            let app = self.image(client, &lease.test_app_digest).await?;
            verify(&app, &vendor_public, "test application")?;
            plan = plan.with_test_app(app)?;
        }
        Ok(plan)
    }

    async fn image(
        &self,
        client: &CoordinatorClient,
        digest: &[u8],
    ) -> Result<Vec<u8>, ReleaseError> {
        let path = self.dir.join(format!("{}.img", hex::encode(digest)));
        if let Ok(bytes) = std::fs::read(&path) {
            if Sha256::digest(&bytes).as_slice() == digest {
                return Ok(bytes);
            }
        }
        let image = client
            .fetch_release(digest)
            .await
            .map_err(|status| ReleaseError::Fetch {
                digest: hex::encode(digest),
                status: Box::new(status),
            })?;
        if Sha256::digest(&image).as_slice() != digest {
            return Err(ReleaseError::DigestMismatch {
                digest: hex::encode(digest),
            });
        }
        write_cached(&self.dir, &path, &image)?;
        Ok(image)
    }
}

fn write_cached(dir: &Path, path: &Path, image: &[u8]) -> Result<(), ReleaseError> {
    let io = |source| ReleaseError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(path, image).map_err(io)
}

fn verify(image: &[u8], vendor_public: &[u8; 32], what: &'static str) -> Result<(), ReleaseError> {
    SignedImageHeader::parse(image)
        .and_then(|h| h.verify(vendor_public).map(|_| ()))
        .map_err(|code| ReleaseError::Unverified { what, code })
}

/// The vendor key the lease's releases must verify under: the one the coordinator signed into
/// the lease, cross-checked against the station's pin when there is one.
pub fn lease_vendor_key(
    body: &LeaseBody,
    pinned: Option<[u8; 32]>,
) -> Result<[u8; 32], ReleaseError> {
    if body.vendor_public_key.is_empty() {
        // A journaled lease from a coordinator that did not sign the key in yet.
        return pinned.ok_or_else(|| ReleaseError::NoVendorKey {
            lease_id: body.lease_id.clone(),
        });
    }
    let from_lease: [u8; 32] =
        body.vendor_public_key
            .as_slice()
            .try_into()
            .map_err(|_| ReleaseError::BadVendorKey {
                lease_id: body.lease_id.clone(),
                len: body.vendor_public_key.len(),
            })?;
    match pinned {
        Some(pinned) if pinned != from_lease => Err(ReleaseError::VendorKeyPin {
            lease_id: body.lease_id.clone(),
            named: hex::encode(from_lease),
            pinned: hex::encode(pinned),
        }),
        _ => Ok(from_lease),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease_with(key: &[u8]) -> LeaseBody {
        LeaseBody {
            lease_id: "lease-1".into(),
            vendor_public_key: key.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn the_vendor_key_comes_from_the_lease_and_a_pin_must_match() {
        let key = [7u8; 32];
        assert_eq!(lease_vendor_key(&lease_with(&key), None).unwrap(), key);
        assert_eq!(lease_vendor_key(&lease_with(&key), Some(key)).unwrap(), key);
        assert!(matches!(
            lease_vendor_key(&lease_with(&key), Some([8u8; 32])),
            Err(ReleaseError::VendorKeyPin { .. })
        ));
        assert!(matches!(
            lease_vendor_key(&lease_with(&[7u8; 31]), None),
            Err(ReleaseError::BadVendorKey { len: 31, .. })
        ));
        // An older lease without the key: only the pin can stand in.
        assert!(matches!(
            lease_vendor_key(&lease_with(&[]), None),
            Err(ReleaseError::NoVendorKey { .. })
        ));
        assert_eq!(lease_vendor_key(&lease_with(&[]), Some(key)).unwrap(), key);
    }
}
