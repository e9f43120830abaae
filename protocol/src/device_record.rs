//! The device record: identity, configuration, secret key and certificate, written once by
//! the flash loader into its own flash page and read by the bootloader at every reset.
//!
//! ```text
//! magic "FGDR" u32 | format u32 = 2 | config (DeviceConfig, 92 B) | device_key [32]
//! bootloader_version u32 | bootloader_size u32 | bootloader_digest [32]
//! certificate (DeviceCertificate, 160 B) | check [16]
//! DeviceConfig = serial [16] | product_id u32 | vendor_public [32] | authority_public [32]
//!                | rollback_floor u32 | flags u32
//! ```
//! `check` is the first 16 bytes of SHA-256 over everything before it. It catches a torn or
//! erased page, not an attacker: the record's confidentiality rests on the debug-port lock, and
//! what it may claim rests on the certificate the boot checks verify (`boot::check_identity`).

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::certificate::{DeviceCertificate, CERTIFICATE_LEN};
use crate::codec::{self, Codec, Reader, Writer};
use crate::{ErrorCode, Serial};

/// Magic of a device record ("FGDR").
pub const RECORD_MAGIC: u32 = 0x5244_4746;
/// Record format this build writes.
pub const RECORD_FORMAT: u32 = 2;
/// Encoded size of [`DeviceConfig`].
pub const CONFIG_LEN: usize = 16 + 4 + 32 + 32 + 4 + 4;
/// Encoded size of [`DeviceRecord`].
pub const RECORD_LEN: usize = 8 + CONFIG_LEN + 32 + 4 + 4 + 32 + CERTIFICATE_LEN + 16;
/// Offset of the device key in the encoded record.
const KEY_OFFSET: usize = 8 + CONFIG_LEN;

/// What the factory configures into a device: sent by the station, stored by the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Must equal the board's unique ID.
    pub serial: Serial,
    /// The product this device is.
    pub product_id: u32,
    /// The vendor's ed25519 key that signs every image this device accepts; must be the one
    /// pinned in the bootloader it is installed with.
    pub vendor_public: [u8; 32],
    /// The product's authority ed25519 key that signed the device certificate; must be the one
    /// pinned in the bootloader.
    pub authority_public: [u8; 32],
    /// Lowest image version the bootloader accepts.
    pub rollback_floor: u32,
    /// Reserved for flags; zero.
    pub flags: u32,
}

impl Codec<'_> for DeviceConfig {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.put(&self.serial)?;
        w.u32(self.product_id)?;
        w.put(&self.vendor_public)?;
        w.put(&self.authority_public)?;
        w.u32(self.rollback_floor)?;
        w.u32(self.flags)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            serial: r.array()?,
            product_id: r.u32()?,
            vendor_public: r.array()?,
            authority_public: r.array()?,
            rollback_floor: r.u32()?,
            flags: r.u32()?,
        })
    }
}

/// Everything a provisioned device knows about itself.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DeviceRecord {
    /// Identity and configuration.
    #[zeroize(skip)]
    pub config: DeviceConfig,
    /// The per-device secret key.
    pub device_key: [u8; 32],
    /// Version of the installed bootloader.
    pub bootloader_version: u32,
    /// Size of the installed bootloader.
    pub bootloader_size: u32,
    /// SHA-256 of the installed bootloader.
    pub bootloader_digest: [u8; 32],
    /// The authority's certificate for this chip and key.
    #[zeroize(skip)]
    pub certificate: DeviceCertificate,
}

impl core::fmt::Debug for DeviceRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceRecord")
            .field("config", &self.config)
            .field("device_key", &"<redacted>")
            .field("bootloader_version", &self.bootloader_version)
            .finish_non_exhaustive()
    }
}

impl DeviceRecord {
    /// The record as stored in flash.
    pub fn to_bytes(&self) -> [u8; RECORD_LEN] {
        codec::to_array(self)
    }

    /// SHA-256 of the encoded record.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }

    /// SHA-256 over the record without its device key and check: what the loader's receipt
    /// commits to, so that a station (which never holds the key) can compare it with what it
    /// sent. The key is covered through the certificate's key commitment, which the loader
    /// checked against it.
    pub fn public_digest(&self) -> [u8; 32] {
        let bytes = zeroize::Zeroizing::new(self.to_bytes());
        let mut h = Sha256::new();
        h.update(b"flashgate-record-public-v1");
        h.update(&bytes[..KEY_OFFSET]);
        h.update(&bytes[KEY_OFFSET + 32..RECORD_LEN - 16]);
        h.finalize().into()
    }
}

/// The stored record, check included; an erased or torn page is [`ErrorCode::NotProvisioned`].
impl Codec<'_> for DeviceRecord {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        // The key passes through this buffer: wipe it afterwards.
        let mut body = zeroize::Zeroizing::new([0u8; RECORD_LEN - 16]);
        let mut b = Writer::new(&mut body[..]);
        b.u32(RECORD_MAGIC)?;
        b.u32(RECORD_FORMAT)?;
        self.config.encode(&mut b)?;
        b.put(&self.device_key)?;
        b.u32(self.bootloader_version)?;
        b.u32(self.bootloader_size)?;
        b.put(&self.bootloader_digest)?;
        self.certificate.encode(&mut b)?;
        let check = Sha256::digest(&body[..]);
        w.put(&body[..])?;
        w.put(&check[..16])
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let bytes = r.take(RECORD_LEN)?;
        let check = Sha256::digest(&bytes[..RECORD_LEN - 16]);
        let mut r = Reader::new(bytes);
        if r.u32()? != RECORD_MAGIC || r.u32()? != RECORD_FORMAT {
            return Err(ErrorCode::NotProvisioned);
        }
        if check[..16] != bytes[RECORD_LEN - 16..] {
            return Err(ErrorCode::NotProvisioned);
        }
        Ok(Self {
            config: DeviceConfig::read(&mut r)?,
            device_key: r.array()?,
            bootloader_version: r.u32()?,
            bootloader_size: r.u32()?,
            bootloader_digest: r.array()?,
            certificate: DeviceCertificate::read(&mut r).map_err(|_| ErrorCode::NotProvisioned)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::certificate::tests::{authority, body};

    pub(crate) fn sample() -> DeviceRecord {
        DeviceRecord {
            config: DeviceConfig {
                serial: [1; 16],
                product_id: 42,
                vendor_public: [2; 32],
                authority_public: [5; 32],
                rollback_floor: 1,
                flags: 0,
            },
            device_key: [3; 32],
            bootloader_version: 5,
            bootloader_size: 1234,
            bootloader_digest: [4; 32],
            certificate: body().sign(&authority()),
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let bytes = r.to_bytes();
        assert_eq!(bytes.len(), RECORD_LEN);
        let d = DeviceRecord::read_bytes(&bytes).unwrap();
        assert_eq!(d.to_bytes(), bytes);
        assert_eq!(
            hex::encode(bytes),
            include_str!("../vectors/device_record.hex").trim()
        );
    }

    #[test]
    fn public_digest_leaves_out_the_key_only() {
        let r = sample();
        let mut other_key = sample();
        other_key.device_key = [9; 32];
        assert_eq!(r.public_digest(), other_key.public_digest());
        let mut other_cert = sample();
        other_cert.certificate.body.sequence += 1;
        assert_ne!(r.public_digest(), other_cert.public_digest());
        let mut other_serial = sample();
        other_serial.config.serial[0] ^= 1;
        assert_ne!(r.public_digest(), other_serial.public_digest());
    }

    #[test]
    fn a_format_1_record_is_not_provisioned() {
        let mut old = sample().to_bytes();
        old[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            DeviceRecord::read_bytes(&old).err(),
            Some(ErrorCode::NotProvisioned)
        );
    }

    #[test]
    fn erased_or_torn_is_not_provisioned() {
        assert_eq!(
            DeviceRecord::read_bytes(&[0xFF; RECORD_LEN]).err(),
            Some(ErrorCode::NotProvisioned)
        );
        let mut torn = sample().to_bytes();
        torn[100..].fill(0xFF);
        assert_eq!(
            DeviceRecord::read_bytes(&torn).err(),
            Some(ErrorCode::NotProvisioned)
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        extern crate std;
        let s = std::format!("{:?}", sample());
        assert!(!s.contains("3, 3, 3"));
        assert!(s.contains("redacted"));
    }
}
