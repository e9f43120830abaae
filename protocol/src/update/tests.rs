//! The update path on the host: a RamFlash device receives a package, installs it, and loses
//! power at every flash operation of the install (including in the middle of one).

extern crate std;
use std::vec::Vec;

use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use super::boot_state::{self, Outcome, Phase};
use super::install::{self, BootDecision, Steps, MAX_TRIAL_BOOTS};
use super::package::{SealedRelease, CHUNK_SIZE, TAG_LEN};
use super::session::UpdateSession;
use crate::device_record::{DeviceConfig, DeviceRecord};
use crate::flash::{FlashError, NorFlash, RamFlash};
use crate::image::{sign_image, ImageKind, SIGNED_HEADER_LEN};
use crate::layout::{
    DEVICE_RECORD_ADDR, FLASH_PAGE_SIZE, FLASH_SIZE, IMAGE_HEADER_SPACE, OS_SLOT_ADDR,
};
use crate::ErrorCode;

pub(crate) const SERIAL: [u8; 16] = [0x5A; 16];
pub(crate) const KEY: [u8; 32] = [0x33; 32];

pub(crate) fn vendor() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

pub(crate) fn record() -> DeviceRecord {
    DeviceRecord {
        config: DeviceConfig {
            serial: SERIAL,
            product_id: 7,
            vendor_public: vendor().verifying_key().to_bytes(),
            authority_public: crate::certificate::tests::authority()
                .verifying_key()
                .to_bytes(),
            rollback_floor: 1,
            flags: 0,
        },
        device_key: KEY,
        bootloader_version: 3,
        bootloader_size: 0,
        bootloader_digest: [0; 32],
        certificate: crate::certificate::CertificateBody {
            product_id: 7,
            unique_id: SERIAL,
            key_commitment: crate::certificate::key_commitment(&KEY),
            ..crate::certificate::tests::body()
        }
        .sign(&crate::certificate::tests::authority()),
    }
}

pub(crate) fn os_image(version: u32, len: usize, signer: &SigningKey) -> Vec<u8> {
    let body: Vec<u8> = (0..len).map(|i| (i as u32 * 31 + version) as u8).collect();
    sign_image(
        ImageKind::Os,
        7,
        version,
        OS_SLOT_ADDR + IMAGE_HEADER_SPACE,
        &body,
        signer,
    )
}

/// A provisioned device running `old` (version 1).
pub(crate) fn device() -> RamFlash {
    let mut f = RamFlash::erased(FLASH_SIZE as usize);
    f.program(DEVICE_RECORD_ADDR, &record().to_bytes()).unwrap();
    let old = os_image(1, 9000, &vendor());
    f.program(OS_SLOT_ADDR, &old[..SIGNED_HEADER_LEN]).unwrap();
    f.program(OS_SLOT_ADDR + IMAGE_HEADER_SPACE, &old[SIGNED_HEADER_LEN..])
        .unwrap();
    f
}

pub(crate) fn package(image: &[u8], serial: &[u8; 16], key: &[u8; 32]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let release = SealedRelease::seal(image, Zeroizing::new([0x77; 32])).unwrap();
    // One package per call: a resumed transfer re-sends this same envelope.
    let env = release
        .envelope_for(serial, 7, key, &[6; 16])
        .unwrap()
        .to_vec();
    (env, release.chunks)
}

/// Sends the whole package and hands it to the install; returns the staged version.
fn transfer(f: &mut impl NorFlash, env: &[u8], chunks: &[Vec<u8>]) -> Result<u32, ErrorCode> {
    let mut s = UpdateSession::new();
    let ready = s.begin(env, f, &record())?;
    assert_eq!(ready.count as usize, chunks.len());
    for (i, c) in chunks.iter().enumerate().skip(ready.next as usize) {
        assert_eq!(s.chunk(i as u32, c, f)?, i as u32 + 1);
    }
    let version = s.finish()?;
    s.take_staged()?;
    assert_eq!(
        s.take_staged(),
        Err(ErrorCode::UnexpectedMessage),
        "staged once"
    );
    Ok(version)
}

fn boot(f: &mut impl NorFlash) -> BootDecision {
    install::boot(f, &record(), &mut Steps::unlimited()).unwrap()
}

fn started(d: BootDecision) -> u32 {
    match d {
        BootDecision::Start(os) => os.version,
        BootDecision::NoImage(e) => panic!("no image: {e}"),
    }
}

#[test]
fn update_installs_boots_confirms_and_raises_the_floor() {
    let mut f = device();
    let (env, chunks) = package(&os_image(2, 13000, &vendor()), &SERIAL, &KEY);
    assert_eq!(transfer(&mut f, &env, &chunks), Ok(2));
    install::install(&mut f, &record(), &mut Steps::unlimited()).unwrap();
    assert_eq!(started(boot(&mut f)), 2);
    let st = install::confirm(&mut f, 2).unwrap();
    assert_eq!(
        (st.phase, st.outcome, st.floor),
        (Phase::Idle, Outcome::Updated, 2)
    );
    assert_eq!(started(boot(&mut f)), 2);
    // The floor now refuses version 1 in a package …
    let (env, chunks) = package(&os_image(1, 100, &vendor()), &SERIAL, &KEY);
    assert_eq!(transfer(&mut f, &env, &chunks), Err(ErrorCode::Rollback));
}

#[test]
fn refusals_before_anything_is_installed() {
    let mut f = device();
    let before = f.bytes.clone();
    let image = os_image(2, 5000, &vendor());
    // For another device (its serial, its key): the serial check.
    let (env, chunks) = package(&image, &[1; 16], &[2; 32]);
    assert_eq!(transfer(&mut f, &env, &chunks), Err(ErrorCode::WrongSerial));
    // Our serial, another key: the unwrap fails.
    let (env, chunks) = package(&image, &SERIAL, &[2; 32]);
    assert_eq!(transfer(&mut f, &env, &chunks), Err(ErrorCode::WrongDevice));
    // Signed by someone else.
    let forged = os_image(2, 5000, &SigningKey::from_bytes(&[1; 32]));
    let (env, chunks) = package(&forged, &SERIAL, &KEY);
    assert_eq!(
        transfer(&mut f, &env, &chunks),
        Err(ErrorCode::BadSignature)
    );
    // Below the record's floor (1).
    let (env, chunks) = package(&os_image(0, 5000, &vendor()), &SERIAL, &KEY);
    assert_eq!(transfer(&mut f, &env, &chunks), Err(ErrorCode::Rollback));
    assert_eq!(f.bytes, before, "a refused package changed flash");
    // A tampered chunk: refused before it is written; the right one is accepted after.
    let (env, mut chunks) = package(&image, &SERIAL, &KEY);
    chunks[1][10] ^= 1;
    assert_eq!(transfer(&mut f, &env, &chunks), Err(ErrorCode::BadTag));
    let (env, chunks) = package(&image, &SERIAL, &KEY);
    assert!(transfer(&mut f, &env, &chunks).is_ok());
    assert_eq!(started(boot(&mut f)), 1, "staged but not installed");
}

#[test]
fn truncated_transfer_resumes_where_it_stopped() {
    let mut f = device();
    let image = os_image(2, 5 * CHUNK_SIZE as usize + 100, &vendor());
    let (env, chunks) = package(&image, &SERIAL, &KEY);
    let mut s = UpdateSession::new();
    assert_eq!(s.take_staged(), Err(ErrorCode::UnexpectedMessage));
    assert_eq!(
        s.chunk(0, &chunks[0], &mut f),
        Err(ErrorCode::UnexpectedMessage)
    );
    s.begin(&env, &mut f, &record()).unwrap();
    for (i, c) in chunks.iter().enumerate().take(3) {
        s.chunk(i as u32, c, &mut f).unwrap();
    }
    // A retransmitted chunk (its ack was lost) is acknowledged again; one from the future
    // is refused.
    assert_eq!(s.chunk(1, &chunks[1], &mut f), Ok(3));
    assert_eq!(s.chunk(4, &chunks[4], &mut f), Err(ErrorCode::BadOffset));
    assert_eq!(s.finish(), Err(ErrorCode::ImageIncomplete));
    // Power cut: a new session (fresh RAM) resumes at chunk 3.
    let mut s = UpdateSession::new();
    assert_eq!(s.begin(&env, &mut f, &record()).unwrap().next, 3);
    for (i, c) in chunks.iter().enumerate().skip(3) {
        s.chunk(i as u32, c, &mut f).unwrap();
    }
    s.finish().unwrap();
    s.take_staged().unwrap();
    install::install(&mut f, &record(), &mut Steps::unlimited()).unwrap();
    assert_eq!(started(boot(&mut f)), 2);
    install::confirm(&mut f, 2).unwrap();
    // Chunk length is checked exactly.
    let mut s = UpdateSession::new();
    let (env, chunks) = package(&os_image(3, 5000, &vendor()), &SERIAL, &KEY);
    s.begin(&env, &mut f, &record()).unwrap();
    let short = &chunks[0][..chunks[0].len() - TAG_LEN - 1];
    assert_eq!(s.chunk(0, short, &mut f), Err(ErrorCode::BadLength));
}

/// A flash that loses power at its `cut_at`-th mutating operation: that operation is half done
/// (half a program, half a page erased), later ones do nothing.
struct PowerCutFlash {
    inner: RamFlash,
    ops: u32,
    cut_at: u32,
}

impl NorFlash for PowerCutFlash {
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        self.inner.read(addr, buf)
    }
    fn erase_page(&mut self, addr: u32) -> Result<(), FlashError> {
        self.ops += 1;
        if self.ops == self.cut_at {
            let half = (FLASH_PAGE_SIZE / 2) as usize;
            self.inner.bytes[addr as usize..addr as usize + half].fill(0xFF);
        }
        if self.ops >= self.cut_at {
            return Err(FlashError::OutOfRange);
        }
        self.inner.erase_page(addr)
    }
    fn program(&mut self, addr: u32, data: &[u8]) -> Result<(), FlashError> {
        self.ops += 1;
        if self.ops == self.cut_at {
            let half = data.len() / 2;
            self.inner.program(addr, &data[..half])?;
        }
        if self.ops >= self.cut_at {
            return Err(FlashError::OutOfRange);
        }
        self.inner.program(addr, data)
    }
}

#[test]
fn power_cut_at_every_flash_operation_boots_old_or_new() {
    let image = os_image(2, 13000, &vendor());
    let (env, chunks) = package(&image, &SERIAL, &KEY);
    let mut staged = device();
    transfer(&mut staged, &env, &chunks).unwrap();
    // Count the install's flash operations (install, first boot, confirm).
    let mut probe = PowerCutFlash {
        inner: RamFlash {
            bytes: staged.bytes.clone(),
            debug_locked: false,
        },
        ops: 0,
        cut_at: u32::MAX,
    };
    install::install(&mut probe, &record(), &mut Steps::unlimited()).unwrap();
    started(install::boot(&mut probe, &record(), &mut Steps::unlimited()).unwrap());
    install::confirm(&mut probe, 2).unwrap();
    let total = probe.ops;
    assert!(total > 20, "only {total} operations");
    let mut seen = [false; 2];
    for cut_at in 1..=total {
        let mut f = PowerCutFlash {
            inner: RamFlash {
                bytes: staged.bytes.clone(),
                debug_locked: false,
            },
            ops: 0,
            cut_at,
        };
        let _ = install::install(&mut f, &record(), &mut Steps::unlimited())
            .and_then(|_| install::boot(&mut f, &record(), &mut Steps::unlimited()))
            .and_then(|_| install::confirm(&mut f, 2));
        // Power back: boot until something starts; the new image confirms when it runs.
        let mut flash = f.inner;
        let version = started(boot(&mut flash));
        assert!(version == 1 || version == 2, "cut {cut_at}: v{version}");
        seen[version as usize - 1] = true;
        if version == 2 {
            install::confirm(&mut flash, 2).unwrap();
        }
        let st = boot_state::read(&mut flash).unwrap();
        assert_eq!(st.phase, Phase::Idle, "cut {cut_at}: {st:?}");
        let truthful = match version {
            2 => st.outcome == Outcome::Updated && st.floor == 2,
            _ => matches!(st.outcome, Outcome::None | Outcome::RolledBack) && st.floor == 0,
        };
        assert!(truthful, "cut {cut_at}: v{version} with {st:?}");
        // Whatever happened, a later boot still starts the same image.
        assert_eq!(started(boot(&mut flash)), version, "cut {cut_at}");
    }
    assert!(seen[1], "no cut ended in the new image");
}

#[test]
fn image_that_never_confirms_is_reverted_after_its_trial_boots() {
    let mut f = device();
    let (env, chunks) = package(&os_image(2, 13000, &vendor()), &SERIAL, &KEY);
    transfer(&mut f, &env, &chunks).unwrap();
    install::install(&mut f, &record(), &mut Steps::unlimited()).unwrap();
    for _ in 0..MAX_TRIAL_BOOTS {
        assert_eq!(started(boot(&mut f)), 2);
    }
    assert_eq!(started(boot(&mut f)), 1);
    let st = boot_state::read(&mut f).unwrap();
    assert_eq!(st.outcome, Outcome::RolledBack);
    assert_eq!(st.last_error, ErrorCode::NotConfirmed as u32);
    assert_eq!(st.floor, 0, "the floor moved without a confirmation");
}

#[test]
fn halting_after_each_step_then_booting_gives_old_or_new() {
    let (env, chunks) = package(&os_image(2, 13000, &vendor()), &SERIAL, &KEY);
    let mut staged = device();
    transfer(&mut staged, &env, &chunks).unwrap();
    let mut steps = Steps::unlimited();
    install::install(&mut staged.clone_flash(), &record(), &mut steps).unwrap();
    for halt in 1..=steps.done {
        let mut f = staged.clone_flash();
        let mut s = Steps {
            done: 0,
            halt_after: Some(halt),
        };
        let r = install::install(&mut f, &record(), &mut s);
        assert_eq!(r.err(), Some(ErrorCode::InstallHalted), "step {halt}");
        let v = started(boot(&mut f));
        assert!(v == 1 || v == 2);
    }
}

trait CloneFlash {
    fn clone_flash(&self) -> RamFlash;
}

impl CloneFlash for RamFlash {
    fn clone_flash(&self) -> RamFlash {
        RamFlash {
            bytes: self.bytes.clone(),
            debug_locked: false,
        }
    }
}

/// Bench line: `cargo test -p flashgate-protocol --features std --release -- --ignored
/// --nocapture issue_rate`. A 256 KiB release sealed once, then wrapped for 10,000 devices
/// (each: HKDF from the device key + one 32-byte AEAD).
#[test]
#[ignore = "benchmark; run in release"]
fn issue_rate() {
    let image = os_image(9, 256 * 1024, &vendor());
    let t = std::time::Instant::now();
    let release = SealedRelease::seal(&image, Zeroizing::new([1; 32])).unwrap();
    let seal = t.elapsed();
    let t = std::time::Instant::now();
    for i in 0..10_000u32 {
        let mut serial = [0u8; 16];
        serial[..4].copy_from_slice(&i.to_le_bytes());
        let key = crate::kdf::derive(&[7; 32], b"bench-device-key", &[&serial]);
        let mut nonce = [0u8; 16];
        nonce[..4].copy_from_slice(&i.to_le_bytes());
        std::hint::black_box(release.envelope_for(&serial, 7, &key, &nonce).unwrap());
    }
    let wrap = t.elapsed();
    std::println!(
        "seal 256 KiB once: {seal:?}; 10,000 envelopes: {wrap:?} ({:.0} packages/s)",
        10_000.0 / wrap.as_secs_f64()
    );
}
