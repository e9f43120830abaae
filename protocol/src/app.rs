//! Applications: vendor-signed images the demo OS installs into the app slot and starts with a
//! function call, without a reset.
//!
//! ```text
//! app slot (APP_SLOT_ADDR):  signed image header (128 B, kind App, load_addr = slot + 0x200)
//!                            … header space …
//!                            body at APP_SLOT_ADDR + IMAGE_HEADER_SPACE:
//!   app header (16 B):       magic "FGAP" u32 | abi u32 = 1 | entry u32 (Thumb bit set) | 0 u32
//! ```
//! The app is linked at the fixed body address (not position independent: the slot is fixed),
//! keeps `.data`/`.bss` in `APP_RAM_ADDR..+APP_RAM_SIZE` and runs on the OS's stack. The OS
//! calls `entry(table: *const AppCallTable) -> u32`; the app initialises its RAM, does its
//! work through the call table and returns a status (0 = ok).
//!
//! Install ([`AppInstaller`], transport = plain UART frames `AppBegin`…`AppStart`, served by
//! `uart::service::OsService`): `begin` checks
//! the vendor signature (device record's vendor key), kind, product, load address and size
//! *before* anything is written, then erases the slot; `data` programs the body at strictly
//! consecutive offsets and hashes it; `commit` requires the complete body with the signed
//! digest, re-reads it from flash and only then programs the signed header, which is what makes
//! the slot valid. [`verify_installed_app`] repeats every check before each start.

use crate::codec::{Codec, Reader, Writer};
use crate::device_record::DeviceRecord;
use crate::flash::NorFlash;
use crate::image::{BodyHasher, ImageHeader, ImageKind, SignedImageHeader, SIGNED_HEADER_LEN};
use crate::layout::{APP_SLOT_ADDR, APP_SLOT_SIZE, IMAGE_HEADER_SPACE};
use crate::ErrorCode;

/// "FGAP".
pub const APP_MAGIC: u32 = 0x5041_4746;
/// Version of the call table and entry ABI.
pub const APP_ABI_VERSION: u32 = 1;
/// Where the app body (and its header) is linked.
pub const APP_BODY_ADDR: u32 = APP_SLOT_ADDR + IMAGE_HEADER_SPACE;
/// Largest app body.
pub const APP_BODY_MAX: u32 = APP_SLOT_SIZE - IMAGE_HEADER_SPACE;
/// Length of the app header at the start of the body.
pub const APP_HEADER_LEN: usize = 16;

/// What the OS offers an app. `#[repr(C)]`: the app and the OS are separate links.
#[repr(C)]
pub struct AppCallTable {
    /// [`APP_ABI_VERSION`].
    pub abi_version: u32,
    /// Writes a line of text to the device log (the UART, frame `APP_LOG`).
    pub log: extern "C" fn(text: *const u8, len: usize),
    /// Ticks since the OS started (SysTick, 25 MHz on mps2; 40 instructions under icount).
    pub uptime_ticks: extern "C" fn() -> u64,
    /// Seals `body` as a telemetry record and sends it; returns its counter, or a negative
    /// error code.
    pub emit_record: extern "C" fn(body: *const u8, len: usize) -> i64,
}

/// The app entry's signature.
pub type AppEntry = extern "C" fn(table: *const AppCallTable) -> u32;

/// An installed app that passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppImage {
    /// Its signed version.
    pub version: u32,
    /// Entry address (Thumb bit set).
    pub entry: u32,
    /// Body size.
    pub body_size: u32,
}

fn check_signed(record: &DeviceRecord, raw: &[u8]) -> Result<ImageHeader, ErrorCode> {
    let signed = SignedImageHeader::parse(raw)?;
    let header = *signed.verify(&record.config.vendor_public)?;
    SignedImageHeader::check_fits(
        &header,
        ImageKind::App,
        record.config.product_id,
        APP_BODY_ADDR,
        APP_BODY_MAX,
        0,
    )?;
    if header.body_size < APP_HEADER_LEN as u32 {
        return Err(ErrorCode::ImageIncomplete);
    }
    Ok(header)
}

/// The header at the start of an app body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppHeader {
    /// Entry address (Thumb bit set).
    pub entry: u32,
}

/// `"FGAP" | abi | entry | 0` (the reserved word is not checked).
impl Codec<'_> for AppHeader {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u32(APP_MAGIC)?;
        w.u32(APP_ABI_VERSION)?;
        w.u32(self.entry)?;
        w.u32(0)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let mut r = Reader::new(r.take(APP_HEADER_LEN)?);
        if r.u32()? != APP_MAGIC || r.u32()? != APP_ABI_VERSION {
            return Err(ErrorCode::BadMagic);
        }
        Ok(Self { entry: r.u32()? })
    }
}

/// Checks the app header at the start of a body of `body_size` bytes; returns the entry.
pub fn parse_app_header(head: &[u8; APP_HEADER_LEN], body_size: u32) -> Result<u32, ErrorCode> {
    let entry = AppHeader::read_bytes(head)?.entry;
    let start = APP_BODY_ADDR + APP_HEADER_LEN as u32;
    if entry & 1 == 0 || entry & !1 < start || entry & !1 >= APP_BODY_ADDR + body_size {
        return Err(ErrorCode::BadLoadAddress);
    }
    Ok(entry)
}

fn hash_body<F: NorFlash>(flash: &mut F, header: &ImageHeader) -> Result<(), ErrorCode> {
    let mut hasher = BodyHasher::new(header.body_size);
    let mut buf = [0u8; 256];
    let mut at = 0u32;
    while at < header.body_size {
        let n = (header.body_size - at).min(buf.len() as u32) as usize;
        flash.read(APP_BODY_ADDR + at, &mut buf[..n])?;
        hasher.update(&buf[..n])?;
        at += n as u32;
    }
    hasher.finish(&header.body_digest)?;
    Ok(())
}

/// Verifies the app in its slot (signature, kind, product, address, size, digest, app header).
pub fn verify_installed_app<F: NorFlash>(
    flash: &mut F,
    record: &DeviceRecord,
) -> Result<AppImage, ErrorCode> {
    let mut raw = [0u8; SIGNED_HEADER_LEN];
    flash.read(APP_SLOT_ADDR, &mut raw)?;
    if raw.iter().all(|b| *b == 0xFF) {
        return Err(ErrorCode::NoValidImage);
    }
    let header = check_signed(record, &raw)?;
    hash_body(flash, &header)?;
    let mut head = [0u8; APP_HEADER_LEN];
    flash.read(APP_BODY_ADDR, &mut head)?;
    Ok(AppImage {
        version: header.version,
        entry: parse_app_header(&head, header.body_size)?,
        body_size: header.body_size,
    })
}

/// Receives an app image into the app slot (see the module docs for the order of checks).
pub struct AppInstaller {
    signed: [u8; SIGNED_HEADER_LEN],
    header: ImageHeader,
    hasher: BodyHasher,
}

impl AppInstaller {
    /// Checks the signed header and erases the slot (the old app is gone from here on).
    pub fn begin<F: NorFlash>(
        flash: &mut F,
        record: &DeviceRecord,
        signed_header: &[u8],
    ) -> Result<Self, ErrorCode> {
        let signed: [u8; SIGNED_HEADER_LEN] =
            signed_header.try_into().map_err(|_| ErrorCode::BadLength)?;
        let header = check_signed(record, &signed)?;
        flash.erase_range(APP_SLOT_ADDR, IMAGE_HEADER_SPACE + header.body_size)?;
        Ok(Self {
            signed,
            header,
            hasher: BodyHasher::new(header.body_size),
        })
    }

    /// Programs the next piece of the body at `offset` (must be the next expected one).
    pub fn data<F: NorFlash>(
        &mut self,
        flash: &mut F,
        offset: u32,
        bytes: &[u8],
    ) -> Result<u32, ErrorCode> {
        if offset != self.hasher.received() {
            return Err(ErrorCode::BadOffset);
        }
        self.hasher.update(bytes)?;
        flash.program(APP_BODY_ADDR + offset, bytes)?;
        Ok(self.hasher.received())
    }

    /// Completes the install: body complete and matching the signed digest (hashed as received
    /// and again from flash), app header valid; then the signed header makes the slot valid.
    pub fn commit<F: NorFlash>(self, flash: &mut F) -> Result<AppImage, ErrorCode> {
        self.hasher.finish(&self.header.body_digest)?;
        hash_body(flash, &self.header)?;
        let mut head = [0u8; APP_HEADER_LEN];
        flash.read(APP_BODY_ADDR, &mut head)?;
        let entry = parse_app_header(&head, self.header.body_size)?;
        flash.program(APP_SLOT_ADDR, &self.signed)?;
        Ok(AppImage {
            version: self.header.version,
            entry,
            body_size: self.header.body_size,
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::device_record::DeviceConfig;
    use crate::flash::RamFlash;
    use crate::image::sign_image;

    fn record(vendor: &SigningKey) -> DeviceRecord {
        DeviceRecord {
            config: DeviceConfig {
                serial: [1; 16],
                product_id: 7,
                vendor_public: vendor.verifying_key().to_bytes(),
                rollback_floor: 1,
                flags: 0,
            },
            device_key: [2; 32],
            bootloader_version: 1,
            bootloader_size: 0,
            bootloader_digest: [0; 32],
        }
    }

    fn body() -> Vec<u8> {
        let mut b = Vec::new();
        for w in [APP_MAGIC, APP_ABI_VERSION, APP_BODY_ADDR + 0x21, 0] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.resize(300, 0xA5);
        b
    }

    fn install(
        flash: &mut RamFlash,
        rec: &DeviceRecord,
        image: &[u8],
    ) -> Result<AppImage, ErrorCode> {
        let mut inst = AppInstaller::begin(flash, rec, &image[..SIGNED_HEADER_LEN])?;
        let body = &image[SIGNED_HEADER_LEN..];
        for (i, chunk) in body.chunks(100).enumerate() {
            inst.data(flash, (i * 100) as u32, chunk)?;
        }
        inst.commit(flash)
    }

    #[test]
    fn signed_app_installs_and_verifies() {
        let vendor = SigningKey::from_bytes(&[9; 32]);
        let rec = record(&vendor);
        let image = sign_image(ImageKind::App, 7, 3, APP_BODY_ADDR, &body(), &vendor);
        let mut flash = RamFlash::erased(0x40_0000);
        let app = install(&mut flash, &rec, &image).unwrap();
        assert_eq!(app.entry, APP_BODY_ADDR + 0x21);
        assert_eq!(verify_installed_app(&mut flash, &rec).unwrap(), app);
    }

    #[test]
    fn wrong_product_kind_signature_or_body_is_refused_before_the_slot_is_valid() {
        let vendor = SigningKey::from_bytes(&[9; 32]);
        let rec = record(&vendor);
        let mut flash = RamFlash::erased(0x40_0000);
        let other = sign_image(ImageKind::App, 8, 3, APP_BODY_ADDR, &body(), &vendor);
        assert_eq!(
            install(&mut flash, &rec, &other),
            Err(ErrorCode::WrongProduct)
        );
        let os = sign_image(ImageKind::Os, 7, 3, APP_BODY_ADDR, &body(), &vendor);
        assert_eq!(
            install(&mut flash, &rec, &os),
            Err(ErrorCode::WrongImageKind)
        );
        let forged = sign_image(
            ImageKind::App,
            7,
            3,
            APP_BODY_ADDR,
            &body(),
            &SigningKey::from_bytes(&[8; 32]),
        );
        assert_eq!(
            install(&mut flash, &rec, &forged),
            Err(ErrorCode::BadSignature)
        );
        let mut tampered = sign_image(ImageKind::App, 7, 3, APP_BODY_ADDR, &body(), &vendor);
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            install(&mut flash, &rec, &tampered),
            Err(ErrorCode::DigestMismatch)
        );
        assert_eq!(
            verify_installed_app(&mut flash, &rec),
            Err(ErrorCode::NoValidImage)
        );
        let mut bad_entry = body();
        bad_entry[8..12].copy_from_slice(&0x1000_0001u32.to_le_bytes());
        let image = sign_image(ImageKind::App, 7, 3, APP_BODY_ADDR, &bad_entry, &vendor);
        assert_eq!(
            install(&mut flash, &rec, &image),
            Err(ErrorCode::BadLoadAddress)
        );
    }
}
