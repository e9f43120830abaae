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
    /// SysTick ticks of the loader's handshake (entropy, key generation, key agreement).
    pub handshake_ticks: u32,
    /// Of `target_busy_ticks`: the bootloader's `ImageData` frames only (opening, hashing,
    /// programming, the acknowledgement), so a per-byte cost leaves the one-off work out.
    pub image_busy_ticks: u64,
    /// Of `image_busy_ticks`: flash programming.
    pub image_flash_ticks: u64,
    /// Bootloader body bytes those frames carried.
    pub image_bytes: u64,
}

impl PhaseTimings {
    /// Sum of the three wall-clock parts.
    pub fn total(&self) -> Duration {
        self.link + self.target + self.station
    }

    /// Counts the loader work since `before` (the timings before one `ImageData` exchange)
    /// as image-frame work for `bytes` body bytes.
    pub(crate) fn count_image_frame(&mut self, before: &PhaseTimings, bytes: usize) {
        self.image_busy_ticks += self
            .target_busy_ticks
            .saturating_sub(before.target_busy_ticks);
        self.image_flash_ticks += self
            .target_flash_ticks
            .saturating_sub(before.target_flash_ticks);
        self.image_bytes += bytes as u64;
    }
}
