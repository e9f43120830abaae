//! The release cache: a lease names its bootloader (and test application) by digest; the images
//! are fetched from the coordinator once — sealed to this station's X25519 key and bound to
//! release, station and order ([`flashgate_proto::sealed_release`]) — and kept under
//! `<state-dir>/releases/` exactly as they came, still sealed (so a journaled lease can resume
//! while the coordinator is down). Never the order's OS: boards get it as per-device packages
//! (`super::os_install`). The station's X25519 secret lives only in the identity file,
//! sealed under the station KEK, which is not in the state directory: a copied state directory
//! holds no plaintext image. Opened images live in memory only (wiped on drop), are checked
//! against their digest and verified under the lease's vendor key before they become an
//! [`OrderPlan`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flashgate_proto::v1::LeaseBody;
use flashgate_protocol::image::SignedImageHeader;
use flashgate_protocol::ErrorCode;
use sha2::{Digest, Sha256};

use super::{LoaderImage, OrderPlan};
use crate::coordinator_client::CoordinatorClient;
use crate::identity::StationIdentity;

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
    /// The station pins no vendor key (the pin is mandatory: `crate::station::NoVendorPin`).
    #[error("lease {lease_id}: this station pins no vendor key (--vendor-key, or an enrolment bundle that carries it): refusing to install")]
    NoVendorPin {
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
    /// The lease names another vendor key than the station's pins.
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
    /// The sealed image does not open for this station, release and order.
    #[error("release {digest} does not open with this station's key for this order: {reason}")]
    Sealed {
        /// The digest, hex.
        digest: String,
        /// Why.
        reason: flashgate_proto::sealed_release::SealError,
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
    pinned_vendors: Vec<[u8; 32]>,
    identity: Arc<StationIdentity>,
}

impl ReleaseCache {
    /// A cache in `dir`; `pinned_vendors` are the vendor keys this station accepts (from its
    /// enrolment bundle; empty: the lease's); `identity` opens the sealed images.
    pub fn new(
        dir: impl Into<PathBuf>,
        loader: LoaderImage,
        pinned_vendors: Vec<[u8; 32]>,
        identity: Arc<StationIdentity>,
    ) -> Self {
        Self {
            dir: dir.into(),
            loader,
            pinned_vendors,
            identity,
        }
    }

    /// The plan for `lease`'s targets: its images (cached, else fetched), verified under the
    /// vendor key the lease names.
    pub async fn plan(
        &self,
        client: &CoordinatorClient,
        lease: &LeaseBody,
    ) -> Result<OrderPlan, ReleaseError> {
        let vendor_public = lease_vendor_key(lease, &self.pinned_vendors)?;
        let mut bootloader = self
            .image(client, &lease.bootloader_digest, &lease.order_id)
            .await?;
        verify(&bootloader, &vendor_public, "bootloader")?;
        let mut plan = OrderPlan::new(
            self.loader.clone(),
            std::mem::take(&mut *bootloader),
            lease.product_id,
        )?;
        // The bootloader decides what boots through the keys it pins: the vendor key that
        // signed it must be one of them (the loader refuses a mismatch too).
        if plan.anchors().vendor_public != vendor_public {
            return Err(super::StationFault::BadBootloaderImage(
                flashgate_protocol::ErrorCode::TrustAnchorMismatch,
            )
            .into());
        }
        if !lease.test_app_digest.is_empty() {
            let mut app = self
                .image(client, &lease.test_app_digest, &lease.order_id)
                .await?;
            verify(&app, &vendor_public, "test application")?;
            plan = plan.with_test_app(std::mem::take(&mut *app))?;
        }
        // The OS is never fetched: each board's package is asked for when it is installed.
        if !lease.os_release_digest.is_empty() {
            plan = plan.with_os(lease.os_version);
        }
        Ok(plan)
    }

    async fn image(
        &self,
        client: &CoordinatorClient,
        digest: &[u8],
        order_id: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ReleaseError> {
        let path = self.dir.join(format!(
            "{}-{}.sealed",
            hex::encode(digest),
            hex::encode(order_id.as_bytes())
        ));
        if let Ok(sealed) = std::fs::read(&path) {
            if let Ok(image) = self.open(digest, order_id, &sealed) {
                return Ok(image);
            }
        }
        let sealed = client
            .fetch_release(digest, order_id)
            .await
            .map_err(|status| ReleaseError::Fetch {
                digest: hex::encode(digest),
                status: Box::new(status),
            })?;
        let image = self.open(digest, order_id, &sealed)?;
        write_cached(&self.dir, &path, &sealed)?;
        Ok(image)
    }

    /// Opens a sealed image and checks its digest; the plaintext is wiped when dropped.
    fn open(
        &self,
        digest: &[u8],
        order_id: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ReleaseError> {
        use flashgate_proto::sealed_release;
        let digest_hex = hex::encode(digest);
        let digest32: [u8; 32] = digest
            .try_into()
            .map_err(|_| ReleaseError::DigestMismatch {
                digest: digest_hex.clone(),
            })?;
        let aad = sealed_release::aad(&digest32, &self.identity.station_id(), order_id);
        let image = sealed_release::open(self.identity.x25519_secret(), &aad, sealed).map_err(
            |reason| ReleaseError::Sealed {
                digest: digest_hex.clone(),
                reason,
            },
        )?;
        if Sha256::digest(&image[..]).as_slice() != digest {
            return Err(ReleaseError::DigestMismatch { digest: digest_hex });
        }
        Ok(image)
    }
}

fn write_cached(dir: &Path, path: &Path, sealed: &[u8]) -> Result<(), ReleaseError> {
    let io = |source| ReleaseError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(path, sealed).map_err(io)
}

fn verify(image: &[u8], vendor_public: &[u8; 32], what: &'static str) -> Result<(), ReleaseError> {
    SignedImageHeader::parse(image)
        .and_then(|h| h.verify(vendor_public).map(|_| ()))
        .map_err(|code| ReleaseError::Unverified { what, code })
}

/// The vendor key the lease's releases must verify under: the one the coordinator signed into
/// the lease, which must be one of the station's pins (a station pins at least one).
pub fn lease_vendor_key(body: &LeaseBody, pinned: &[[u8; 32]]) -> Result<[u8; 32], ReleaseError> {
    if pinned.is_empty() {
        return Err(ReleaseError::NoVendorPin {
            lease_id: body.lease_id.clone(),
        });
    }
    if body.vendor_public_key.is_empty() {
        // A journaled lease from a coordinator that did not sign the key in yet.
        return match pinned {
            [only] => Ok(*only),
            _ => Err(ReleaseError::NoVendorKey {
                lease_id: body.lease_id.clone(),
            }),
        };
    }
    let from_lease: [u8; 32] =
        body.vendor_public_key
            .as_slice()
            .try_into()
            .map_err(|_| ReleaseError::BadVendorKey {
                lease_id: body.lease_id.clone(),
                len: body.vendor_public_key.len(),
            })?;
    if !pinned.contains(&from_lease) {
        return Err(ReleaseError::VendorKeyPin {
            lease_id: body.lease_id.clone(),
            named: hex::encode(from_lease),
            pinned: pinned
                .iter()
                .map(hex::encode)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(from_lease)
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
        assert_eq!(lease_vendor_key(&lease_with(&key), &[key]).unwrap(), key);
        // No pin: refused whatever the lease names (the pin is mandatory).
        assert!(matches!(
            lease_vendor_key(&lease_with(&key), &[]),
            Err(ReleaseError::NoVendorPin { .. })
        ));
        assert_eq!(
            lease_vendor_key(&lease_with(&key), &[[8u8; 32], key]).unwrap(),
            key
        );
        assert!(matches!(
            lease_vendor_key(&lease_with(&key), &[[8u8; 32]]),
            Err(ReleaseError::VendorKeyPin { .. })
        ));
        assert!(matches!(
            lease_vendor_key(&lease_with(&[7u8; 31]), &[key]),
            Err(ReleaseError::BadVendorKey { len: 31, .. })
        ));
        // An older lease without the key: only the pin can stand in (one pin, not several).
        assert!(matches!(
            lease_vendor_key(&lease_with(&[]), &[key, [8u8; 32]]),
            Err(ReleaseError::NoVendorKey { .. })
        ));
        assert_eq!(lease_vendor_key(&lease_with(&[]), &[key]).unwrap(), key);
    }
}
