//! Plaintexts carried inside sealed frames during provisioning.
//!
//! Station to target (first byte is the type):
//! ```text
//! 0x01 KeyConfirm      transcript_hash[32]          seq 0 always: proves the station holds its key
//! 0x02 DeviceSecrets   DeviceConfig(92) sealed_device_key[80] certificate[160]
//!                      (the key sealed to this loader run by the coordinator:
//!                      `device_key_transport`; the station never holds it)
//! 0x03 BeginBootloader SignedImageHeader[128]
//! 0x04 ImageData       offset u32, data[..]        offsets strictly consecutive
//! 0x05 Commit          —                           write record, make bootloader bootable
//! 0x06 LockDebugPort   —
//! 0x07 BeginTestApp    SignedImageHeader[128]      after Commit; kind test app, load at TEST_APP_ADDR
//! 0x08 TestAppData     offset u32, data[..]
//! 0x09 RunTestApp      —                           digest checked, then the app is called
//! ```
//! Target to station:
//! ```text
//! 0x81 Ack       seq u32, bytes_programmed u32
//! 0x82 Receipt   serial[16], bootloader_digest[32], record_digest[32], bootloader_version u32
//!                (record_digest = `DeviceRecord::public_digest`: without the device key)
//! 0x83 Locked    serial[16]
//! 0x84 TestResult failed u32, log_len u16, log[log_len ≤ MAX_TEST_LOG]
//! ```

use crate::certificate::DeviceCertificate;
use crate::codec::{Codec, Reader, Writer};
use crate::device_key_transport::SEALED_DEVICE_KEY_LEN;
use crate::device_record::DeviceConfig;
use crate::image::SIGNED_HEADER_LEN;
use crate::sealed_frame;
use crate::{mailbox, ErrorCode, Serial};

/// Largest image piece in one `ImageData`, so a frame always fits the mailbox.
pub const MAX_IMAGE_CHUNK: usize = mailbox::IN_MAX - sealed_frame::OVERHEAD - 5;

/// Most test-log bytes a reply carries (it must fit the mailbox's `out` area).
pub const MAX_TEST_LOG: usize = 400;

/// A request from the station.
#[allow(
    clippy::large_enum_variant,
    reason = "no heap on the loader; one message lives at a time"
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StationMessage<'a> {
    /// Key confirmation (seq 0).
    KeyConfirm {
        /// The transcript hash both sides computed.
        transcript_hash: [u8; 32],
    },
    /// The device's configuration, its key sealed to this loader run, and its certificate.
    DeviceSecrets {
        /// Configuration to store.
        config: DeviceConfig,
        /// The device key, sealed by the coordinator to the loader's ephemeral key.
        sealed_device_key: &'a [u8; SEALED_DEVICE_KEY_LEN],
        /// The authority's certificate for this chip and key.
        certificate: DeviceCertificate,
    },
    /// Start of the bootloader image.
    BeginBootloader {
        /// Vendor-signed header.
        signed_header: &'a [u8; SIGNED_HEADER_LEN],
    },
    /// A piece of the image body.
    ImageData {
        /// Offset of `data` within the body.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// All sent: verify, store, make bootable, answer with a receipt.
    Commit,
    /// Lock the debug port.
    LockDebugPort,
    /// Start of the test application image.
    BeginTestApp {
        /// Vendor-signed header.
        signed_header: &'a [u8; SIGNED_HEADER_LEN],
    },
    /// A piece of the test application body.
    TestAppData {
        /// Offset of `data` within the body.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// Verify and run the test application.
    RunTestApp,
}

mod tag {
    pub const KEY_CONFIRM: u8 = 0x01;
    pub const DEVICE_SECRETS: u8 = 0x02;
    pub const BEGIN_BOOTLOADER: u8 = 0x03;
    pub const IMAGE_DATA: u8 = 0x04;
    pub const COMMIT: u8 = 0x05;
    pub const LOCK_DEBUG_PORT: u8 = 0x06;
    pub const BEGIN_TEST_APP: u8 = 0x07;
    pub const TEST_APP_DATA: u8 = 0x08;
    pub const RUN_TEST_APP: u8 = 0x09;
    pub const TEST_RESULT: u8 = 0x84;
    pub const ACK: u8 = 0x81;
    pub const RECEIPT: u8 = 0x82;
    pub const LOCKED: u8 = 0x83;
}

/// The plaintext of one sealed frame; it fills the frame (`read` takes the rest of the
/// reader for the data messages).
impl<'a> Codec<'a> for StationMessage<'a> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        match self {
            Self::KeyConfirm { transcript_hash } => {
                w.u8(tag::KEY_CONFIRM)?;
                w.put(transcript_hash)
            }
            Self::DeviceSecrets {
                config,
                sealed_device_key,
                certificate,
            } => {
                w.u8(tag::DEVICE_SECRETS)?;
                config.encode(w)?;
                w.put(*sealed_device_key)?;
                certificate.encode(w)
            }
            Self::BeginBootloader { signed_header } => {
                w.u8(tag::BEGIN_BOOTLOADER)?;
                w.put(*signed_header)
            }
            Self::ImageData { offset, data } | Self::TestAppData { offset, data } => {
                if data.len() > MAX_IMAGE_CHUNK {
                    return Err(ErrorCode::BadLength);
                }
                let t = if matches!(self, Self::ImageData { .. }) {
                    tag::IMAGE_DATA
                } else {
                    tag::TEST_APP_DATA
                };
                w.u8(t)?;
                w.u32(*offset)?;
                w.put(data)
            }
            Self::BeginTestApp { signed_header } => {
                w.u8(tag::BEGIN_TEST_APP)?;
                w.put(*signed_header)
            }
            Self::Commit => w.u8(tag::COMMIT),
            Self::LockDebugPort => w.u8(tag::LOCK_DEBUG_PORT),
            Self::RunTestApp => w.u8(tag::RUN_TEST_APP),
        }
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, ErrorCode> {
        Ok(match r.u8()? {
            tag::KEY_CONFIRM => Self::KeyConfirm {
                transcript_hash: r.array()?,
            },
            tag::DEVICE_SECRETS => Self::DeviceSecrets {
                config: DeviceConfig::read(r)?,
                sealed_device_key: r.array_ref()?,
                certificate: DeviceCertificate::read(r)?,
            },
            tag::BEGIN_BOOTLOADER => Self::BeginBootloader {
                signed_header: r.array_ref()?,
            },
            tag::IMAGE_DATA => Self::ImageData {
                offset: r.u32()?,
                data: image_chunk(r)?,
            },
            tag::COMMIT => Self::Commit,
            tag::LOCK_DEBUG_PORT => Self::LockDebugPort,
            tag::BEGIN_TEST_APP => Self::BeginTestApp {
                signed_header: r.array_ref()?,
            },
            tag::TEST_APP_DATA => Self::TestAppData {
                offset: r.u32()?,
                data: image_chunk(r)?,
            },
            tag::RUN_TEST_APP => Self::RunTestApp,
            _ => return Err(ErrorCode::UnknownMessage),
        })
    }
}

/// The rest of the frame as image data, at most [`MAX_IMAGE_CHUNK`] bytes.
fn image_chunk<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], ErrorCode> {
    if r.remaining() > MAX_IMAGE_CHUNK {
        return Err(ErrorCode::BadLength);
    }
    Ok(r.rest())
}

/// What the loader returns after a successful commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The board's serial.
    pub serial: Serial,
    /// SHA-256 of the bootloader as written.
    pub bootloader_digest: [u8; 32],
    /// `DeviceRecord::public_digest` of the record as written (everything but the key).
    pub record_digest: [u8; 32],
    /// Version of the installed bootloader.
    pub bootloader_version: u32,
}

/// A reply from the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetReply<'a> {
    /// Request accepted.
    Ack {
        /// Sequence number of the request.
        seq: u32,
        /// Image bytes programmed so far.
        bytes_programmed: u32,
    },
    /// Commit done.
    Receipt(Receipt),
    /// Debug port locked.
    Locked {
        /// The board's serial.
        serial: Serial,
    },
    /// The test application ran.
    TestResult {
        /// Number of failed checks (0 = pass).
        failed: u32,
        /// Its log (ASCII, one line per check), at most [`MAX_TEST_LOG`] bytes.
        log: &'a [u8],
    },
}

impl Codec<'_> for Receipt {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.put(&self.serial)?;
        w.put(&self.bootloader_digest)?;
        w.put(&self.record_digest)?;
        w.u32(self.bootloader_version)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            serial: r.array()?,
            bootloader_digest: r.array()?,
            record_digest: r.array()?,
            bootloader_version: r.u32()?,
        })
    }
}

/// The plaintext of one sealed reply.
impl<'a> Codec<'a> for TargetReply<'a> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        match self {
            Self::Ack {
                seq,
                bytes_programmed,
            } => {
                w.u8(tag::ACK)?;
                w.u32(*seq)?;
                w.u32(*bytes_programmed)
            }
            Self::Receipt(r) => {
                w.u8(tag::RECEIPT)?;
                r.encode(w)
            }
            Self::Locked { serial } => {
                w.u8(tag::LOCKED)?;
                w.put(serial)
            }
            Self::TestResult { failed, log } => {
                if log.len() > MAX_TEST_LOG {
                    return Err(ErrorCode::BadLength);
                }
                w.u8(tag::TEST_RESULT)?;
                w.u32(*failed)?;
                w.u16(log.len() as u16)?;
                w.put(log)
            }
        }
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, ErrorCode> {
        Ok(match r.u8()? {
            tag::ACK => Self::Ack {
                seq: r.u32()?,
                bytes_programmed: r.u32()?,
            },
            tag::RECEIPT => Self::Receipt(Receipt::read(r)?),
            tag::LOCKED => Self::Locked { serial: r.array()? },
            tag::TEST_RESULT => {
                let failed = r.u32()?;
                let len = usize::from(r.u16()?);
                if len > MAX_TEST_LOG {
                    return Err(ErrorCode::BadLength);
                }
                Self::TestResult {
                    failed,
                    log: r.take(len)?,
                }
            }
            _ => return Err(ErrorCode::UnknownMessage),
        })
    }
}
