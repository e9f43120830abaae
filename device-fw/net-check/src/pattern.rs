//! The byte stream both ends of the TCP check generate from a seed.

/// xorshift32 words, little-endian: cheap enough (a few instructions a byte) not to hide the
/// stack's cost, and any lost, repeated or reordered byte shows.
pub struct Pattern {
    state: u32,
    word: [u8; 4],
    used: usize,
}

impl Pattern {
    /// The stream for `seed` (an even seed is made odd: xorshift's state must not be 0).
    pub fn new(seed: u32) -> Self {
        Self {
            state: seed | 1,
            word: [0; 4],
            used: 4,
        }
    }

    /// The next byte.
    pub fn next_byte(&mut self) -> u8 {
        if self.used == 4 {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 17;
            self.state ^= self.state << 5;
            self.word = self.state.to_le_bytes();
            self.used = 0;
        }
        self.used += 1;
        self.word[self.used - 1]
    }
}
