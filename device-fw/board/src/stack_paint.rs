//! Stack high-water marks: paint the free stack once, find the deepest overwritten word later;
//! and wiping the free stack, where finished computations leave copies of their secrets.
#![allow(unsafe_code, reason = "reads SP and paints the free stack below it")]

const PAINT: u32 = 0x5EA1_57AC;
/// Words just below the caller's stack pointer left unpainted: `paint`'s own frame.
const MARGIN: u32 = 128;

/// A painted stack region, `[lowest, highest)`, below the stack pointer of the caller of
/// [`StackPaint::below_sp`].
pub struct StackPaint {
    lowest: u32,
    highest: u32,
}

/// The current stack pointer.
#[inline(always)]
pub fn stack_pointer() -> u32 {
    let sp: u32;
    // SAFETY: copies SP into a register; touches no memory.
    unsafe { core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack)) };
    sp
}

impl StackPaint {
    /// Paints `depth` bytes below the current stack pointer (less a small margin). Call it
    /// with interrupts off, before the code to measure, from the frame that will run it.
    #[inline(never)]
    pub fn below_sp(depth: u32) -> Self {
        let highest = (stack_pointer() - MARGIN) & !3;
        let lowest = highest - (depth & !3);
        let mut word = lowest;
        while word < highest {
            // SAFETY: `[lowest, highest)` is below every live frame (the margin covers this
            // function's own), in the SRAM the caller's stack runs down into, and nothing
            // else (no interrupt) writes there; volatile so the stores stay.
            unsafe { core::ptr::write_volatile(word as *mut u32, PAINT) };
            word += 4;
        }
        Self { lowest, highest }
    }

    /// Bytes from `stack_top` (the program's initial SP) down to the deepest word written
    /// since [`StackPaint::below_sp`]. Equal to the painted depth plus the frames above it if
    /// the paint ran out: paint deeper then.
    pub fn high_water(&self, stack_top: u32) -> u32 {
        let mut word = self.lowest;
        while word < self.highest && Self::painted(word) {
            word += 4;
        }
        stack_top - word
    }

    fn painted(word: u32) -> bool {
        // SAFETY: a read of the painted region, which stays mapped SRAM.
        unsafe { core::ptr::read_volatile(word as *const u32) == PAINT }
    }

    /// Whether the deepest painted word was overwritten (the measurement is then a lower
    /// bound).
    pub fn exhausted(&self) -> bool {
        !Self::painted(self.lowest)
    }
}

/// Zeroes the free stack: from the end of `.bss` up to just below the caller's stack pointer
/// (less [`MARGIN`], this function's own frame). Frames that returned leave copies of what they
/// computed there (key schedules, shared secrets, decrypted bytes) that no `Zeroize` reaches;
/// call this where a program's secrets must be gone (the loader at the end of a session), from
/// the outermost frame that still runs.
#[inline(never)]
pub fn wipe_free_stack() {
    let highest = (stack_pointer() - MARGIN) & !3;
    let mut word = (crate::rt::bss_end() + 3) & !3;
    while word < highest {
        // SAFETY: `[end of .bss, highest)` is the free stack below every live frame (the
        // margin covers this function's own), in the program's RAM; volatile so the stores
        // are not elided as dead.
        unsafe { core::ptr::write_volatile(word as *mut u32, 0) };
        word += 4;
    }
}
