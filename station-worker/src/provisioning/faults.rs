/// Deliberate corruption of the debug-link traffic, for the negative end-to-end tests and for a
/// factory's own acceptance checks that a target refuses what it must. Never set in production.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkFault {
    /// Flip one bit of the ciphertext of image frame `chunk` (0-based).
    FlipCiphertextBit {
        /// Which image chunk.
        chunk: usize,
    },
    /// Send image frame `chunk` twice.
    ReplayChunk {
        /// Which image chunk.
        chunk: usize,
    },
    /// Send image frame `chunk + 1` before `chunk`.
    SwapChunks {
        /// Which image chunk.
        chunk: usize,
    },
    /// Stop sending the body `bytes_missing` bytes early, then commit.
    TruncateImage {
        /// How many bytes to hold back (rounded up to whole chunks).
        bytes_missing: usize,
    },
    /// Write a parameter block naming one X25519 key and then talk with another.
    ImpostorStationKey,
}
