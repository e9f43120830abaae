//! The loader's side of the RAM mailbox (format: `flashgate_protocol::mailbox`).
//!
//! The mailbox is plain RAM at `layout::MAILBOX_ADDR`, outside every Rust allocation; the
//! station reads and writes it over the debug port only while the core is halted in
//! `host_yield`. Header words are written volatile; `out`/`in` are lent out as slices for the
//! length of one `LoaderSession` call, between two `host_yield`s, when the station cannot
//! touch them.
#![allow(
    unsafe_code,
    reason = "the mailbox: RAM the station reads and writes over SWD"
)]

use flashgate_protocol::layout::MAILBOX_ADDR;
use flashgate_protocol::mailbox::{offset, State, IN_MAX, IN_OFFSET, MAGIC, OUT_MAX, OUT_OFFSET};
use flashgate_protocol::ErrorCode;

/// The mailbox at `MAILBOX_ADDR` (one per loader run).
pub struct Mailbox {
    _private: (),
}

impl Mailbox {
    /// Takes the mailbox and marks it as not yet ready (state `Booting`, lengths 0).
    ///
    /// # Safety
    /// Call once: the returned value is the only Rust access path to the mailbox memory.
    pub unsafe fn take() -> Self {
        let mut mailbox = Self { _private: () };
        for field in [
            offset::STATE,
            offset::ERROR,
            offset::OUT_LEN,
            offset::HANDSHAKE_TICKS,
            offset::FLASH_TICKS,
            offset::BUSY_TICKS,
        ] {
            mailbox.write_word(field, 0);
        }
        mailbox.write_word(offset::MAGIC, MAGIC);
        mailbox
    }

    /// The mailbox without resetting it, for the panic handler.
    ///
    /// # Safety
    /// No other `Mailbox` may be used afterwards.
    pub unsafe fn steal() -> Self {
        Self { _private: () }
    }

    fn word(field: usize) -> *mut u32 {
        (MAILBOX_ADDR as usize + field) as *mut u32
    }

    fn write_word(&mut self, field: usize, value: u32) {
        // SAFETY: a header word inside the mailbox, which only this value accesses from Rust.
        unsafe { core::ptr::write_volatile(Self::word(field), value) }
    }

    fn read_word(&self, field: usize) -> u32 {
        // SAFETY: as for `write_word`.
        unsafe { core::ptr::read_volatile(Self::word(field)) }
    }

    /// The output area and the request the station left in `in` (`in_len` bytes, clamped to
    /// the area so a bad length becomes a short frame that the session rejects).
    pub fn buffers(&mut self) -> (&mut [u8], &mut [u8]) {
        let in_len = (self.read_word(offset::IN_LEN) as usize).min(IN_MAX);
        let base = MAILBOX_ADDR as usize;
        // SAFETY: `out` and `in` are disjoint areas of the mailbox, outside every Rust
        // allocation; the borrow of `self` keeps them unique until the next `host_yield`.
        unsafe {
            (
                core::slice::from_raw_parts_mut((base + OUT_OFFSET) as *mut u8, OUT_MAX),
                core::slice::from_raw_parts_mut((base + IN_OFFSET) as *mut u8, in_len),
            )
        }
    }

    /// Publishes `len` bytes of `out` in `state`; the state word is written last.
    pub fn publish(&mut self, state: State, len: usize) {
        self.write_word(offset::ERROR, 0);
        self.write_word(offset::OUT_LEN, len as u32);
        self.write_word(offset::STATE, state as u32);
    }

    /// Reports a refusal; the session is over.
    pub fn fail(&mut self, code: ErrorCode) {
        self.write_word(offset::OUT_LEN, 0);
        self.write_word(offset::ERROR, code as u32);
        self.write_word(offset::STATE, State::Error as u32);
    }

    /// Records how many SysTick ticks the handshake took.
    pub fn set_handshake_ticks(&mut self, ticks: u32) {
        self.write_word(offset::HANDSHAKE_TICKS, ticks);
    }

    /// Records the cumulative SysTick ticks spent in flash and handling frames, so the station
    /// can split target time into flash programming and the rest (mostly crypto).
    pub fn set_work_ticks(&mut self, flash: u32, busy: u32) {
        self.write_word(offset::FLASH_TICKS, flash);
        self.write_word(offset::BUSY_TICKS, busy);
    }
}
