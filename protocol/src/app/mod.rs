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
//! Apps travel like OS updates: as per-device packages (`update::package`: the release
//! encrypted once under a content key, an envelope per device wrapping that key under a key
//! derived from the device key). [`install`] is the OS's side of that transfer into the app
//! slot; [`AppFloor`] is the slot's anti-rollback floor; [`receipt`] is what the device says
//! about its app, authenticated for the coordinator. [`verify_installed_app`] repeats every
//! check (floor included) before each start.

pub mod floor;
pub mod install;
pub mod receipt;

pub use floor::AppFloor;
pub use install::AppInstaller;

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

/// The vendor-signed header of an app for this device: signature, kind, product, load
/// address, size within the slot and at least the app header, version not below `floor`.
fn check_signed(
    record: &DeviceRecord,
    signed: &SignedImageHeader,
    floor: u32,
) -> Result<ImageHeader, ErrorCode> {
    let header = *signed.verify(&record.config.vendor_public)?;
    SignedImageHeader::check_fits(
        &header,
        ImageKind::App,
        record.config.product_id,
        APP_BODY_ADDR,
        APP_BODY_MAX,
        floor,
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

/// Hashes the body of the image whose header space starts at `slot` and compares it with the
/// signed digest.
fn hash_body<F: NorFlash>(flash: &mut F, slot: u32, header: &ImageHeader) -> Result<(), ErrorCode> {
    let mut hasher = BodyHasher::new(header.body_size);
    let mut buf = [0u8; 256];
    let mut at = 0u32;
    while at < header.body_size {
        let n = (header.body_size - at).min(buf.len() as u32) as usize;
        flash.read(slot + IMAGE_HEADER_SPACE + at, &mut buf[..n])?;
        hasher.update(&buf[..n])?;
        at += n as u32;
    }
    hasher.finish(&header.body_digest)?;
    Ok(())
}

/// The entry of the body of `header` whose header space starts at `slot` (its app header
/// checked).
fn entry_of<F: NorFlash>(flash: &mut F, slot: u32, header: &ImageHeader) -> Result<u32, ErrorCode> {
    let mut head = [0u8; APP_HEADER_LEN];
    flash.read(slot + IMAGE_HEADER_SPACE, &mut head)?;
    parse_app_header(&head, header.body_size)
}

/// Verifies the app in its slot (signature, kind, product, address, size, floor, digest, app
/// header).
pub fn verify_installed_app<F: NorFlash>(
    flash: &mut F,
    record: &DeviceRecord,
) -> Result<AppImage, ErrorCode> {
    let mut raw = [0u8; SIGNED_HEADER_LEN];
    flash.read(APP_SLOT_ADDR, &mut raw)?;
    if raw.iter().all(|b| *b == 0xFF) {
        return Err(ErrorCode::NoValidImage);
    }
    let floor = AppFloor::read(flash)?;
    let header = check_signed(record, &SignedImageHeader::parse(&raw)?, floor)?;
    hash_body(flash, APP_SLOT_ADDR, &header)?;
    Ok(AppImage {
        version: header.version,
        entry: entry_of(flash, APP_SLOT_ADDR, &header)?,
        body_size: header.body_size,
    })
}
