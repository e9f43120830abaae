//! The OS's side of an app package transfer ([`AppInstaller`]): the same per-device package as
//! an OS update (`update::package`), received into the app staging slot and moved into the
//! app slot only once it is complete and verified.
//!
//! ```text
//! begin   envelope[228]   serial, product; the envelope opens under the device key; vendor
//!                         signature, kind App, product, load address, size, app floor
//! chunk   index | sealed  strictly the next chunk; authenticated (AEAD) before it is
//!                         programmed into the staging slot, and hashed
//! commit                  every chunk arrived; the digest of the whole body (as received and
//!                         again from flash) matches the signed one; valid app header; then the
//!                         body is copied into the app slot, the floor raised and the signed
//!                         header programmed last (what makes the slot valid)
//! ```
//!
//! Who each check stops (nobody on the UART holds the device key; the coordinator does):
//! - the envelope (serial first, then the wrap under the device key, whose AAD binds serial,
//!   product and the signed header): anyone on the UART — a field technician, a repair shop,
//!   malware on the host, a station — installing an app the coordinator did not package for
//!   this very device, including another device's genuine package (`WrongSerial`, or
//!   `WrongDevice` if its serial was rewritten). It proves what the install authorisation MAC
//!   of the clear-text path proved (made by the holder of the device key, for this serial and
//!   this signed header), so it replaces it; it also keeps the body secret from the host;
//! - the chunk tags: a host that alters, reorders or swaps chunks (`BadTag`) — nothing it
//!   sends reaches flash unauthenticated;
//! - the vendor signature, kind, product, load address and size: a coordinator (or its store)
//!   that packages something the vendor did not sign for this product and slot;
//! - the app floor: a replayed package of an older vendor-signed app with a known flaw
//!   (`Rollback`);
//! - the digest at commit: a body whose chunks authenticate but that is not the one the vendor
//!   signed (the content key is shared by every device of a release, so a device owner knows
//!   it);
//! - staging: a refusal or a cut at any point before the copy leaves the installed app as it
//!   was. A cut during the copy (milliseconds) leaves no valid app until the package is relayed
//!   again; the floor is raised before the header, so the older app can never come back.
//!
//! A replayed envelope installs only the app it names, on the device it names, never below the
//! floor.

use crate::device_record::DeviceRecord;
use crate::flash::NorFlash;
use crate::image::{BodyHasher, ImageHeader};
use crate::layout::{APP_SLOT_ADDR, APP_STAGING_ADDR, IMAGE_HEADER_SPACE};
use crate::update::package::{ContentKey, Envelope, CHUNK_SIZE};
use crate::ErrorCode;

use super::{check_signed, entry_of, hash_body, AppFloor, AppImage};

/// Receives an app package into the app staging slot (see the module docs for the order of
/// checks).
pub struct AppInstaller {
    signed: [u8; crate::image::SIGNED_HEADER_LEN],
    header: ImageHeader,
    key: ContentKey,
    count: u32,
    next: u32,
    hasher: BodyHasher,
}

impl AppInstaller {
    /// Checks the envelope (addressed to this device, opened under its key) and the signed
    /// header inside (floor included), then erases the staging slot. The app slot is not
    /// touched.
    pub fn begin<F: NorFlash>(
        flash: &mut F,
        record: &DeviceRecord,
        envelope: &[u8],
    ) -> Result<Self, ErrorCode> {
        let env = Envelope::addressed_to(envelope, record)?;
        // The device-key proof first: an envelope the coordinator did not make for this device
        // costs no signature check.
        let key = env.open(&record.device_key)?;
        let floor = AppFloor::read(flash)?;
        let header = check_signed(record, &env.signed_header, floor)?;
        flash.erase_range(APP_STAGING_ADDR, IMAGE_HEADER_SPACE + header.body_size)?;
        Ok(Self {
            signed: env.signed_header.to_bytes(),
            header,
            key,
            count: env.chunk_count,
            next: 0,
            hasher: BodyHasher::new(header.body_size),
        })
    }

    /// Chunks in the package.
    pub fn chunk_count(&self) -> u32 {
        self.count
    }

    /// Authenticates chunk `index` (ciphertext then tag), programs it into the staging slot and
    /// returns the next chunk needed. A chunk already stored is acknowledged again (its ack was
    /// lost); any other index is [`ErrorCode::BadOffset`].
    pub fn chunk<F: NorFlash>(
        &mut self,
        flash: &mut F,
        index: u32,
        sealed: &[u8],
    ) -> Result<u32, ErrorCode> {
        if index < self.next {
            return Ok(self.next);
        }
        if index != self.next {
            return Err(ErrorCode::BadOffset);
        }
        let mut buf = [0u8; CHUNK_SIZE as usize];
        let plain = self
            .key
            .open_chunk_into(index, self.header.body_size, sealed, &mut buf)?;
        flash.program(
            APP_STAGING_ADDR + IMAGE_HEADER_SPACE + index * CHUNK_SIZE,
            plain,
        )?;
        self.hasher.update(plain)?;
        self.next += 1;
        Ok(self.next)
    }

    /// Completes the install (see the module docs): verifies the staged body, copies it into
    /// the app slot, raises the floor and makes the slot valid.
    pub fn commit<F: NorFlash>(self, flash: &mut F) -> Result<AppImage, ErrorCode> {
        if self.next != self.count {
            return Err(ErrorCode::ImageIncomplete);
        }
        self.hasher.finish(&self.header.body_digest)?;
        hash_body(flash, APP_STAGING_ADDR, &self.header)?;
        let entry = entry_of(flash, APP_STAGING_ADDR, &self.header)?;
        flash.erase_range(APP_SLOT_ADDR, IMAGE_HEADER_SPACE + self.header.body_size)?;
        let mut buf = [0u8; 256];
        let mut at = 0;
        while at < self.header.body_size {
            let n = (self.header.body_size - at).min(buf.len() as u32) as usize;
            flash.read(APP_STAGING_ADDR + IMAGE_HEADER_SPACE + at, &mut buf[..n])?;
            flash.program(APP_SLOT_ADDR + IMAGE_HEADER_SPACE + at, &buf[..n])?;
            at += n as u32;
        }
        hash_body(flash, APP_SLOT_ADDR, &self.header)?;
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
pub(crate) mod tests {
    extern crate std;
    use std::vec::Vec;

    use ed25519_dalek::SigningKey;
    use zeroize::Zeroizing;

    use super::*;
    use crate::app::{verify_installed_app, APP_ABI_VERSION, APP_BODY_ADDR, APP_MAGIC};
    use crate::flash::RamFlash;
    use crate::image::{sign_image, ImageKind, SIGNED_HEADER_LEN};
    use crate::update::package::{SealedRelease, PACKAGE_NONCE_LEN, TAG_LEN};
    use crate::update::tests::{record, vendor, KEY, SERIAL};

    /// An app body of `len` bytes (entry at +0x21) filled with `fill`.
    pub(crate) fn app_body(len: usize, fill: u8) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [APP_MAGIC, APP_ABI_VERSION, APP_BODY_ADDR + 0x21, 0] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.resize(len, fill);
        b
    }

    /// A signed app image of `version`, product 7, by `signer`.
    pub(crate) fn app_image(version: u32, len: usize, signer: &SigningKey) -> Vec<u8> {
        sign_image(
            ImageKind::App,
            7,
            version,
            APP_BODY_ADDR,
            &app_body(len, version as u8),
            signer,
        )
    }

    /// `image` as a package: (envelope for `serial`/`key`, sealed chunks).
    pub(crate) fn package_for(
        image: &[u8],
        serial: &[u8; 16],
        key: &[u8; 32],
    ) -> (Vec<u8>, Vec<Vec<u8>>) {
        let release = SealedRelease::seal(image, Zeroizing::new([0x21; 32])).unwrap();
        let env = release
            .envelope_for(serial, 7, key, &[6; PACKAGE_NONCE_LEN])
            .unwrap();
        (env.to_vec(), release.chunks)
    }

    fn install(
        flash: &mut RamFlash,
        env: &[u8],
        chunks: &[Vec<u8>],
    ) -> Result<AppImage, ErrorCode> {
        let rec = record();
        let mut inst = AppInstaller::begin(flash, &rec, env)?;
        assert_eq!(inst.chunk_count() as usize, chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(inst.chunk(flash, i as u32, c)?, i as u32 + 1);
        }
        inst.commit(flash)
    }

    fn install_app(flash: &mut RamFlash, version: u32) -> Result<AppImage, ErrorCode> {
        let (env, chunks) = package_for(&app_image(version, 9000, &vendor()), &SERIAL, &KEY);
        install(flash, &env, &chunks)
    }

    fn installed_version(flash: &mut RamFlash) -> Result<u32, ErrorCode> {
        verify_installed_app(flash, &record()).map(|a| a.version)
    }

    #[test]
    fn a_package_installs_verifies_and_an_older_one_is_refused() {
        let mut flash = RamFlash::erased(0x40_0000);
        let app = install_app(&mut flash, 3).unwrap();
        assert_eq!((app.version, app.entry), (3, APP_BODY_ADDR + 0x21));
        assert_eq!(verify_installed_app(&mut flash, &record()), Ok(app));
        assert_eq!(AppFloor::read(&mut flash), Ok(3));
        assert_eq!(install_app(&mut flash, 2), Err(ErrorCode::Rollback));
        assert_eq!(installed_version(&mut flash), Ok(3));
        // The same version again, and a newer one, install.
        install_app(&mut flash, 3).unwrap();
        install_app(&mut flash, 4).unwrap();
        assert_eq!(installed_version(&mut flash), Ok(4));
        assert_eq!(AppFloor::read(&mut flash), Ok(4));
    }

    #[test]
    fn another_devices_package_is_refused_and_the_installed_app_is_untouched() {
        let mut flash = RamFlash::erased(0x40_0000);
        install_app(&mut flash, 3).unwrap();
        let before = flash.bytes.clone();
        let image = app_image(5, 300, &vendor());
        let mut other = SERIAL;
        other[0] ^= 1;
        // Made for another device (its serial, its key).
        let (env, chunks) = package_for(&image, &other, &[0x44; 32]);
        assert_eq!(
            install(&mut flash, &env, &chunks),
            Err(ErrorCode::WrongSerial)
        );
        // Re-addressed to this serial: the wrap does not open.
        let (mut env, chunks) = package_for(&image, &SERIAL, &[0x44; 32]);
        assert_eq!(
            install(&mut flash, &env, &chunks),
            Err(ErrorCode::WrongDevice)
        );
        // This device's envelope with a changed header byte inside (the AAD of the wrap).
        let (good, _) = package_for(&image, &SERIAL, &KEY);
        env.copy_from_slice(&good);
        env[60] ^= 1;
        assert_eq!(
            install(&mut flash, &env, &chunks),
            Err(ErrorCode::WrongDevice)
        );
        assert_eq!(flash.bytes, before, "nothing written");
        assert_eq!(installed_version(&mut flash), Ok(3));
    }

    #[test]
    fn kind_product_and_signature_are_checked_inside_a_genuine_envelope() {
        let mut flash = RamFlash::erased(0x40_0000);
        let body = app_body(300, 1);
        let cases = [
            (
                sign_image(ImageKind::App, 8, 3, APP_BODY_ADDR, &body, &vendor()),
                ErrorCode::WrongProduct,
            ),
            (
                sign_image(ImageKind::Os, 7, 3, APP_BODY_ADDR, &body, &vendor()),
                ErrorCode::WrongImageKind,
            ),
            (
                sign_image(ImageKind::App, 7, 3, APP_BODY_ADDR + 4, &body, &vendor()),
                ErrorCode::BadLoadAddress,
            ),
            (
                app_image(3, 300, &SigningKey::from_bytes(&[8; 32])),
                ErrorCode::BadSignature,
            ),
        ];
        for (image, code) in cases {
            let (env, chunks) = package_for(&image, &SERIAL, &KEY);
            assert_eq!(install(&mut flash, &env, &chunks), Err(code));
        }
        assert_eq!(installed_version(&mut flash), Err(ErrorCode::NoValidImage));
    }

    #[test]
    fn a_tampered_or_missing_chunk_is_refused_and_the_old_app_still_verifies() {
        let mut flash = RamFlash::erased(0x40_0000);
        install_app(&mut flash, 3).unwrap();
        let (env, chunks) = package_for(&app_image(4, 9000, &vendor()), &SERIAL, &KEY);
        let rec = record();

        let mut tampered = chunks.clone();
        tampered[1][10] ^= 1;
        assert_eq!(install(&mut flash, &env, &tampered), Err(ErrorCode::BadTag));
        let mut tag = chunks.clone();
        let last = tag[2].len() - 1;
        tag[2][last] ^= 1;
        assert_eq!(install(&mut flash, &env, &tag), Err(ErrorCode::BadTag));
        // Out of order, too short, and a commit before the last chunk.
        let mut inst = AppInstaller::begin(&mut flash, &rec, &env).unwrap();
        assert_eq!(
            inst.chunk(&mut flash, 1, &chunks[1]),
            Err(ErrorCode::BadOffset)
        );
        assert_eq!(
            inst.chunk(&mut flash, 0, &chunks[0][..100]),
            Err(ErrorCode::BadLength)
        );
        assert_eq!(inst.chunk(&mut flash, 0, &chunks[0]), Ok(1));
        // A retransmission (lost ack) is acknowledged again.
        assert_eq!(inst.chunk(&mut flash, 0, &chunks[0]), Ok(1));
        assert_eq!(
            inst.commit(&mut flash).err(),
            Some(ErrorCode::ImageIncomplete)
        );
        assert_eq!(installed_version(&mut flash), Ok(3));
        // Chunks swapped between two releases do not authenticate either.
        let (_, foreign) = package_for(&app_image(5, 9000, &vendor()), &SERIAL, &KEY);
        let mut swapped = chunks.clone();
        swapped[0] = foreign[0].clone();
        assert_eq!(install(&mut flash, &env, &swapped), Err(ErrorCode::BadTag));
        assert_eq!(installed_version(&mut flash), Ok(3));
        assert_eq!(chunks[0].len(), CHUNK_SIZE as usize + TAG_LEN);
        assert!(SIGNED_HEADER_LEN < IMAGE_HEADER_SPACE as usize);
    }

    #[test]
    fn a_package_whose_chunks_authenticate_but_differ_from_the_signed_body_is_refused() {
        // A device owner knows the release's content key: they can seal a body of their own.
        let mut flash = RamFlash::erased(0x40_0000);
        install_app(&mut flash, 3).unwrap();
        let genuine = app_image(4, 300, &vendor());
        let mut forged = genuine.clone();
        forged[SIGNED_HEADER_LEN + 40] ^= 1;
        let release = SealedRelease::seal(&forged, Zeroizing::new([0x21; 32])).unwrap();
        let env = release
            .envelope_for(&SERIAL, 7, &KEY, &[6; PACKAGE_NONCE_LEN])
            .unwrap();
        assert_eq!(
            install(&mut flash, &env, &release.chunks),
            Err(ErrorCode::DigestMismatch)
        );
        assert_eq!(installed_version(&mut flash), Ok(3));
    }
}
