//! The device's side of a package transfer on the UART (run by the bootloader).
//!
//! ```text
//! 0x10 begin   envelope[212]                 → 0x90 ready   next_chunk u32 | chunk_count u32
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
use crate::update::package::{ContentKey, Envelope, CHUNK_SIZE, TAG_LEN};
use crate::ErrorCode;

/// Message types of the update transfer.
pub mod msg {
    /// Host → device: envelope.
    pub const BEGIN: u8 = 0x10;
    /// Host → device: one chunk.
    pub const CHUNK: u8 = 0x11;
    /// Host → device: all chunks sent.
    pub const FINISH: u8 = 0x12;
    /// Host → device: install the staged image.
    pub const INSTALL: u8 = 0x13;
    /// Host → device: status receipt request (challenge).
    pub const STATUS: u8 = 0x14;
    /// Host → OS: stop and hand over to the bootloader's update service.
    pub const ENTER_UPDATE: u8 = 0x15;
    /// Device: update service ready (sent by the OS before it hands over, and by the
    /// bootloader when it already serves).
    pub const UPDATE_MODE: u8 = 0x96;
    /// Device: ready for chunk `next`.
    pub const READY: u8 = 0x90;
    /// Device: chunk stored.
    pub const ACK: u8 = 0x91;
    /// Device: whole image staged and verified.
    pub const STAGED: u8 = 0x92;
    /// Device: installed, starting it.
    pub const INSTALLED: u8 = 0x93;
    /// Device: install stopped at the requested step.
    pub const HALTED: u8 = 0x94;
    /// Device: status receipt.
    pub const RECEIPT: u8 = 0x95;
}

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

/// What the bootloader does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this reply (type, payload in the caller's buffer of `len` bytes).
    Reply(u8, usize),
    /// Run the install (`install::install`), halting after that step if asked.
    Install {
        /// Step to stop after, for power-cut tests.
        halt_after: Option<u32>,
    },
}

/// The transfer state of one bootloader run.
#[derive(Default)]
pub struct UpdateSession {
    transfer: Option<Transfer>,
    staged: bool,
}

impl UpdateSession {
    /// No transfer yet.
    pub const fn new() -> Self {
        Self {
            transfer: None,
            staged: false,
        }
    }

    /// True for the message types this session handles.
    pub fn handles(msg_type: u8) -> bool {
        matches!(
            msg_type,
            msg::BEGIN | msg::CHUNK | msg::FINISH | msg::INSTALL
        )
    }

    /// Handles one request; a reply payload is written to `reply`.
    pub fn handle<F: NorFlash>(
        &mut self,
        msg_type: u8,
        payload: &[u8],
        flash: &mut F,
        record: &DeviceRecord,
        reply: &mut [u8; 8],
    ) -> Result<Action, ErrorCode> {
        match msg_type {
            msg::BEGIN => {
                self.staged = false;
                self.transfer = None;
                let t = begin(payload, flash, record)?;
                reply[..4].copy_from_slice(&t.next.to_le_bytes());
                reply[4..].copy_from_slice(&t.count.to_le_bytes());
                self.transfer = Some(t);
                Ok(Action::Reply(msg::READY, 8))
            }
            msg::CHUNK => {
                let t = self.transfer.as_mut().ok_or(ErrorCode::UnexpectedMessage)?;
                chunk(t, payload, flash)?;
                reply[..4].copy_from_slice(&t.next.to_le_bytes());
                Ok(Action::Reply(msg::ACK, 4))
            }
            msg::FINISH => {
                if !payload.is_empty() {
                    return Err(ErrorCode::BadLength);
                }
                let t = self.transfer.as_ref().ok_or(ErrorCode::UnexpectedMessage)?;
                if t.next != t.count {
                    return Err(ErrorCode::ImageIncomplete);
                }
                let t = self.transfer.take().ok_or(ErrorCode::UnexpectedMessage)?;
                let version = t.header.version;
                t.hasher.finish(&t.header.body_digest)?;
                self.staged = true;
                reply[..4].copy_from_slice(&version.to_le_bytes());
                Ok(Action::Reply(msg::STAGED, 4))
            }
            msg::INSTALL => {
                let halt: [u8; 4] = payload.try_into().map_err(|_| ErrorCode::BadLength)?;
                if !self.staged {
                    return Err(ErrorCode::UnexpectedMessage);
                }
                self.staged = false;
                let halt = u32::from_le_bytes(halt);
                Ok(Action::Install {
                    halt_after: (halt != 0).then_some(halt),
                })
            }
            _ => Err(ErrorCode::UnknownMessage),
        }
    }
}

fn begin<F: NorFlash>(
    payload: &[u8],
    flash: &mut F,
    record: &DeviceRecord,
) -> Result<Transfer, ErrorCode> {
    let env = Envelope::decode(payload)?;
    if env.serial != record.config.serial {
        return Err(ErrorCode::WrongSerial);
    }
    if env.product_id != record.config.product_id {
        return Err(ErrorCode::WrongProduct);
    }
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

fn chunk<F: NorFlash>(t: &mut Transfer, payload: &[u8], flash: &mut F) -> Result<(), ErrorCode> {
    let index = u32::from_le_bytes(
        payload
            .get(..4)
            .ok_or(ErrorCode::BadLength)?
            .try_into()
            .map_err(|_| ErrorCode::BadLength)?,
    );
    if index < t.next {
        // A retransmission of a chunk already stored (its ack was lost): ack again.
        return Ok(());
    }
    if index > t.next || index >= t.count {
        return Err(ErrorCode::BadOffset);
    }
    let len = (t.header.body_size - index * CHUNK_SIZE).min(CHUNK_SIZE) as usize;
    if payload.len() != 4 + len + TAG_LEN {
        return Err(ErrorCode::BadLength);
    }
    let mut plain = [0u8; CHUNK_SIZE as usize];
    plain[..len].copy_from_slice(&payload[4..4 + len]);
    t.key
        .open_chunk(index, &mut plain[..len], &payload[4 + len..])?;
    let addr = STAGING_SLOT_ADDR + IMAGE_HEADER_SPACE + index * CHUNK_SIZE;
    program_resumable(flash, addr, &plain[..len])?;
    flash.program(STAGING_SLOT_ADDR + MARKS_OFFSET + index, &[DONE])?;
    t.hasher.update(&plain[..len])?;
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
