//! The device's side of a package transfer into the staging slot (run by the bootloader).
//!
//! Transport-agnostic: [`UpdateSession`] takes the envelope, the chunks, `finish` and the
//! install request as typed calls; the UART service (`uart::service`) maps frames to them.
//! On the UART (`uart::MsgType`):
//! ```text
//! 0x10 begin   envelope[228]                 → 0x90 ready   next_chunk u32 | chunk_count u32
//! 0x11 chunk   index u32 | ciphertext | tag  → 0x91 ack     next_chunk u32
//! 0x12 finish  (empty)                       → 0x92 staged  version u32
//! 0x15 enter   (empty)                       → 0x96 update mode (the OS then jumps to the
//!                                              bootloader, which serves the rest)
//! 0x13 install halt_after_step u32 (0: none) → 0x93 installed version u32, then the new OS
//!                                              starts (its banner follows), or
//!                                              0x94 halted step u32 (power-cut tests)
//! ```
//! `begin` checks, before anything is written: serial and product of the envelope, the vendor
//! signature over the image header, kind, slot, size and the anti-rollback floor, then unwraps
//! the content key (a package for another device fails here). Each chunk is authenticated
//! before it is programmed into the staging slot, and hashed; `finish` compares the hash of the
//! whole plaintext with the signed digest.
//!
//! Resumable: the staging slot's header space keeps the SHA-256 of the envelope (at +128) and
//! one "done" byte per chunk (at +256). A `begin` with the same envelope — on the same link,
//! or after a reconnect or a power cut — re-hashes the chunks already staged and answers with
//! the next chunk needed.

use sha2::{Digest, Sha256};

use crate::device_record::DeviceRecord;
use crate::flash::NorFlash;
use crate::image::{BodyHasher, ImageHeader, ImageKind, SignedImageHeader, SIGNED_HEADER_LEN};
use crate::layout::{IMAGE_HEADER_SPACE, OS_SLOT_ADDR, OS_SLOT_SIZE, STAGING_SLOT_ADDR};
use crate::update::boot_state::{self, Phase};
use crate::update::package::{ContentKey, Envelope, CHUNK_SIZE};
use crate::ErrorCode;

const ENVELOPE_ID_OFFSET: u32 = SIGNED_HEADER_LEN as u32;
const MARKS_OFFSET: u32 = 256;
const DONE: u8 = 0x00;

struct Transfer {
    key: ContentKey,
    header: ImageHeader,
    count: u32,
    next: u32,
    hasher: BodyHasher,
}

/// Where the transfer of one bootloader run stands.
// One instance lives in the bootloader's frame for the whole run and there is no heap: boxing
// the transfer is not an option, and nothing is gained by shrinking the other states.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// No transfer (or the last one failed to finish).
    Idle,
    /// Chunks are arriving.
    Receiving(Transfer),
    /// The whole image is staged and verified: it may be installed.
    Staged,
}

/// What `begin` answers: the next chunk needed (past 0 when a transfer resumes) and how many
/// there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// The next chunk needed.
    pub next: u32,
    /// Chunks in the package.
    pub count: u32,
}

/// The transfer state of one bootloader run.
pub struct UpdateSession {
    step: Step,
}

impl Default for UpdateSession {
    fn default() -> Self {
        Self::new()
    }
}

impl UpdateSession {
    /// No transfer yet.
    pub const fn new() -> Self {
        Self { step: Step::Idle }
    }

    /// Begins a transfer with `envelope`, or resumes the one the staging slot holds for the
    /// same envelope. Any transfer under way or staged image is forgotten first.
    pub fn begin<F: NorFlash>(
        &mut self,
        envelope: &[u8],
        flash: &mut F,
        record: &DeviceRecord,
    ) -> Result<Ready, ErrorCode> {
        self.step = Step::Idle;
        let t = begin(envelope, flash, record)?;
        let ready = Ready {
            next: t.next,
            count: t.count,
        };
        self.step = Step::Receiving(t);
        Ok(ready)
    }

    /// Authenticates chunk `index` (ciphertext then tag) and programs it; returns the next
    /// chunk needed. A chunk already stored is acknowledged again (its ack was lost).
    pub fn chunk<F: NorFlash>(
        &mut self,
        index: u32,
        sealed: &[u8],
        flash: &mut F,
    ) -> Result<u32, ErrorCode> {
        let Step::Receiving(t) = &mut self.step else {
            return Err(ErrorCode::UnexpectedMessage);
        };
        chunk(t, index, sealed, flash)?;
        Ok(t.next)
    }

    /// Every chunk arrived: checks the digest of the whole body; returns the staged version.
    /// A digest mismatch ends the transfer.
    pub fn finish(&mut self) -> Result<u32, ErrorCode> {
        match core::mem::replace(&mut self.step, Step::Idle) {
            Step::Receiving(t) if t.next != t.count => {
                self.step = Step::Receiving(t);
                Err(ErrorCode::ImageIncomplete)
            }
            Step::Receiving(t) => {
                t.hasher.finish(&t.header.body_digest)?;
                self.step = Step::Staged;
                Ok(t.header.version)
            }
            other => {
                self.step = other;
                Err(ErrorCode::UnexpectedMessage)
            }
        }
    }

    /// Hands the staged image over to the install (`update::install::install`); a second
    /// install needs a new transfer.
    pub fn take_staged(&mut self) -> Result<(), ErrorCode> {
        match self.step {
            Step::Staged => {
                self.step = Step::Idle;
                Ok(())
            }
            _ => Err(ErrorCode::UnexpectedMessage),
        }
    }
}

fn begin<F: NorFlash>(
    payload: &[u8],
    flash: &mut F,
    record: &DeviceRecord,
) -> Result<Transfer, ErrorCode> {
    let env = Envelope::addressed_to(payload, record)?;
    let header = *env.signed_header.verify(&record.config.vendor_public)?;
    let state = boot_state::read(flash)?;
    if state.phase != Phase::Idle {
        return Err(ErrorCode::UnexpectedMessage);
    }
    SignedImageHeader::check_fits(
        &header,
        ImageKind::Os,
        record.config.product_id,
        OS_SLOT_ADDR + IMAGE_HEADER_SPACE,
        OS_SLOT_SIZE - IMAGE_HEADER_SPACE,
        state.floor.max(record.config.rollback_floor),
    )?;
    let key = env.open(&record.device_key)?;
    let id: [u8; 32] = Sha256::digest(payload).into();

    let mut stored = [0u8; 32];
    flash.read(STAGING_SLOT_ADDR + ENVELOPE_ID_OFFSET, &mut stored)?;
    let mut hasher = BodyHasher::new(header.body_size);
    let mut next = 0;
    if stored == id {
        // Resume: count the chunks marked done, re-hash what they hold.
        let mut mark = [0u8; 1];
        while next < env.chunk_count {
            flash.read(STAGING_SLOT_ADDR + MARKS_OFFSET + next, &mut mark)?;
            if mark[0] != DONE {
                break;
            }
            next += 1;
        }
        let staged = (next * CHUNK_SIZE).min(header.body_size);
        let mut buf = [0u8; 256];
        let mut at = 0;
        while at < staged {
            let n = (staged - at).min(256) as usize;
            flash.read(STAGING_SLOT_ADDR + IMAGE_HEADER_SPACE + at, &mut buf[..n])?;
            hasher.update(&buf[..n])?;
            at += n as u32;
        }
    } else {
        flash.erase_range(STAGING_SLOT_ADDR, IMAGE_HEADER_SPACE + header.body_size)?;
        flash.program(STAGING_SLOT_ADDR, &env.signed_header.to_bytes())?;
        // The envelope id last: a cut before it makes the next begin start afresh.
        flash.program(STAGING_SLOT_ADDR + ENVELOPE_ID_OFFSET, &id)?;
    }
    Ok(Transfer {
        key,
        header,
        count: env.chunk_count,
        next,
        hasher,
    })
}

fn chunk<F: NorFlash>(
    t: &mut Transfer,
    index: u32,
    sealed: &[u8],
    flash: &mut F,
) -> Result<(), ErrorCode> {
    if index < t.next {
        // A retransmission of a chunk already stored (its ack was lost): ack again.
        return Ok(());
    }
    if index > t.next || index >= t.count {
        return Err(ErrorCode::BadOffset);
    }
    let mut buf = [0u8; CHUNK_SIZE as usize];
    let plain = t
        .key
        .open_chunk_into(index, t.header.body_size, sealed, &mut buf)?;
    let addr = STAGING_SLOT_ADDR + IMAGE_HEADER_SPACE + index * CHUNK_SIZE;
    program_resumable(flash, addr, plain)?;
    flash.program(STAGING_SLOT_ADDR + MARKS_OFFSET + index, &[DONE])?;
    t.hasher.update(plain)?;
    t.next += 1;
    Ok(())
}

/// Programs `data` at `addr` where a cut may have left part of it programmed already: bytes
/// that already hold their value are kept, erased bytes are programmed, anything else is a
/// flash error.
fn program_resumable<F: NorFlash>(flash: &mut F, addr: u32, data: &[u8]) -> Result<(), ErrorCode> {
    let mut have = [0u8; 256];
    for (i, want) in data.chunks(256).enumerate() {
        let at = addr + (i * 256) as u32;
        let have = &mut have[..want.len()];
        flash.read(at, have)?;
        if have.iter().all(|b| *b == 0xFF) {
            flash.program(at, want)?;
            continue;
        }
        for (j, (h, w)) in have.iter().zip(want).enumerate() {
            if h == w {
                continue;
            }
            if *h != 0xFF {
                return Err(ErrorCode::Flash);
            }
            flash.program(at + j as u32, &[*w])?;
        }
    }
    Ok(())
}
