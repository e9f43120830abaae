//! Time for smoltcp from SysTick: the 24-bit down-counter extended to 64 bits.

use flashgate_board::cpu::SysTickCounter;
use smoltcp::time::Instant;

/// A monotonic clock on SysTick. Each reading adds the ticks since the previous one, so it
/// must be read at least once per SysTick period (2^24 ticks: 0.67 s at 25 MHz); a network
/// poll loop does so many times over.
pub struct Clock {
    systick: SysTickCounter,
    ticks_per_us: u64,
    last: u32,
    ticks: u64,
}

impl Clock {
    /// Starts counting from 0 on `systick`, whose clock runs at `core_clock_hz` (at least
    /// 1 MHz).
    pub fn new(systick: SysTickCounter, core_clock_hz: u32) -> Self {
        let last = systick.now();
        Self {
            systick,
            ticks_per_us: u64::from(core_clock_hz / 1_000_000).max(1),
            last,
            ticks: 0,
        }
    }

    /// SysTick ticks since [`Clock::new`].
    pub fn ticks(&mut self) -> u64 {
        let now = self.systick.now();
        self.ticks += u64::from(self.last.wrapping_sub(now) & SysTickCounter::MASK);
        self.last = now;
        self.ticks
    }

    /// The time since [`Clock::new`], for smoltcp.
    pub fn now(&mut self) -> Instant {
        let ticks = self.ticks();
        Instant::from_micros((ticks / self.ticks_per_us) as i64)
    }
}
