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

/// An Ethernet MAC address (6 bytes, transmission order).
pub type MacAddress = [u8; 6];

/// Largest Ethernet frame flashgate sends or accepts, without the FCS: 14-byte header +
/// 1500-byte payload (no VLAN tag, no jumbo frames).
pub const MAX_FRAME_LEN: usize = 1514;

/// Why an Ethernet controller refused or lost a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EthernetError {
    /// A frame to send is longer than [`MAX_FRAME_LEN`] or shorter than an Ethernet header.
    BadFrameLength,
    /// The controller has no room for the frame right now; try again after receiving.
    TxFull,
    /// A received frame did not fit the buffer (it is dropped, the next one is intact).
    FrameTooLong,
    /// A received frame had a CRC, length or other error the MAC reported (dropped).
    ReceiveError,
}

/// A frame-level Ethernet controller (MAC + PHY), polled: no interrupts, no DMA.
///
/// One job: move whole frames (destination MAC first, FCS excluded) between the wire and the
/// caller's buffers. Addresses, ARP and IP belong to the stack on top (`flashgate-net`).
pub trait EthernetDevice {
    /// The station address the controller filters on (unicast frames to other addresses are
    /// not delivered; broadcast is).
    fn mac_address(&self) -> MacAddress;

    /// Whether the PHY reports a link.
    fn link_up(&mut self) -> bool;

    /// Copies the next received frame into `buf` and returns its length, or `None` when no
    /// frame is waiting. A frame that does not fit, or that the MAC flagged as bad, is dropped
    /// whole and reported as an error, so the next call starts on a frame boundary.
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, EthernetError>;

    /// Whether a frame of `len` bytes can be queued for sending right now.
    fn can_transmit(&mut self, len: usize) -> bool;

    /// Queues one frame for sending (the MAC adds padding and the FCS).
    fn transmit(&mut self, frame: &[u8]) -> Result<(), EthernetError>;
}
