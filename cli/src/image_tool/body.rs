//! An image body and what its kind requires of it: the input file (raw `.bin` or ELF), its
//! place in the slot map, the entry a device will use, and the trust-anchor block.

use flashgate_protocol::app::{parse_app_header, APP_HEADER_LEN};
use flashgate_protocol::image::{ImageKind, Slot};
use flashgate_protocol::layout::TRUST_ANCHORS_OFFSET;
use flashgate_protocol::trust_anchors::{self, TrustAnchors};
use flashgate_protocol::ErrorCode;

use super::elf::{self, ElfError};

/// What the input file was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// Raw bytes (`objcopy -O binary`): the load address comes from the slot map.
    Bin,
    /// An ELF file: bytes and load address from its loadable segments.
    Elf {
        /// How many segments made the body.
        segments: usize,
    },
}

/// An unsigned body as read from the input file.
#[derive(Debug)]
pub struct Input {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Where an ELF file says they load (`None` for a raw binary).
    pub load_addr: Option<u32>,
    /// Bin or ELF.
    pub format: InputFormat,
}

impl Input {
    /// Reads a `.bin` or (by its magic) an ELF file's contents.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, ElfError> {
        if !elf::is_elf(&bytes) {
            return Ok(Self {
                bytes,
                load_addr: None,
                format: InputFormat::Bin,
            });
        }
        let image = elf::loadable(&bytes)?;
        Ok(Self {
            bytes: image.bytes,
            load_addr: Some(image.load_addr),
            format: InputFormat::Elf {
                segments: image.segments,
            },
        })
    }
}

/// Why a body does not fit its kind's slot or does not start the way its kind is entered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotProblem {
    /// Linked for another address.
    #[error(
        "it loads at {load_addr:#010x}, but the {kind} slot's body starts at {expected:#010x} \
         (link it for the {kind} slot: docs/firmware-guide.md)",
        kind = kind.name()
    )]
    LoadAddress {
        /// The image's kind.
        kind: ImageKind,
        /// Where it loads.
        load_addr: u32,
        /// Where the slot wants it.
        expected: u32,
    },
    /// Larger than the slot.
    #[error(
        "its body is {size} bytes, more than the {kind} slot's {max} bytes",
        kind = kind.name()
    )]
    TooLarge {
        /// The image's kind.
        kind: ImageKind,
        /// Body size.
        size: usize,
        /// The slot's limit.
        max: u32,
    },
    /// Nothing to sign.
    #[error("its body is empty")]
    Empty,
    /// The reset vector does not point into the body.
    #[error(
        "it does not start with a vector table linked for {load_addr:#010x}: its reset vector \
         {reset:#010x} is not a Thumb address inside the image (linked for another address?)"
    )]
    NoVectorTable {
        /// Where the body loads.
        load_addr: u32,
        /// Word 1 of the body.
        reset: u32,
    },
    /// An app body without a valid app header.
    #[error(
        "it does not start with a valid app header (\"FGAP\", ABI 1, an entry inside the image)"
    )]
    NoAppHeader,
}

/// Checks that `body`, loading at `load_addr`, fits `kind`'s slot and starts as that kind is
/// entered: a vector table (bootloader, OS, reset vector inside the body) or an app header.
pub fn check_slot(kind: ImageKind, load_addr: u32, body: &[u8]) -> Result<Slot, SlotProblem> {
    let slot = kind.slot();
    match slot.check(load_addr, body.len()) {
        Ok(()) => {}
        Err(ErrorCode::BadLoadAddress) => {
            return Err(SlotProblem::LoadAddress {
                kind,
                load_addr,
                expected: slot.body_addr,
            })
        }
        Err(_) if body.is_empty() => return Err(SlotProblem::Empty),
        Err(_) => {
            return Err(SlotProblem::TooLarge {
                kind,
                size: body.len(),
                max: slot.max_body,
            })
        }
    }
    match kind {
        ImageKind::Bootloader | ImageKind::Os => {
            let reset = body
                .get(4..8)
                .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
            let target = u64::from(reset & !1);
            let image = u64::from(load_addr)..u64::from(load_addr) + body.len() as u64;
            if reset & 1 == 0 || !image.contains(&target) {
                return Err(SlotProblem::NoVectorTable { load_addr, reset });
            }
        }
        ImageKind::App => {
            let head: Option<&[u8; APP_HEADER_LEN]> =
                body.get(..APP_HEADER_LEN).and_then(|h| h.try_into().ok());
            head.and_then(|h| parse_app_header(h, body.len() as u32).ok())
                .ok_or(SlotProblem::NoAppHeader)?;
        }
        ImageKind::TestApp => {}
    }
    Ok(slot)
}

/// The trust-anchor block of a body, as its kind sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchors {
    /// The kind pins no anchors (app, test app).
    NotPinned,
    /// The body has no block at the offset.
    Missing,
    /// The block is there; its keys may still be the build-time zeros.
    Present(TrustAnchors),
}

impl Anchors {
    /// Reads the block of `body` for an image of `kind`.
    pub fn of(kind: ImageKind, body: &[u8]) -> Self {
        if !kind.pins_trust_anchors() {
            return Self::NotPinned;
        }
        trust_anchors::read(body).map_or(Self::Missing, Self::Present)
    }

    /// What is wrong, for a kind that pins anchors; `None` when they are filled (or not used).
    pub fn problem(&self) -> Option<String> {
        match self {
            Self::NotPinned => None,
            Self::Missing => Some(format!(
                "it has no trust-anchor block at body + {TRUST_ANCHORS_OFFSET:#x} (link a \
                 .trust_anchors section there: docs/firmware-guide.md)"
            )),
            Self::Present(a) if !a.is_filled() => Some(
                "its trust anchors are not filled (zero keys): sign it with --vendor-pub and \
                 --authority-pub"
                    .into(),
            ),
            Self::Present(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashgate_protocol::app::APP_BODY_ADDR;

    fn os_body(reset: u32) -> Vec<u8> {
        let mut body = vec![0u8; 2048];
        body[..4].copy_from_slice(&0x2040_0000u32.to_le_bytes());
        body[4..8].copy_from_slice(&reset.to_le_bytes());
        body
    }

    #[test]
    fn slot_checks_name_what_is_wrong() {
        let os = ImageKind::Os.slot().body_addr;
        assert!(check_slot(ImageKind::Os, os, &os_body(os + 0x451)).is_ok());
        assert_eq!(
            check_slot(ImageKind::Os, 0, &os_body(0x451)),
            Err(SlotProblem::LoadAddress {
                kind: ImageKind::Os,
                load_addr: 0,
                expected: os
            })
        );
        // Linked for address 0 but signed for the OS slot: the reset vector gives it away.
        assert_eq!(
            check_slot(ImageKind::Os, os, &os_body(0x451)),
            Err(SlotProblem::NoVectorTable {
                load_addr: os,
                reset: 0x451
            })
        );
        // An ARM (not Thumb) reset vector.
        assert!(check_slot(ImageKind::Os, os, &os_body(os + 0x450)).is_err());
        let max = ImageKind::Os.slot().max_body as usize;
        let mut big = os_body(os + 0x451);
        big.resize(max + 1, 0);
        assert!(matches!(
            check_slot(ImageKind::Os, os, &big),
            Err(SlotProblem::TooLarge { .. })
        ));
        assert_eq!(check_slot(ImageKind::Os, os, &[]), Err(SlotProblem::Empty));
        assert_eq!(
            check_slot(ImageKind::App, APP_BODY_ADDR, &os_body(0)),
            Err(SlotProblem::NoAppHeader)
        );
    }

    #[test]
    fn anchors_are_read_for_the_kinds_that_pin_them() {
        let mut body = os_body(0);
        assert_eq!(Anchors::of(ImageKind::Os, &body), Anchors::Missing);
        assert!(Anchors::of(ImageKind::Os, &body).problem().is_some());
        assert_eq!(Anchors::of(ImageKind::App, &body), Anchors::NotPinned);
        let at = TRUST_ANCHORS_OFFSET as usize;
        body[at..at + 80].copy_from_slice(&trust_anchors::PLACEHOLDER);
        let unfilled = Anchors::of(ImageKind::Bootloader, &body);
        assert!(matches!(unfilled, Anchors::Present(a) if !a.is_filled()));
        assert!(unfilled.problem().unwrap().contains("not filled"));
    }
}
