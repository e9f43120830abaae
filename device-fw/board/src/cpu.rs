//! Cortex-M core services that are the same on every board: reset, SysTick as an instruction
//! counter, and handing the core to another image.
#![allow(
    unsafe_code,
    reason = "SysTick/SCB registers and the jump into another image"
)]

use cortex_m::peripheral::{SCB, SYST};

/// Requests a system reset (SCB AIRCR.SYSRESETREQ) and waits for it.
pub fn system_reset() -> ! {
    SCB::sys_reset()
}

/// SysTick as a free-running 24-bit down-counter on the core clock.
///
/// Under QEMU's `-icount shift=0` the core clock (25 MHz on mps2) is derived from the
/// instruction count, so one tick is 40 instructions and a measurement is identical on every
/// run. Intervals longer than 2^24 ticks (about 0.67 s, 671 M instructions) wrap.
pub struct SysTickCounter {
    syst: *const cortex_m::peripheral::syst::RegisterBlock,
}

impl SysTickCounter {
    /// Counter mask: SysTick is 24 bits wide.
    pub const MASK: u32 = 0x00FF_FFFF;
    /// Instructions per tick under `-icount shift=0` on mps2 (1 GHz virtual / 25 MHz).
    pub const INSTRUCTIONS_PER_TICK: u32 = 40;

    /// Starts SysTick free-running from 0xFF_FFFF on the processor clock, no interrupt.
    pub fn start() -> Self {
        let syst = SYST::PTR;
        // SAFETY: SysTick is a core peripheral that only this counter programs; the writes
        // below configure it without enabling its interrupt.
        unsafe {
            (*syst).csr.write(0);
            (*syst).rvr.write(Self::MASK);
            (*syst).cvr.write(0);
            // CLKSOURCE = processor clock, ENABLE; TICKINT stays 0.
            (*syst).csr.write(0b101);
        }
        Self { syst }
    }

    /// The current counter value (counts down).
    pub fn now(&self) -> u32 {
        // SAFETY: a read of the current-value register has no side effect.
        unsafe { (*self.syst).cvr.read() & Self::MASK }
    }

    /// Ticks elapsed since `earlier` (a value of [`now`](Self::now)), modulo 2^24.
    pub fn ticks_since(&self, earlier: u32) -> u32 {
        earlier.wrapping_sub(self.now()) & Self::MASK
    }
}

/// Hands the core to the image whose vector table is at `vector_table`: sets VTOR, loads MSP
/// from word 0 and branches to the reset vector in word 1.
///
/// # Safety
/// `vector_table` must be the address of a valid, suitably aligned (VTOR) vector table of an
/// image that is completely in memory. Nothing of the caller survives: its stack is abandoned.
pub unsafe fn jump_to_image(vector_table: u32) -> ! {
    cortex_m::interrupt::disable();
    // SAFETY: SysTick and VTOR are core registers; the new image starts from a quiet core
    // (SysTick off) with its own vector table, as after a reset.
    unsafe {
        (*SYST::PTR).csr.write(0);
        (*SCB::PTR).vtor.write(vector_table);
    }
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
    // SAFETY: the caller guarantees a valid vector table; `bootload` reads MSP and the reset
    // vector from it.
    unsafe { cortex_m::asm::bootload(vector_table as *const u32) }
}

/// Points VTOR at `vector_table` (e.g. [`crate::rt::vector_table`] in the RAM loader).
///
/// # Safety
/// `vector_table` must hold valid handlers for every exception that can occur from now on.
pub unsafe fn set_vector_table(vector_table: u32) {
    // SAFETY: forwarded to the caller.
    unsafe { (*SCB::PTR).vtor.write(vector_table) };
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
}

/// Asks the bootloader to serve updates and jumps to it (not a reset: on the emulated board a
/// reset reloads flash from the last power-off). Used by the OS on `enter update`.
pub fn enter_bootloader_for_update() -> ! {
    let flag = flashgate_protocol::layout::UPDATE_REQUEST_ADDR as *mut u32;
    // SAFETY: a RAM word reserved for this flag (`layout::UPDATE_REQUEST_ADDR`), allocated by
    // no program.
    unsafe { flag.write_volatile(flashgate_protocol::layout::UPDATE_REQUEST_MAGIC) };
    // SAFETY: the bootloader's vector table is at the reset address.
    unsafe { jump_to_image(flashgate_protocol::layout::BOOTLOADER_BASE) }
}

/// Reads and clears the flag [`enter_bootloader_for_update`] set (bootloader, at start).
pub fn take_update_request() -> bool {
    let flag = flashgate_protocol::layout::UPDATE_REQUEST_ADDR as *mut u32;
    // SAFETY: as above; that word is always readable and writable.
    unsafe {
        let set = flag.read_volatile() == flashgate_protocol::layout::UPDATE_REQUEST_MAGIC;
        flag.write_volatile(0);
        set
    }
}
