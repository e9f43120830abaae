//! Entropy from the host's `/dev/urandom` through ARM semihosting.
//!
//! No mps2/mps3 board emulates an RNG. With `-semihosting-config enable=on,target=native`
//! QEMU serves `bkpt 0xab` calls itself: SYS_OPEN on "/dev/urandom", SYS_READ into our buffer.
//! Without that option the `bkpt` is a HardFault. A real MCU reads its TRNG here instead.
#![allow(unsafe_code, reason = "semihosting calls (bkpt 0xab) that QEMU serves")]

use crate::hal::{EntropyError, EntropySource};

const SYS_OPEN: u32 = 0x01;
const SYS_CLOSE: u32 = 0x02;
const SYS_READ: u32 = 0x06;
/// SYS_OPEN mode 0 is fopen's "r".
const MODE_READ: u32 = 0;
const URANDOM: &[u8] = b"/dev/urandom\0";

/// Host entropy over semihosting (see the module docs).
pub struct SemihostingEntropy {
    pub(super) _private: (),
}

/// One semihosting call: operation in r0, pointer to its parameter block in r1, result in r0.
///
/// # Safety
/// `args` must point to the parameter block `op` expects, with every pointer in it valid for
/// the access the host makes (it reads and writes target memory directly).
unsafe fn semihosting_call(op: u32, args: *const u32) -> i32 {
    let result: i32;
    // SAFETY: forwarded to the caller; `bkpt 0xab` is the semihosting trap on M-profile.
    unsafe {
        core::arch::asm!(
            "bkpt 0xab",
            inout("r0") op => result,
            in("r1") args,
            options(nostack, preserves_flags),
        );
    }
    result
}

impl EntropySource for SemihostingEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        let open = [
            URANDOM.as_ptr() as u32,
            MODE_READ,
            (URANDOM.len() - 1) as u32,
        ];
        // SAFETY: SYS_OPEN reads {name, mode, name length}; `URANDOM` is NUL-terminated.
        let handle = unsafe { semihosting_call(SYS_OPEN, open.as_ptr()) };
        if handle < 0 {
            return Err(EntropyError::Unavailable);
        }
        let mut result = Ok(());
        let mut filled = 0;
        while filled < buf.len() {
            let rest = &mut buf[filled..];
            let read = [handle as u32, rest.as_mut_ptr() as u32, rest.len() as u32];
            // SAFETY: SYS_READ writes at most `rest.len()` bytes into `rest`; returns the
            // number of bytes *not* read.
            let not_read = unsafe { semihosting_call(SYS_READ, read.as_ptr()) };
            if not_read < 0 || not_read as usize > rest.len() {
                result = Err(EntropyError::Unavailable);
                break;
            }
            let got = rest.len() - not_read as usize;
            if got == 0 {
                result = Err(EntropyError::ShortRead);
                break;
            }
            filled += got;
        }
        let close = [handle as u32];
        // SAFETY: SYS_CLOSE reads {handle}.
        unsafe { semihosting_call(SYS_CLOSE, close.as_ptr()) };
        if result.is_err() {
            buf.fill(0);
        }
        result
    }
}
