//! Volatile access to the chip's peripheral registers, for the drivers of this port.
#![allow(unsafe_code, reason = "memory-mapped peripheral registers")]

/// Reads the 32-bit register at `addr`.
pub(super) fn read(addr: u32) -> u32 {
    // SAFETY: callers pass the address of a register of this chip (FICR, UICR, NVMC, RNG,
    // UART0) or of flash; each is always mapped, word aligned and readable.
    unsafe { core::ptr::read_volatile(addr as usize as *const u32) }
}

/// Writes the 32-bit register (or, with the NVMC in write mode, the flash word) at `addr`.
pub(super) fn write(addr: u32, value: u32) {
    // SAFETY: as for `read`; each register is owned by the one driver that writes it.
    unsafe { core::ptr::write_volatile(addr as usize as *mut u32, value) }
}

/// Waits until the event register at `addr` is set, then clears it; gives up after `spins`.
pub(super) fn take_event(addr: u32, spins: u32) -> bool {
    for _ in 0..spins {
        if read(addr) != 0 {
            write(addr, 0);
            return true;
        }
        core::hint::spin_loop();
    }
    false
}
