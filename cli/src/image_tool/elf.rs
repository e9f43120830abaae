//! The loadable bytes of a 32-bit little-endian Arm ELF, as `objcopy -O binary` would emit
//! them, and the address they load at.
//!
//! The bytes come from the `PT_LOAD` segments with file contents, each trimmed to the
//! allocated sections it holds (GNU ld may map the ELF and program headers into the first
//! segment when there is room below the first section; those bytes are not part of the image).
//! The segments must follow each other at their load (physical) addresses with no gap and no
//! overlap, so the body is one block that loads at the first segment's address: a gap would
//! leave bytes the signature does not describe, an overlap would make the body ambiguous.

use std::ops::Range;

/// Why an ELF file is not a flashgate image body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    /// Not ELF32, not little-endian, not Arm, or a header points outside the file.
    #[error("not a 32-bit little-endian Arm ELF file: {0}")]
    Format(&'static str),
    /// No segment with bytes to load.
    #[error("the ELF file has no loadable segment with contents")]
    Empty,
    /// Two segments with a gap (or an overlap) between them.
    #[error(
        "its loadable segments are not contiguous: one ends at {end:#010x}, the next starts at \
         {next:#010x}; link the image as one block (docs/firmware-guide.md)"
    )]
    NotContiguous {
        /// Load address just past the earlier segment.
        end: u32,
        /// Load address of the next one.
        next: u32,
    },
}

/// The image an ELF file loads.
#[derive(Debug, PartialEq, Eq)]
pub struct Loadable {
    /// Load (physical) address of the first byte.
    pub load_addr: u32,
    /// The bytes, segments concatenated.
    pub bytes: Vec<u8>,
    /// Number of segments they came from.
    pub segments: usize,
}

const PT_LOAD: u32 = 1;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u32 = 2;
const EM_ARM: u16 = 40;

/// True when `bytes` start with the ELF magic.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

struct File<'a>(&'a [u8]);

impl File<'_> {
    fn u16(&self, at: usize) -> Result<u16, ElfError> {
        let b = self.range(at, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&self, at: usize) -> Result<u32, ElfError> {
        let b = self.range(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn range(&self, at: usize, len: usize) -> Result<&[u8], ElfError> {
        at.checked_add(len)
            .and_then(|end| self.0.get(at..end))
            .ok_or(ElfError::Format("a header points past the end of the file"))
    }

    /// `count` table entries of `size` bytes from `offset`: each entry's start.
    fn table(&self, offset: u32, count: u16, size: u16) -> Result<Vec<usize>, ElfError> {
        let (offset, size) = (offset as usize, usize::from(size));
        self.range(offset, usize::from(count) * size)?;
        Ok((0..usize::from(count)).map(|i| offset + i * size).collect())
    }
}

struct Segment {
    offset: u32,
    vaddr: u32,
    paddr: u32,
    filesz: u32,
}

/// Reads the loadable image of `bytes` (see the module documentation).
pub fn loadable(bytes: &[u8]) -> Result<Loadable, ElfError> {
    let f = File(bytes);
    if !is_elf(bytes) {
        return Err(ElfError::Format("no ELF magic"));
    }
    if f.range(4, 2)? != [1, 1] {
        return Err(ElfError::Format("not ELFCLASS32 little-endian"));
    }
    if f.u16(18)? != EM_ARM {
        return Err(ElfError::Format("e_machine is not Arm"));
    }
    let segments = f
        .table(f.u32(28)?, f.u16(44)?, f.u16(42)?)?
        .into_iter()
        .map(|at| {
            Ok((
                f.u32(at)?,
                Segment {
                    offset: f.u32(at + 4)?,
                    vaddr: f.u32(at + 8)?,
                    paddr: f.u32(at + 12)?,
                    filesz: f.u32(at + 16)?,
                },
            ))
        })
        .collect::<Result<Vec<_>, ElfError>>()?;
    // Allocated sections with contents (no .bss): what the segments are trimmed to.
    let sections = f
        .table(f.u32(32)?, f.u16(48)?, f.u16(46)?)?
        .into_iter()
        .map(|at| {
            Ok((
                f.u32(at + 4)?,
                f.u32(at + 8)?,
                f.u32(at + 12)?,
                f.u32(at + 20)?,
            ))
        })
        .collect::<Result<Vec<_>, ElfError>>()?
        .into_iter()
        .filter(|(ty, flags, _, size)| *ty != SHT_NOBITS && flags & SHF_ALLOC != 0 && *size > 0)
        .map(|(_, _, addr, size)| u64::from(addr)..u64::from(addr) + u64::from(size))
        .collect::<Vec<Range<u64>>>();

    let mut pieces: Vec<(u32, &[u8])> = Vec::new();
    for (ty, seg) in &segments {
        if *ty != PT_LOAD || seg.filesz == 0 {
            continue;
        }
        let span = u64::from(seg.vaddr)..u64::from(seg.vaddr) + u64::from(seg.filesz);
        let inside: Vec<&Range<u64>> = sections
            .iter()
            .filter(|s| s.start >= span.start && s.end <= span.end)
            .collect();
        // Without section headers (or sections) the whole segment counts.
        let lo = inside.iter().map(|s| s.start).min().unwrap_or(span.start);
        let hi = inside.iter().map(|s| s.end).max().unwrap_or(span.end);
        let skip = (lo - span.start) as u32;
        let data = f.range(seg.offset as usize + skip as usize, (hi - lo) as usize)?;
        pieces.push((seg.paddr.wrapping_add(skip), data));
    }
    pieces.sort_by_key(|(addr, _)| *addr);
    let (&(load_addr, _), _) = pieces.split_first().ok_or(ElfError::Empty)?;
    let mut out = Vec::new();
    let mut end = u64::from(load_addr);
    for (addr, data) in &pieces {
        if u64::from(*addr) != end {
            return Err(ElfError::NotContiguous {
                end: end as u32,
                next: *addr,
            });
        }
        out.extend_from_slice(data);
        end += data.len() as u64;
    }
    Ok(Loadable {
        load_addr,
        bytes: out,
        segments: pieces.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF: `segments` as (paddr, bytes) loaded at vaddr = paddr, and one allocated
    /// section per segment covering it.
    fn elf(segments: &[(u32, &[u8])]) -> Vec<u8> {
        let ph = segments.len();
        let sh = segments.len();
        let ph_off = 52;
        let sh_off = ph_off + 32 * ph;
        let mut data_off = sh_off + 40 * sh;
        let mut out = vec![0u8; data_off];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 1;
        out[5] = 1;
        out[18..20].copy_from_slice(&EM_ARM.to_le_bytes());
        out[28..32].copy_from_slice(&(ph_off as u32).to_le_bytes());
        out[32..36].copy_from_slice(&(sh_off as u32).to_le_bytes());
        out[42..44].copy_from_slice(&32u16.to_le_bytes());
        out[44..46].copy_from_slice(&(ph as u16).to_le_bytes());
        out[46..48].copy_from_slice(&40u16.to_le_bytes());
        out[48..50].copy_from_slice(&(sh as u16).to_le_bytes());
        for (i, (addr, bytes)) in segments.iter().enumerate() {
            let p = ph_off + 32 * i;
            let words = [PT_LOAD, data_off as u32, *addr, *addr, bytes.len() as u32];
            for (j, w) in words.iter().enumerate() {
                out[p + 4 * j..p + 4 * j + 4].copy_from_slice(&w.to_le_bytes());
            }
            let s = sh_off + 40 * i;
            let fields = [
                (4, 1u32),
                (8, SHF_ALLOC),
                (12, *addr),
                (20, bytes.len() as u32),
            ];
            for (at, v) in fields {
                out[s + at..s + at + 4].copy_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(bytes);
            data_off += bytes.len();
        }
        out
    }

    #[test]
    fn contiguous_segments_make_one_body_at_the_first_address() {
        let file = elf(&[(0x40200, b"vectors+code"), (0x4020c, b"data")]);
        let image = loadable(&file).unwrap();
        assert_eq!(image.load_addr, 0x40200);
        assert_eq!(image.bytes, b"vectors+codedata");
        assert_eq!(image.segments, 2);
    }

    #[test]
    fn gaps_overlaps_and_other_files_are_refused() {
        let gap = elf(&[(0x40200, b"code"), (0x40300, b"data")]);
        assert_eq!(
            loadable(&gap),
            Err(ElfError::NotContiguous {
                end: 0x40204,
                next: 0x40300
            })
        );
        let overlap = elf(&[(0x40200, b"code"), (0x40202, b"data")]);
        assert!(matches!(
            loadable(&overlap),
            Err(ElfError::NotContiguous { .. })
        ));
        assert_eq!(loadable(&elf(&[])), Err(ElfError::Empty));
        let mut x86 = elf(&[(0, b"code")]);
        x86[18] = 3;
        assert!(matches!(loadable(&x86), Err(ElfError::Format(_))));
        let truncated = &elf(&[(0, b"code")])[..60];
        assert!(matches!(loadable(truncated), Err(ElfError::Format(_))));
        assert!(!is_elf(b"\x00\x00\x04\x20"));
    }

    #[test]
    fn header_bytes_mapped_into_a_segment_are_not_part_of_the_body() {
        // The segment starts 0x10 bytes below its only section (headers mapped there).
        let mut file = elf(&[(0x40200, b"0123456789abcdefBODY")]);
        let s = 52 + 32;
        file[s + 12..s + 16].copy_from_slice(&0x40210u32.to_le_bytes());
        file[s + 20..s + 24].copy_from_slice(&4u32.to_le_bytes());
        let image = loadable(&file).unwrap();
        assert_eq!((image.load_addr, image.bytes), (0x40210, b"BODY".to_vec()));
    }
}
