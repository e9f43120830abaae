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
//! `uart::service::OsService`): `begin` checks the install authorisation (a MAC under a key
//! derived from the device key over this device's serial and the signed header:
//! [`install_authorization`], made by the coordinator, which holds the key), the vendor
//! signature (device record's vendor key), kind, product, load address, size and the app
//! anti-rollback floor ([`AppFloor`]) *before* anything is written, then erases the slot;
//! `data` programs the body at strictly consecutive offsets and hashes it; `commit` requires
//! the complete body with the signed digest, re-reads it from flash, raises the floor to the
//! app's version and only then programs the signed header, which is what makes the slot valid.
//! [`verify_installed_app`] repeats every check (floor included) before each start.
//!
//! Who each check stops: the floor stops anyone on the UART (a field technician, a repair
//! shop, malware on the host the board is plugged into) from putting back an older
//! vendor-signed app with a known flaw; the authorisation stops the same people, and a
//! station (which never holds device keys), from installing any vendor-signed app the
//! coordinator did not authorise for this very device. A replayed authorisation installs
//! only the app it names, on the device it names, and never below the floor.

use sha2::{Digest, Sha256};

use crate::challenge_proof::{self, ProofKind};
use crate::codec::{Codec, Reader, Writer};
use crate::device_record::DeviceRecord;
use crate::flash::NorFlash;
use crate::image::{BodyHasher, ImageHeader, ImageKind, SignedImageHeader, SIGNED_HEADER_LEN};
use crate::layout::{
    APP_FLOOR_ADDR, APP_FLOOR_PAGES, APP_SLOT_ADDR, APP_SLOT_SIZE, FLASH_PAGE_SIZE,
    IMAGE_HEADER_SPACE,
};
use crate::{ErrorCode, Serial};

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

const INSTALL_PROOF: ProofKind = ProofKind {
    label: b"flashgate-app-install-v1",
    info: b"app-install",
};

/// The authorisation to install the app with `signed_header` on the device `serial`:
/// HMAC-SHA256(HKDF(salt "flashgate-app-install-v1", ikm device_key, info "app-install"),
/// "flashgate-app-install-v1" ‖ SHA-256(signed header) ‖ serial). Made by the holder of the
/// device key (the coordinator); checked by the OS before it erases the slot.
pub fn install_authorization(
    device_key: &[u8; 32],
    serial: &Serial,
    signed_header: &[u8; SIGNED_HEADER_LEN],
) -> [u8; 32] {
    let release: [u8; 32] = Sha256::digest(signed_header).into();
    challenge_proof::tag(&INSTALL_PROOF, device_key, &release, serial)
}

fn check_authorization(
    record: &DeviceRecord,
    signed_header: &[u8; SIGNED_HEADER_LEN],
    authorization: &[u8; 32],
) -> Result<(), ErrorCode> {
    let release: [u8; 32] = Sha256::digest(signed_header).into();
    challenge_proof::verify(
        &INSTALL_PROOF,
        &record.device_key,
        &release,
        &record.config.serial,
        authorization,
    )
    .map_err(|_| ErrorCode::NotAuthorized)
}

fn check_signed(record: &DeviceRecord, raw: &[u8], floor: u32) -> Result<ImageHeader, ErrorCode> {
    let signed = SignedImageHeader::parse(raw)?;
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
    let header = check_signed(record, &raw, floor)?;
    hash_body(flash, &header)?;
    let mut head = [0u8; APP_HEADER_LEN];
    flash.read(APP_BODY_ADDR, &mut head)?;
    Ok(AppImage {
        version: header.version,
        entry: parse_app_header(&head, header.body_size)?,
        body_size: header.body_size,
    })
}

/// The app slot's anti-rollback floor: the highest app version ever committed. Two flash pages
/// at `APP_FLOOR_ADDR` of append-only 8-byte entries `version u32 | !version u32`; the highest
/// valid entry of both pages wins (an entry torn by a power cut fails its check and is
/// skipped). When the page holding the floor is full, the other page is erased and the floor
/// written there first, so the highest entry always survives in one page.
pub struct AppFloor;

const ENTRY_LEN: u32 = 8;
const ENTRIES_PER_PAGE: u32 = FLASH_PAGE_SIZE / ENTRY_LEN;

impl AppFloor {
    fn entry<F: NorFlash>(flash: &mut F, page: u32, i: u32) -> Result<[u8; 8], ErrorCode> {
        let mut raw = [0u8; 8];
        flash.read(
            APP_FLOOR_ADDR + page * FLASH_PAGE_SIZE + i * ENTRY_LEN,
            &mut raw,
        )?;
        Ok(raw)
    }

    fn decode(raw: [u8; 8]) -> Option<u32> {
        let version = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let check = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
        (check == !version).then_some(version)
    }

    /// Per page: the highest valid version and the index of the first free entry (after the
    /// last one used), if any.
    fn scan<F: NorFlash>(flash: &mut F, page: u32) -> Result<(u32, Option<u32>), ErrorCode> {
        let mut highest = 0;
        let mut free = None;
        for i in (0..ENTRIES_PER_PAGE).rev() {
            let raw = Self::entry(flash, page, i)?;
            if raw == [0xFF; 8] {
                free = Some(i);
                continue;
            }
            break;
        }
        for i in 0..ENTRIES_PER_PAGE {
            if let Some(v) = Self::decode(Self::entry(flash, page, i)?) {
                highest = highest.max(v);
            }
        }
        Ok((highest, free))
    }

    /// The floor (0 on a device that never committed an app).
    pub fn read<F: NorFlash>(flash: &mut F) -> Result<u32, ErrorCode> {
        let mut floor = 0;
        for page in 0..APP_FLOOR_PAGES {
            floor = floor.max(Self::scan(flash, page)?.0);
        }
        Ok(floor)
    }

    /// Raises the floor to `version` (nothing to do when it is already there or higher).
    pub fn raise<F: NorFlash>(flash: &mut F, version: u32) -> Result<(), ErrorCode> {
        let (a, b) = (Self::scan(flash, 0)?, Self::scan(flash, 1)?);
        if version <= a.0.max(b.0) {
            return Ok(());
        }
        // Append to the page holding the floor; when it is full, start the other one.
        let (page, other) = if a.0 >= b.0 { (0, (1, b)) } else { (1, (0, a)) };
        let mut entry = [0u8; 8];
        entry[..4].copy_from_slice(&version.to_le_bytes());
        entry[4..].copy_from_slice(&(!version).to_le_bytes());
        let at = |page: u32, i: u32| APP_FLOOR_ADDR + page * FLASH_PAGE_SIZE + i * ENTRY_LEN;
        match [a, b][page as usize].1 {
            Some(i) => flash.program(at(page, i), &entry)?,
            None => {
                let (other_page, _) = other;
                flash.erase_page(at(other_page, 0))?;
                flash.program(at(other_page, 0), &entry)?;
            }
        }
        Ok(())
    }
}

/// Receives an app image into the app slot (see the module docs for the order of checks).
pub struct AppInstaller {
    signed: [u8; SIGNED_HEADER_LEN],
    header: ImageHeader,
    hasher: BodyHasher,
}

impl AppInstaller {
    /// Checks the authorisation and the signed header (floor included) and erases the slot
    /// (the old app is gone from here on).
    pub fn begin<F: NorFlash>(
        flash: &mut F,
        record: &DeviceRecord,
        signed_header: &[u8; SIGNED_HEADER_LEN],
        authorization: &[u8; 32],
    ) -> Result<Self, ErrorCode> {
        check_authorization(record, signed_header, authorization)?;
        let signed = *signed_header;
        let floor = AppFloor::read(flash)?;
        let header = check_signed(record, &signed, floor)?;
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
    /// and again from flash), app header valid; then the floor is raised to its version and the
    /// signed header makes the slot valid.
    pub fn commit<F: NorFlash>(self, flash: &mut F) -> Result<AppImage, ErrorCode> {
        self.hasher.finish(&self.header.body_digest)?;
        hash_body(flash, &self.header)?;
        let mut head = [0u8; APP_HEADER_LEN];
        flash.read(APP_BODY_ADDR, &mut head)?;
        let entry = parse_app_header(&head, self.header.body_size)?;
        AppFloor::raise(flash, self.header.version)?;
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
                authority_public: [3; 32],
                rollback_floor: 1,
                flags: 0,
            },
            device_key: [2; 32],
            bootloader_version: 1,
            bootloader_size: 0,
            bootloader_digest: [0; 32],
            certificate: crate::certificate::tests::body()
                .sign(&crate::certificate::tests::authority()),
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
        let header: &[u8; SIGNED_HEADER_LEN] = image[..SIGNED_HEADER_LEN].try_into().unwrap();
        let auth = install_authorization(&rec.device_key, &rec.config.serial, header);
        let mut inst = AppInstaller::begin(flash, rec, header, &auth)?;
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

#[cfg(test)]
mod floor_and_authorization {
    extern crate std;
    use std::vec::Vec;

    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::flash::RamFlash;
    use crate::image::sign_image;
    use crate::update::tests::record;

    fn vendor() -> SigningKey {
        crate::update::tests::vendor()
    }

    fn app(version: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [APP_MAGIC, APP_ABI_VERSION, APP_BODY_ADDR + 0x21, 0] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.resize(300, version as u8);
        sign_image(ImageKind::App, 7, version, APP_BODY_ADDR, &b, &vendor())
    }

    fn header(image: &[u8]) -> &[u8; SIGNED_HEADER_LEN] {
        image[..SIGNED_HEADER_LEN].try_into().unwrap()
    }

    fn install_with(
        flash: &mut RamFlash,
        image: &[u8],
        auth: &[u8; 32],
    ) -> Result<AppImage, ErrorCode> {
        let rec = record();
        let mut inst = AppInstaller::begin(flash, &rec, header(image), auth)?;
        inst.data(flash, 0, &image[SIGNED_HEADER_LEN..])?;
        inst.commit(flash)
    }

    fn install(flash: &mut RamFlash, image: &[u8]) -> Result<AppImage, ErrorCode> {
        let rec = record();
        let auth = install_authorization(&rec.device_key, &rec.config.serial, header(image));
        install_with(flash, image, &auth)
    }

    #[test]
    fn an_older_signed_app_is_refused_after_a_newer_one() {
        let mut flash = RamFlash::erased(0x40_0000);
        assert_eq!(install(&mut flash, &app(3)).unwrap().version, 3);
        assert_eq!(AppFloor::read(&mut flash), Ok(3));
        assert_eq!(install(&mut flash, &app(2)), Err(ErrorCode::Rollback));
        // Refused before anything was erased: version 3 still starts.
        assert_eq!(
            verify_installed_app(&mut flash, &record()).unwrap().version,
            3
        );
        // The same version again, and a newer one, install.
        install(&mut flash, &app(3)).unwrap();
        install(&mut flash, &app(4)).unwrap();
        assert_eq!(AppFloor::read(&mut flash), Ok(4));
    }

    #[test]
    fn an_unauthorised_app_begin_is_refused_before_the_slot_is_touched() {
        let mut flash = RamFlash::erased(0x40_0000);
        install(&mut flash, &app(3)).unwrap();
        let rec = record();
        let newer = app(5);
        // No authorisation, one for another device, one for another app.
        let mut other_serial = rec.config.serial;
        other_serial[0] ^= 1;
        for auth in [
            [0u8; 32],
            install_authorization(&rec.device_key, &other_serial, header(&newer)),
            install_authorization(&rec.device_key, &rec.config.serial, header(&app(6))),
            install_authorization(&[0x44; 32], &rec.config.serial, header(&newer)),
        ] {
            assert_eq!(
                install_with(&mut flash, &newer, &auth).err(),
                Some(ErrorCode::NotAuthorized)
            );
        }
        assert_eq!(verify_installed_app(&mut flash, &rec).unwrap().version, 3);
    }

    #[test]
    fn the_floor_survives_a_full_page_and_torn_entries() {
        let mut flash = RamFlash::erased(0x40_0000);
        for v in 1..=(2 * ENTRIES_PER_PAGE + 5) {
            AppFloor::raise(&mut flash, v).unwrap();
            assert_eq!(AppFloor::read(&mut flash), Ok(v));
        }
        // Lower or equal: nothing written.
        let before = flash.bytes.clone();
        AppFloor::raise(&mut flash, 3).unwrap();
        assert_eq!(flash.bytes, before);
        // A torn entry (half programmed) is skipped; the next raise goes after it.
        let mut flash = RamFlash::erased(0x40_0000);
        AppFloor::raise(&mut flash, 9).unwrap();
        flash.program(APP_FLOOR_ADDR + 8, &[0x00, 0x00]).unwrap();
        assert_eq!(AppFloor::read(&mut flash), Ok(9));
        AppFloor::raise(&mut flash, 10).unwrap();
        assert_eq!(AppFloor::read(&mut flash), Ok(10));
    }
}
