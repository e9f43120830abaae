//! Provisioning over the debug link: the station and the RAM flash loader.
//!
//! See `docs/protocol.md` for the whole exchange. In short: the station writes the loader and
//! a [`ParamBlock`] into RAM and starts it; the loader answers with a [`LoaderHello`] in the
//! mailbox; both derive [`SessionKeys`](crate::key_schedule::SessionKeys); then every request
//! is a sealed frame ([`crate::sealed_frame`]) carrying one [`messages`] plaintext, and every
//! reply is sealed the other way.

pub mod messages;
pub mod station;
pub mod target;

use crate::codec::{self, Codec, Reader, Writer};
use crate::key_schedule::JOB_NONCE_LEN;
use crate::{ErrorCode, Serial};

/// Magic of the loader image header at `LOADER_BASE` ("FGDL").
pub const LOADER_IMAGE_MAGIC: u32 = 0x4C44_4746;
/// Loader image header version.
pub const LOADER_IMAGE_VERSION: u32 = 1;

/// The five words at the start of a loader image, telling the station how to run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderImageHeader {
    /// Entry function (Thumb bit set).
    pub entry: u32,
    /// Function the loader calls when the station's turn comes (Thumb bit set).
    pub host_yield: u32,
    /// End address of the loaded image.
    pub image_end: u32,
}

impl LoaderImageHeader {
    /// Reads the header at the start of a loader binary.
    pub fn parse(bytes: &[u8]) -> Result<Self, ErrorCode> {
        Self::read(&mut Reader::new(bytes))
    }
}

/// Five little-endian words: magic, version, entry, host_yield, image_end.
impl Codec<'_> for LoaderImageHeader {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u32(LOADER_IMAGE_MAGIC)?;
        w.u32(LOADER_IMAGE_VERSION)?;
        w.u32(self.entry)?;
        w.u32(self.host_yield)?;
        w.u32(self.image_end)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let mut r = Reader::new(r.take(20)?);
        if r.u32()? != LOADER_IMAGE_MAGIC || r.u32()? != LOADER_IMAGE_VERSION {
            return Err(ErrorCode::BadMagic);
        }
        Ok(Self {
            entry: r.u32()?,
            host_yield: r.u32()?,
            image_end: r.u32()?,
        })
    }
}

/// Magic of the parameter block ("FGPB").
pub const PARAMS_MAGIC: u32 = 0x4250_4746;
/// Parameter block format version (2: carries the loader digest).
pub const PARAMS_VERSION: u32 = 2;
/// Encoded size of [`ParamBlock`].
pub const PARAMS_LEN: usize = 8 + 32 + JOB_NONCE_LEN + 32;

/// Written by the station at `PARAMS_ADDR` before it starts the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamBlock {
    /// The station's X25519 public key for this job.
    pub station_public: [u8; 32],
    /// Fresh per job.
    pub job_nonce: [u8; JOB_NONCE_LEN],
    /// SHA-256 of the loader image the station wrote (and read back): the loader binds it into
    /// the transcript and echoes it in its hello instead of hashing its own image. What it
    /// proves, and what not: `docs/protocol.md` §4.
    pub loader_digest: [u8; 32],
}

impl ParamBlock {
    /// The block as the station writes it.
    pub fn to_bytes(&self) -> [u8; PARAMS_LEN] {
        codec::to_array(self)
    }
}

impl Codec<'_> for ParamBlock {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u32(PARAMS_MAGIC)?;
        w.u32(PARAMS_VERSION)?;
        w.put(&self.station_public)?;
        w.put(&self.job_nonce)?;
        w.put(&self.loader_digest)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let mut r = Reader::new(r.take(PARAMS_LEN)?);
        if r.u32()? != PARAMS_MAGIC || r.u32()? != PARAMS_VERSION {
            return Err(ErrorCode::BadMagic);
        }
        Ok(Self {
            station_public: r.array()?,
            job_nonce: r.array()?,
            loader_digest: r.array()?,
        })
    }
}

/// Magic of the loader hello ("FGLH").
pub const HELLO_MAGIC: u32 = 0x484C_4746;
/// Encoded size of [`LoaderHello`].
pub const LOADER_HELLO_LEN: usize = 8 + 32 + 16 + 32;

/// The loader's first output, in clear: everything in it is public.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderHello {
    /// The loader's ephemeral X25519 public key.
    pub loader_public: [u8; 32],
    /// The board's unique ID.
    pub serial: Serial,
    /// The loader digest of the parameter block, echoed (the loader does not measure itself).
    pub loader_digest: [u8; 32],
}

impl Codec<'_> for LoaderHello {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u32(HELLO_MAGIC)?;
        w.u32(PARAMS_VERSION)?;
        w.put(&self.loader_public)?;
        w.put(&self.serial)?;
        w.put(&self.loader_digest)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        if r.u32()? != HELLO_MAGIC || r.u32()? != PARAMS_VERSION {
            return Err(ErrorCode::BadMagic);
        }
        Ok(Self {
            loader_public: r.array()?,
            serial: r.array()?,
            loader_digest: r.array()?,
        })
    }
}

#[cfg(test)]
mod tests;
