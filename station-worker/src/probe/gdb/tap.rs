//! Recording the raw traffic of a debug link (to check, for instance, that no secret crosses it).

use std::sync::{Arc, Mutex, MutexGuard};

/// Receives every byte sent to and received from the GDB server, in order.
pub trait LinkTap: Send + Sync {
    /// Bytes written to the socket.
    fn sent(&self, bytes: &[u8]);
    /// Bytes read from the socket.
    fn received(&self, bytes: &[u8]);
}

/// Direction of a recorded chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Station → probe.
    Sent,
    /// Probe → station.
    Received,
}

/// Recorded chunks with their direction, in order.
type Recording = Vec<(Direction, Vec<u8>)>;

/// A [`LinkTap`] that keeps everything in memory. Clones share the same recording.
#[derive(Debug, Clone, Default)]
pub struct TrafficRecorder {
    chunks: Arc<Mutex<Recording>>,
}

impl TrafficRecorder {
    /// An empty recording.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Recording> {
        self.chunks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The recorded chunks, in order.
    pub fn chunks(&self) -> Vec<(Direction, Vec<u8>)> {
        self.lock().clone()
    }

    /// All bytes of one direction, concatenated.
    pub fn bytes(&self, direction: Direction) -> Vec<u8> {
        self.lock()
            .iter()
            .filter(|(d, _)| *d == direction)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    /// Total bytes recorded (both directions).
    pub fn len(&self) -> usize {
        self.lock().iter().map(|(_, b)| b.len()).sum()
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if `needle` crossed the link in either direction, raw or hex-encoded (either case),
    /// which are the forms memory contents take in GDB packets.
    pub fn carries(&self, needle: &[u8]) -> bool {
        if needle.is_empty() {
            return true;
        }
        let lower = hex_lower(needle);
        let upper = lower.to_ascii_uppercase();
        [Direction::Sent, Direction::Received].iter().any(|&d| {
            let hay = self.bytes(d);
            [needle, lower.as_slice(), upper.as_slice()]
                .iter()
                .any(|n| hay.windows(n.len()).any(|w| w == *n))
        })
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

fn hex_lower(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    super::packet::hex_into(bytes, &mut out);
    out
}

impl LinkTap for TrafficRecorder {
    fn sent(&self, bytes: &[u8]) {
        self.lock().push((Direction::Sent, bytes.to_vec()));
    }

    fn received(&self, bytes: &[u8]) {
        self.lock().push((Direction::Received, bytes.to_vec()));
    }
}
