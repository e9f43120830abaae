//! The RAM mailbox the station and the flash loader talk through, at [`layout::MAILBOX_ADDR`].
//!
//! QEMU's gdbstub (and many GDB servers) are all-stop: memory can only be read while the
//! target is halted. So the exchange is turn-based: the loader writes its output, sets
//! `state` and calls `host_yield`, on which the station has a breakpoint; the station reads
//! `out`, writes the next request into `in`, and resumes the target.
//!
//! ```text
//! +0  magic u32 "FGMB"      +4  state u32      +8  error u32 (ErrorCode when state = ERROR)
//! +12 out_len u32           +16 in_len u32     +20 handshake_ticks u32 (SysTick, 40 instr each
//! +24 flash_ticks u32       +28 busy_ticks u32     under -icount shift=0; 0 if not measured)
//!     (cumulative SysTick ticks spent in flash erase/program, and handling frames)
//! +32 out [OUT_MAX]         +32+OUT_MAX in [IN_MAX]
//! ```
//!
//! [`layout::MAILBOX_ADDR`]: crate::layout::MAILBOX_ADDR

use crate::codec::{Codec, Reader, Writer};
use crate::ErrorCode;

/// "FGMB", written by the loader once it runs.
pub const MAGIC: u32 = 0x424D_4746;
/// Size of the mailbox header.
pub const HEADER_LEN: usize = 32;
/// Room for target-to-host output.
pub const OUT_MAX: usize = 512;
/// Room for one host-to-target frame.
pub const IN_MAX: usize = 8192;
/// Offset of `out` from the mailbox base.
pub const OUT_OFFSET: usize = HEADER_LEN;
/// Offset of `in` from the mailbox base.
pub const IN_OFFSET: usize = HEADER_LEN + OUT_MAX;
/// Total bytes the mailbox occupies.
pub const TOTAL_LEN: usize = IN_OFFSET + IN_MAX;

// The parameter block fits below the mailbox, and the mailbox ends inside the loader's RAM.
const _: () = {
    use crate::layout::{LOADER_BASE, LOADER_FOOTPRINT, MAILBOX_ADDR, PARAMS_ADDR};
    assert!(PARAMS_ADDR as usize + crate::provisioning::PARAMS_LEN <= MAILBOX_ADDR as usize);
    assert!(MAILBOX_ADDR as usize + TOTAL_LEN <= (LOADER_BASE + LOADER_FOOTPRINT) as usize);
};

/// Field offsets within the header.
pub mod offset {
    /// Magic word.
    pub const MAGIC: usize = 0;
    /// [`super::State`] as u32.
    pub const STATE: usize = 4;
    /// Error code.
    pub const ERROR: usize = 8;
    /// Bytes valid in `out`.
    pub const OUT_LEN: usize = 12;
    /// Bytes valid in `in`.
    pub const IN_LEN: usize = 16;
    /// SysTick ticks the handshake took.
    pub const HANDSHAKE_TICKS: usize = 20;
    /// Cumulative SysTick ticks in flash erase/program.
    pub const FLASH_TICKS: usize = 24;
    /// Cumulative SysTick ticks spent handling frames.
    pub const BUSY_TICKS: usize = 28;
}

/// What the loader last put in the mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum State {
    /// Not yet written (or the loader has not run).
    Booting = 0,
    /// `out` holds the loader hello.
    Hello = 1,
    /// `out` holds a sealed reply to the last request.
    Reply = 2,
    /// The loader refused the last request; `error` says why. The session is over.
    Error = 3,
}

/// A decoded mailbox header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Loader's state.
    pub state: State,
    /// Set when `state` is [`State::Error`].
    pub error: Option<ErrorCode>,
    /// Raw error value (for codes this build does not know).
    pub error_raw: u32,
    /// Bytes of output.
    pub out_len: usize,
    /// Bytes of the last request, as the station wrote them (the loader clamps to
    /// [`IN_MAX`]).
    pub in_len: usize,
    /// SysTick ticks spent on the handshake.
    pub handshake_ticks: u32,
    /// Cumulative SysTick ticks in flash erase/program.
    pub flash_ticks: u32,
    /// Cumulative SysTick ticks handling frames.
    pub busy_ticks: u32,
}

impl Header {
    /// Decodes the header at the start of a mailbox dump.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        Self::read(&mut Reader::new(bytes))
    }
}

impl State {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Booting,
            1 => Self::Hello,
            2 => Self::Reply,
            3 => Self::Error,
            _ => return None,
        })
    }
}

/// The 32-byte header (the loader writes the same fields one by one, see `device-fw/loader`).
impl Codec<'_> for Header {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        if self.out_len > OUT_MAX {
            return Err(ErrorCode::BadLength);
        }
        let in_len = u32::try_from(self.in_len).map_err(|_| ErrorCode::BadLength)?;
        w.u32(MAGIC)?;
        w.u32(self.state as u32)?;
        w.u32(self.error_raw)?;
        w.u32(self.out_len as u32)?;
        w.u32(in_len)?;
        w.u32(self.handshake_ticks)?;
        w.u32(self.flash_ticks)?;
        w.u32(self.busy_ticks)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let mut r = Reader::new(r.take(HEADER_LEN)?);
        if r.u32()? != MAGIC {
            return Err(ErrorCode::BadMagic);
        }
        let state = State::from_u32(r.u32()?).ok_or(ErrorCode::BadMagic)?;
        let error_raw = r.u32()?;
        let out_len = r.u32()? as usize;
        let in_len = r.u32()? as usize;
        let header = Self {
            state,
            error: ErrorCode::from_u32(error_raw),
            error_raw,
            out_len,
            in_len,
            handshake_ticks: r.u32()?,
            flash_ticks: r.u32()?,
            busy_ticks: r.u32()?,
        };
        if out_len > OUT_MAX {
            return Err(ErrorCode::BadLength);
        }
        Ok(header)
    }
}
