//! The HAL boundary: what flashgate's programs need from a board, as traits.
//!
//! Flash is [`flashgate_protocol::flash::NorFlash`] (the protocol's state machines program
//! through it); the rest is here. Each board module implements these for its peripherals.

use flashgate_protocol::flash::FlashError;
use flashgate_protocol::Serial;

/// Why the entropy source could not deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntropyError {
    /// The source is not available (on the emulated board: QEMU was started without
    /// `-semihosting-config enable=on`, or the host could not open `/dev/urandom`).
    Unavailable,
    /// The source delivered fewer bytes than asked for.
    ShortRead,
}

/// A source of cryptographic-quality random bytes (a TRNG on a real MCU).
pub trait EntropySource {
    /// Fills all of `buf` or fails; never returns partially filled output as success.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError>;
}

/// The board's factory-programmed unique ID, which flashgate uses as the device serial.
pub trait UniqueId {
    /// The 16-byte unique ID.
    fn unique_id(&self) -> Serial;
}

/// A byte-oriented serial port (the update link).
pub trait SerialPort {
    /// Writes all of `bytes`, blocking while the transmitter is busy.
    fn write_all(&mut self, bytes: &[u8]);
    /// Returns a received byte if one is waiting, without blocking.
    fn try_read(&mut self) -> Option<u8>;
    /// Waits for and returns the next received byte.
    fn read(&mut self) -> u8 {
        loop {
            if let Some(byte) = self.try_read() {
                return byte;
            }
            core::hint::spin_loop();
        }
    }
}

/// Closing the debug port for good once a device is provisioned.
pub trait DebugPortLock {
    /// Locks the debug port (RDP/APPROTECT on a real MCU).
    fn lock_debug_port(&mut self) -> Result<(), FlashError>;
    /// Whether the lock is in place.
    fn debug_port_locked(&mut self) -> bool;
}
