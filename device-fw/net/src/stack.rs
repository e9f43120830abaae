//! Link + smoltcp interface + sockets, with a static IPv4 configuration.

use flashgate_board::EthernetDevice;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::{tcp, AnySocket};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpEndpoint, Ipv4Address};

use crate::link::{EthernetLink, LinkStats};

/// A static IPv4 configuration (no DHCP: a device's address is part of its configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Config {
    /// The device's address.
    pub address: Ipv4Address,
    /// Prefix length of its subnet.
    pub prefix_len: u8,
    /// The default gateway, if any.
    pub gateway: Option<Ipv4Address>,
}

impl Ipv4Config {
    /// QEMU user networking's defaults: the guest is 10.0.2.15/24, the gateway (QEMU's
    /// own host side) 10.0.2.2.
    pub const QEMU_USER: Ipv4Config = Ipv4Config {
        address: Ipv4Address::new(10, 0, 2, 15),
        prefix_len: 24,
        gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
    };
}

/// Every socket slot of the [`NetStack`] is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketSetFull;

/// The whole stack: an [`EthernetLink`] on `D`, smoltcp's `Interface` and the sockets.
///
/// Poll it often (every pass of the program's main loop): smoltcp does all its work, and the
/// controller is drained, only inside [`NetStack::poll`].
pub struct NetStack<'s, D> {
    link: EthernetLink<D>,
    iface: Interface,
    sockets: SocketSet<'s>,
    free_slots: usize,
    next_port: u16,
}

/// Local ports [`NetStack::connect`] picks from (IANA's dynamic range, RFC 6335).
const EPHEMERAL_PORTS: core::ops::RangeInclusive<u16> = 49152..=65535;

impl<'s, D: EthernetDevice> NetStack<'s, D> {
    /// Brings the interface up on `device` with `config`. `random_seed` seeds TCP initial
    /// sequence numbers and local ports: take it from the board's entropy source (a
    /// predictable seed lets an off-path host guess sequence numbers and inject segments).
    /// `max_burst`: see [`EthernetLink::new`]. `storage` has one slot per socket.
    pub fn new(
        device: D,
        config: &Ipv4Config,
        random_seed: u64,
        max_burst: Option<usize>,
        storage: &'s mut [SocketStorage<'s>],
        now: Instant,
    ) -> Self {
        let mac = device.mac_address();
        let mut link = EthernetLink::new(device, max_burst);
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        iface_config.random_seed = random_seed;
        let mut iface = Interface::new(iface_config, &mut link, now);
        iface.update_ip_addrs(|addrs| {
            // The feature `iface-max-addr-count-1` leaves room for exactly this one.
            let _ = addrs.push(IpCidr::Ipv4(smoltcp::wire::Ipv4Cidr::new(
                config.address,
                config.prefix_len,
            )));
        });
        if let Some(gateway) = config.gateway {
            // The route table holds one route (`iface-max-route-count-1`): this one.
            let _ = iface.routes_mut().add_default_ipv4_route(gateway);
        }
        let free_slots = storage.len();
        let span = u64::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        Self {
            link,
            iface,
            sockets: SocketSet::new(storage),
            free_slots,
            // A random first port: a restarted device does not reuse its last connection's.
            next_port: EPHEMERAL_PORTS.start() + ((random_seed >> 16) % span) as u16,
        }
    }

    /// Adds a socket; fails when every storage slot is taken.
    pub fn add_socket<T: AnySocket<'s>>(
        &mut self,
        socket: T,
    ) -> Result<SocketHandle, SocketSetFull> {
        if self.free_slots == 0 {
            return Err(SocketSetFull);
        }
        self.free_slots -= 1;
        Ok(self.sockets.add(socket))
    }

    /// The socket behind `handle`, of the type it was added as (a handle of another type is
    /// a programming error: smoltcp panics).
    pub fn socket<T: AnySocket<'s>>(&mut self, handle: SocketHandle) -> &mut T {
        self.sockets.get_mut(handle)
    }

    /// Opens the TCP socket `handle` towards `remote` from the next ephemeral local port.
    pub fn connect(
        &mut self,
        handle: SocketHandle,
        remote: IpEndpoint,
    ) -> Result<(), tcp::ConnectError> {
        let port = self.next_port;
        self.next_port = if port == *EPHEMERAL_PORTS.end() {
            *EPHEMERAL_PORTS.start()
        } else {
            port + 1
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        socket.connect(self.iface.context(), remote, port)
    }

    /// Moves frames between the controller and the sockets, runs timers.
    pub fn poll(&mut self, now: Instant) -> PollResult {
        self.iface.poll(now, &mut self.link, &mut self.sockets)
    }

    /// How long the stack can wait before the next [`NetStack::poll`] if nothing arrives.
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        self.iface.poll_delay(now, &self.sockets)
    }

    /// Link counters.
    pub fn link_stats(&self) -> LinkStats {
        self.link.stats()
    }

    /// The controller (e.g. for [`EthernetDevice::link_up`]).
    pub fn device_mut(&mut self) -> &mut D {
        self.link.device_mut()
    }
}
