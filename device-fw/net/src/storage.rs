//! `'static` buffers handed out once (socket storage), without `static mut`.
#![allow(unsafe_code, reason = "a Sync cell that hands out one `&'static mut`")]

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A value in a `static` that [`TakeOnce::take`] hands out as `&'static mut` exactly once.
///
/// Socket buffers live in `.bss`/`.data` this way, so their size shows in the linked ELF
/// (`arm-none-eabi-nm --size-sort`) and not on the stack.
pub struct TakeOnce<T> {
    taken: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the only access to `value` is through the one `&mut` that `take` returns, after
// an atomic swap that no second caller can win; `T: Send` lets that reference move between
// contexts.
unsafe impl<T: Send> Sync for TakeOnce<T> {}

impl<T> TakeOnce<T> {
    /// Storage holding `value`.
    pub const fn new(value: T) -> Self {
        Self {
            taken: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, the first time; `None` afterwards.
    // `&self` to `&mut T` is what this type is for: the flag makes the result unique.
    #[allow(clippy::mut_from_ref)]
    pub fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the swap above returned `false` to this caller only, so this is the one and
        // only reference ever made to `value`, and `self` lives for `'static`.
        Some(unsafe { &mut *self.value.get() })
    }
}
