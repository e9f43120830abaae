//! The board's Ethernet controller as a smoltcp `phy::Device`.

use flashgate_board::{EthernetDevice, EthernetError, MAX_FRAME_LEN};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Frames and bytes through an [`EthernetLink`] since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames handed to the stack.
    pub rx_frames: u32,
    /// Bytes of those frames (Ethernet header included, FCS excluded).
    pub rx_bytes: u64,
    /// Frames the controller dropped as too long or bad.
    pub rx_errors: u32,
    /// Frames queued on the controller.
    pub tx_frames: u32,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames the controller refused (no room, bad length).
    pub tx_errors: u32,
}

impl LinkStats {
    /// Frames moved either way (received, sent, or dropped).
    pub fn frames(&self) -> u64 {
        [
            self.rx_frames,
            self.rx_errors,
            self.tx_frames,
            self.tx_errors,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum()
    }
}

/// An [`EthernetDevice`] with one frame buffer each way, for smoltcp.
///
/// The controller has its own FIFOs, so one buffer each way is enough: smoltcp handles one
/// received frame at a time and may answer it (ARP, TCP ACK) through the transmit buffer
/// while the received frame is still borrowed.
pub struct EthernetLink<D> {
    device: D,
    rx: [u8; MAX_FRAME_LEN],
    tx: [u8; MAX_FRAME_LEN],
    stats: LinkStats,
    max_burst: Option<usize>,
}

impl<D: EthernetDevice> EthernetLink<D> {
    /// Wraps `device`. `max_burst` (frames) caps the TCP receive window smoltcp advertises at
    /// that many full segments: set it to what the controller's RX FIFO holds, so a peer's
    /// burst is never dropped for want of room.
    pub fn new(device: D, max_burst: Option<usize>) -> Self {
        Self {
            device,
            rx: [0; MAX_FRAME_LEN],
            tx: [0; MAX_FRAME_LEN],
            stats: LinkStats::default(),
            max_burst,
        }
    }

    /// Counters since [`EthernetLink::new`].
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// The controller.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }
}

/// A received frame, borrowed from the link's receive buffer.
pub struct RxFrame<'a>(&'a [u8]);

/// Room for one frame to send.
pub struct TxFrame<'a, D> {
    device: &'a mut D,
    buf: &'a mut [u8; MAX_FRAME_LEN],
    stats: &'a mut LinkStats,
}

impl phy::RxToken for RxFrame<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl<D: EthernetDevice> phy::TxToken for TxFrame<'_, D> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp never asks for more than `max_transmission_unit` (= MAX_FRAME_LEN).
        let frame = &mut self.buf[..len];
        let result = f(frame);
        match self.device.transmit(frame) {
            Ok(()) => {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += len as u64;
            }
            // Lost like a frame on a busy wire; TCP retransmits, the UDP user sees no answer.
            Err(_) => self.stats.tx_errors += 1,
        }
        result
    }
}

impl<D: EthernetDevice> phy::Device for EthernetLink<D> {
    type RxToken<'a>
        = RxFrame<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxFrame<'a, D>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxFrame<'_>, TxFrame<'_, D>)> {
        loop {
            match self.device.receive(&mut self.rx) {
                Ok(Some(len)) => {
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += len as u64;
                    let tx = TxFrame {
                        device: &mut self.device,
                        buf: &mut self.tx,
                        stats: &mut self.stats,
                    };
                    return Some((RxFrame(&self.rx[..len]), tx));
                }
                Ok(None) => return None,
                // The bad frame is gone; look at the next one.
                Err(EthernetError::FrameTooLong | EthernetError::ReceiveError) => {
                    self.stats.rx_errors += 1;
                }
                Err(_) => return None,
            }
        }
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxFrame<'_, D>> {
        if !self.device.can_transmit(MAX_FRAME_LEN) {
            return None;
        }
        Some(TxFrame {
            device: &mut self.device,
            buf: &mut self.tx,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME_LEN;
        caps.max_burst_size = self.max_burst;
        caps
    }
}
