//! The receiver's anti-replay state for one device and epoch: the highest counter accepted and a
//! bitmap of the [`WINDOW`] counters below it, as in IPsec (RFC 4303 §3.4.3).

use crate::ErrorCode;

/// How far behind the highest accepted counter a record may arrive and still be accepted.
pub const WINDOW: u32 = 64;

/// Highest counter seen plus a 64-bit map of the ones below it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest counter accepted, if any.
    pub highest: Option<u32>,
    /// Bit `i` set: counter `highest - i` was accepted (bit 0 is `highest` itself).
    pub bitmap: u64,
}

impl ReplayWindow {
    /// Whether `counter` would be accepted, without changing anything (check before the tag is
    /// verified is cheap; [`ReplayWindow::accept`] only after).
    pub fn check(&self, counter: u32) -> Result<(), ErrorCode> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if counter > highest {
            return Ok(());
        }
        let behind = highest - counter;
        if behind >= WINDOW {
            return Err(ErrorCode::DataTooOld);
        }
        if self.bitmap & (1u64 << behind) != 0 {
            return Err(ErrorCode::DataReplay);
        }
        Ok(())
    }

    /// Records `counter` as accepted (after its tag verified).
    pub fn accept(&mut self, counter: u32) -> Result<(), ErrorCode> {
        self.check(counter)?;
        match self.highest {
            Some(highest) if counter <= highest => {
                self.bitmap |= 1u64 << (highest - counter);
            }
            Some(highest) => {
                let shift = counter - highest;
                self.bitmap = if shift >= WINDOW {
                    0
                } else {
                    self.bitmap << shift
                } | 1;
                self.highest = Some(counter);
            }
            None => {
                self.highest = Some(counter);
                self.bitmap = 1;
            }
        }
        Ok(())
    }
}
