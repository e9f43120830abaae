use std::time::Duration;

/// Where the time to provision one target went, as seen from the station.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseTimings {
    /// Writing and reading memory over the debug link (loader, frames, mailbox).
    pub link: Duration,
    /// Waiting for the target to run up to its next `host_yield` (its crypto and flash work).
    pub target: Duration,
    /// The station's own crypto and bookkeeping.
    pub station: Duration,
    /// Of `target`: SysTick ticks the loader spent in flash erase/program (40 ns each).
    pub target_flash_ticks: u64,
    /// Of `target`: SysTick ticks the loader spent handling frames (crypto + flash).
    pub target_busy_ticks: u64,
    /// SysTick ticks of the loader's handshake (entropy, key agreement, self-measurement).
    pub handshake_ticks: u32,
}

impl PhaseTimings {
    /// Sum of the three wall-clock parts.
    pub fn total(&self) -> Duration {
        self.link + self.target + self.station
    }
}
