//! Power cuts at a chosen instruction: a QEMU TCG plugin (`plugin/instruction_cut.c`, built
//! with the host `cc` on first use) counts the guest's instructions from an arming store on
//! and freezes the CPU right before instruction N. The launcher then saves the code memory as
//! it is at that instant and kills QEMU ([`EmulatedBoard::wait_for_cut`]).
//!
//! Why a plugin: QMP has no "stop at instruction count" (a `stop` sent after a delay lands
//! wherever the host scheduler puts it), record/replay's `replay-break` needs a recorded run of
//! every input, and single-stepping the gdbstub millions of times is too slow (and a locked
//! board has no gdbstub). The plugin sees every executed instruction and every store; under
//! `-icount shift=0` nothing reaches the guest after the arming store, so the same N cuts the
//! same instruction in every run.
//!
//! What the emulated flash cannot show by itself: its "flash" is RAM that the firmware's driver
//! writes one 32-bit word (erase) or one byte (program) at a time, so a cut always falls
//! between two whole stores. A real NOR cell cut mid-operation reads back anything between the
//! old and the new value; [`tear`] models that on the saved image.
//!
//! [`EmulatedBoard::wait_for_cut`]: crate::EmulatedBoard::wait_for_cut

use std::{
    fs,
    ops::Range,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use crate::error::BoardError;
use crate::layout::FLASH_SIZE;

const PLUGIN_SOURCE: &str = include_str!("../plugin/instruction_cut.c");
/// File name of the plugin's report inside a board directory.
pub const CUT_REPORT_FILE: &str = "cut-report.txt";
const ERASE_PAGE: usize = flashgate_protocol::layout::FLASH_PAGE_SIZE as usize;

/// Where and when to cut the power of a board started with it (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstructionCut {
    /// Counting starts at the first guest store into this address range.
    pub arm: Range<u32>,
    /// Freeze right before this instruction of the count (1: the one after the arming store);
    /// `None` only measures (the count and the stores are reported when QEMU quits).
    pub at: Option<u64>,
    /// Report the count of every store into `arm` (to place cuts inside short writes).
    pub log_arm_stores: bool,
}

impl InstructionCut {
    /// Measures from the first store into `arm` on, cutting nothing.
    pub fn measure(arm: Range<u32>) -> Self {
        Self {
            arm,
            at: None,
            log_arm_stores: false,
        }
    }

    /// Cuts right before instruction `at` counted from the first store into `arm`.
    pub fn at(arm: Range<u32>, at: u64) -> Self {
        Self {
            arm,
            at: Some(at),
            log_arm_stores: false,
        }
    }

    pub(crate) fn qemu_args(&self, report: &Path) -> Result<Vec<String>, BoardError> {
        // QEMU splits -plugin options on ',': a comma in a path is written ",,".
        let escape = |path: &Path| path.to_string_lossy().replace(',', ",,");
        let plugin = plugin_path()?;
        let arg = format!(
            "file={},report={},arm_lo={},arm_hi={},flash_lo=0,flash_hi={FLASH_SIZE},cut={},log_arm={}",
            escape(&plugin),
            escape(report),
            self.arm.start,
            self.arm.end,
            self.at.unwrap_or(0),
            u8::from(self.log_arm_stores),
        );
        Ok(vec!["-plugin".into(), arg])
    }
}

/// One guest store into the code memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashStore {
    /// Its address.
    pub addr: u32,
    /// Its width in bytes (the firmware's driver: 4 when erasing, 1 when programming).
    pub size: u32,
    /// The instruction count right after it.
    pub count: u64,
}

/// A cut this close after a store (in instructions) falls inside the loop that made it: the
/// driver's erase and program loops take a handful of instructions per store.
pub const IN_FLIGHT: u64 = 32;

/// Where a cut landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The instruction not executed (its number in the count).
    pub count: u64,
    /// Its address.
    pub pc: u32,
    /// The last store into the code memory before it, if any since arming.
    pub last_store: Option<FlashStore>,
}

/// What the plugin reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// The address of the arming store (`None`: counting never started).
    pub armed_at: Option<u32>,
    /// With [`InstructionCut::log_arm_stores`]: (count, address) of every store into `arm`.
    pub arm_stores: Vec<(u64, u32)>,
    /// The cut, once it happened.
    pub cut: Option<Cut>,
    /// At a clean exit without a cut: instructions counted, and the count at the last store
    /// into the code memory.
    pub end: Option<(u64, u64)>,
}

impl CutReport {
    /// Reads a report file (a missing file is an empty report).
    pub fn read(path: &Path) -> Result<Self, BoardError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(BoardError::File {
                    path: path.into(),
                    source,
                })
            }
        };
        Self::parse(&text).ok_or_else(|| BoardError::NotABoard {
            path: path.into(),
            detail: "not an instruction-cut report".into(),
        })
    }

    fn parse(text: &str) -> Option<Self> {
        let mut report = Self::default();
        // Only whole lines count: the report may be read while the plugin writes it.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        for line in whole.lines() {
            let mut words = line.split(' ');
            let kind = words.next()?;
            let numbers: Vec<u64> = words.map(|w| w.parse().ok()).collect::<Option<_>>()?;
            let addr = |n: u64| u32::try_from(n).ok();
            match (kind, numbers.as_slice()) {
                ("armed", [a]) => report.armed_at = Some(addr(*a)?),
                ("arm", [count, a]) => report.arm_stores.push((*count, addr(*a)?)),
                ("cut", [count, pc, store, size, at]) => {
                    report.cut = Some(Cut {
                        count: *count,
                        pc: addr(*pc)?,
                        last_store: (*size != 0).then_some(FlashStore {
                            addr: addr(*store)?,
                            size: addr(*size)?,
                            count: *at,
                        }),
                    })
                }
                ("end", [count, last, _stores]) => report.end = Some((*count, *last)),
                _ => return None,
            }
        }
        Some(report)
    }
}

/// How [`tear`] changed the saved image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Torn {
    /// Nothing was in flight: no store into the code memory in the last [`IN_FLIGHT`]
    /// instructions.
    Nothing,
    /// An erase was under way: the rest of its page kept its old bits, some of them erased.
    Erase {
        /// The first byte not yet erased by the firmware.
        from: u32,
        /// End of the page.
        to: u32,
    },
    /// A program was under way: some of the last byte's cleared bits did not take.
    Program {
        /// The byte.
        addr: u32,
    },
}

/// Models a cell cut mid-operation on a saved image, from the cut's last store, with `seed`,
/// when the cut fell inside an erase or program loop (within [`IN_FLIGHT`] instructions of a
/// store): after an erase word (4-byte store) the rest of that 4 KiB page reads as old bits
/// with random ones set (a partly erased page); after a programmed byte, random bits of those
/// it cleared read 1 again (a partly programmed byte). Real NOR can also leave cells that read
/// differently at each read; one saved image cannot model that.
pub fn tear(image: &mut [u8], cut: &Cut, seed: u64) -> Torn {
    let Some(store) = cut
        .last_store
        .filter(|s| cut.count.saturating_sub(s.count) <= IN_FLIGHT)
    else {
        return Torn::Nothing;
    };
    let mut rng = SplitMix(seed);
    let at = store.addr as usize;
    if store.size == 4 {
        let from = at + 4;
        let to = (at / ERASE_PAGE + 1) * ERASE_PAGE;
        for byte in image.iter_mut().take(to).skip(from) {
            *byte |= rng.byte();
        }
        return Torn::Erase {
            from: from as u32,
            to: to as u32,
        };
    }
    if let Some(byte) = image.get_mut(at) {
        *byte |= rng.byte() & !*byte;
    }
    Torn::Program { addr: store.addr }
}

/// A small seeded generator (splitmix64): the tear must replay from the test's seed.
struct SplitMix(u64);

impl SplitMix {
    fn byte(&mut self) -> u8 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as u8
    }
}

/// The plugin, built once per process into the temporary directory (named after its source,
/// so an edited plugin is rebuilt; built under a unique name, then renamed, so parallel test
/// processes never load a half-written file).
fn plugin_path() -> Result<PathBuf, BoardError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build_plugin)
        .clone()
        .map_err(|detail| BoardError::Plugin { detail })
}

fn build_plugin() -> Result<PathBuf, String> {
    let digest = PLUGIN_SOURCE
        .bytes()
        .fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
        });
    let dir = std::env::temp_dir();
    let so = dir.join(format!("flashgate-instruction-cut-{digest:016x}.so"));
    if so.exists() {
        return Ok(so);
    }
    let pid = std::process::id();
    let src = dir.join(format!("flashgate-instruction-cut-{digest:016x}-{pid}.c"));
    let tmp = dir.join(format!("flashgate-instruction-cut-{digest:016x}-{pid}.so"));
    fs::write(&src, PLUGIN_SOURCE).map_err(|e| format!("{}: {e}", src.display()))?;
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .map_err(|e| format!("could not run cc (the host C compiler): {e}"))?;
    let _ = fs::remove_file(&src);
    if !built.status.success() {
        return Err(format!(
            "cc failed on the instruction-cut plugin: {}",
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    fs::rename(&tmp, &so).map_err(|e| format!("{}: {e}", so.display()))?;
    Ok(so)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse_and_half_lines_wait() {
        let text = "armed 139264\narm 0 139264\narm 7 139265\ncut 42 1234 139265 1 8\nend 9";
        let r = CutReport::parse(text).expect("parses");
        assert_eq!(r.armed_at, Some(139_264));
        assert_eq!(r.arm_stores, vec![(0, 139_264), (7, 139_265)]);
        let store = FlashStore {
            addr: 139_265,
            size: 1,
            count: 8,
        };
        assert_eq!(
            r.cut,
            Some(Cut {
                count: 42,
                pc: 1234,
                last_store: Some(store)
            })
        );
        assert_eq!(r.end, None, "an unfinished line is not read");
        assert!(CutReport::parse("what 1\n").is_none());
    }

    #[test]
    fn tearing_only_sets_bits_an_interrupted_operation_could_leave() {
        let old = vec![0x5Au8; 2 * ERASE_PAGE];
        let mut image = old.clone();
        let store = |addr, size| FlashStore {
            addr,
            size,
            count: 100,
        };
        let erase = Cut {
            count: 101,
            pc: 0,
            last_store: Some(store(8, 4)),
        };
        assert_eq!(
            tear(&mut image, &erase, 1),
            Torn::Erase {
                from: 12,
                to: ERASE_PAGE as u32
            }
        );
        assert_eq!(image[..12], old[..12]);
        assert!(image[12..ERASE_PAGE].iter().all(|b| b & 0x5A == 0x5A));
        assert_ne!(image[12..ERASE_PAGE], old[12..ERASE_PAGE]);
        assert_eq!(
            image[ERASE_PAGE..],
            old[ERASE_PAGE..],
            "the next page is untouched"
        );

        let mut image = vec![0xFFu8; 16];
        image[3] = 0x00;
        let program = Cut {
            count: 101,
            pc: 0,
            last_store: Some(store(3, 1)),
        };
        let long_after = Cut {
            count: 100 + IN_FLIGHT + 1,
            ..program
        };
        let mut untouched = image.clone();
        assert_eq!(tear(&mut untouched, &long_after, 1), Torn::Nothing);
        assert_eq!(untouched, image, "nothing in flight, nothing torn");
        let torn: Vec<u8> = (0..64)
            .map(|seed| {
                let mut copy = image.clone();
                tear(&mut copy, &program, seed);
                copy[3]
            })
            .collect();
        assert!(torn.iter().any(|b| *b != 0), "some bits did not take");
        let mut again = image.clone();
        tear(&mut again, &program, 5);
        assert_eq!(again[3], torn[5], "the same seed tears the same way");
    }
}
