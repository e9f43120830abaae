//! The bring-up the bootloader's gateway link and the demo OS's uplink share: entropy for the
//! TCP sequence numbers, a SysTick clock, the controller, one TCP socket over static buffers
//! on a stack with the QEMU user-networking address.

use flashgate_board::cpu::SysTickCounter;
use flashgate_board::{EntropySource, EthernetDevice};
use smoltcp::iface::{SocketHandle, SocketStorage};
use smoltcp::socket::tcp;

use crate::{Clock, Ipv4Config, NetStack, TakeOnce};

/// Why the network link did not come up (the UART is then the only link).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetDown {
    /// No entropy for the TCP sequence numbers.
    Entropy,
    /// The Ethernet controller did not initialise.
    Controller,
    /// The static socket storage was taken already (a second bring-up).
    Storage,
}

/// A stack with one TCP socket (not connected yet) and its clock.
pub struct OneTcp<D: 'static> {
    /// The stack.
    pub stack: NetStack<'static, D>,
    /// Its clock.
    pub clock: Clock,
    /// The socket.
    pub tcp: SocketHandle,
}

/// The static buffers of one TCP socket, each taken once.
pub struct TcpBuffers<const RX: usize, const TX: usize> {
    /// The stack's one socket slot.
    pub sockets: &'static TakeOnce<[SocketStorage<'static>; 1]>,
    /// Receive buffer.
    pub rx: &'static TakeOnce<[u8; RX]>,
    /// Send buffer.
    pub tx: &'static TakeOnce<[u8; TX]>,
}

impl<D: EthernetDevice + 'static> OneTcp<D> {
    /// Brings the controller (`init`) and the stack up (static address,
    /// `Ipv4Config::QEMU_USER`), the seed of TCP sequence numbers and ports from `entropy`;
    /// `max_burst`: see [`crate::EthernetLink::new`].
    pub fn up<E, const RX: usize, const TX: usize>(
        init: impl FnOnce() -> Result<D, E>,
        entropy: &mut impl EntropySource,
        core_clock_hz: u32,
        buffers: TcpBuffers<RX, TX>,
        max_burst: Option<usize>,
    ) -> Result<Self, NetDown> {
        let mut seed = [0u8; 8];
        entropy.fill(&mut seed).map_err(|_| NetDown::Entropy)?;
        let mut clock = Clock::new(SysTickCounter::start(), core_clock_hz);
        let device = init().map_err(|_| NetDown::Controller)?;
        let (Some(storage), Some(rx), Some(tx)) =
            (buffers.sockets.take(), buffers.rx.take(), buffers.tx.take())
        else {
            return Err(NetDown::Storage);
        };
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx[..]),
            tcp::SocketBuffer::new(&mut tx[..]),
        );
        let mut stack = NetStack::new(
            device,
            &Ipv4Config::QEMU_USER,
            u64::from_le_bytes(seed),
            max_burst,
            &mut storage[..],
            clock.now(),
        );
        let tcp = stack.add_socket(socket).map_err(|_| NetDown::Storage)?;
        Ok(Self { stack, clock, tcp })
    }
}
