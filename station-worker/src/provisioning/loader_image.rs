use flashgate_protocol::provisioning::LoaderImageHeader;
use flashgate_protocol::ErrorCode;
use sha2::{Digest, Sha256};

use super::StationFault;
use flashgate_protocol::layout::LOADER_MAX;

/// The RAM flash loader binary, with its header read and its digest computed once.
#[derive(Clone)]
pub struct LoaderImage {
    bytes: Vec<u8>,
    header: LoaderImageHeader,
    digest: [u8; 32],
}

impl LoaderImage {
    /// Checks a loader binary (as built by `cargo xtask firmware`).
    pub fn new(bytes: Vec<u8>) -> Result<Self, StationFault> {
        let header = LoaderImageHeader::parse(&bytes).map_err(StationFault::BadLoaderImage)?;
        if bytes.len() > LOADER_MAX as usize {
            return Err(StationFault::BadLoaderImage(ErrorCode::ImageTooLarge));
        }
        let digest = Sha256::digest(&bytes).into();
        Ok(Self {
            bytes,
            header,
            digest,
        })
    }

    /// Reads a loader binary from a file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, std::io::Error> {
        let bytes = std::fs::read(path)?;
        Self::new(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// The binary.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Entry, `host_yield` and end addresses.
    pub fn header(&self) -> &LoaderImageHeader {
        &self.header
    }

    /// SHA-256 of the binary: the parameter block states it, the loader binds it into the
    /// session keys and echoes it in its hello.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}
