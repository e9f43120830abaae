//! Networking for the board's Ethernet (the LAN9118) that reaches only this machine.
//!
//! With [`NetworkOptions`] the NIC sits on QEMU hub 0 together with:
//! - QEMU user networking with `restrict=on` (libslirp's isolation: the guest's packets to
//!   anything but the forwards below are dropped, its UDP is dropped altogether, no DNS) and
//!   one `guestfwd` per [`TcpForward`]: a guest connection to `guest` is carried to the
//!   loopback server `host`;
//! - optionally a `dgram` backend to a loopback UDP socket (the [frame peer]): every frame
//!   the board sends reaches that socket as one datagram, and each datagram sent to the
//!   board's frame address arrives as a frame. This is the only way to exchange UDP with the
//!   guest: restricted user networking drops every UDP datagram the guest sends, even the
//!   replies to a `hostfwd=udp` forward. A hub repeats every frame to every port: the frame
//!   peer also sees the user network's frames to the board (and may ignore them), and user
//!   networking drops the peer's (they are not addressed to it).
//!
//! Without them the board gets restricted user networking with no forward at all, which
//! reaches nothing (QEMU's default would be an *unrestricted* user network). Not `-nic none`:
//! with no network backend the UART `hello` of `boot::os_with_tampered_body_is_refused` timed
//! out in 2 of 7 runs (0 of 13 with slirp present), apparently because nothing else wakes
//! QEMU's main loop to poll the serial socket again.
//!
//! [frame peer]: NetworkOptions::frame_peer

use std::{
    ffi::OsString,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
};

use crate::board::Uid;

/// QEMU user networking's subnet, in which guest-side forward addresses must lie.
const SUBNET: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 0);
/// Addresses of that subnet QEMU keeps for itself or gives the guest: the gateway (QEMU
/// 7.2 refuses a guest forward on it), the DNS server, and the guest's DHCP address.
const RESERVED: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 0, 2, 2),
    Ipv4Addr::new(10, 0, 2, 3),
    Ipv4Addr::new(10, 0, 2, 15),
];

/// A TCP service of this machine the guest may connect to.
///
/// QEMU connects to `host` once, when the board powers on (so the server must already
/// listen), and carries every guest connection to `guest` over that one host connection:
/// the host sees neither the guest's connects nor its closes, only bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpForward {
    /// Address and port the guest connects to, in 10.0.2.0/24 (not .2, .3 or .15).
    pub guest: SocketAddrV4,
    /// The loopback server that receives the guest's bytes.
    pub host: SocketAddrV4,
}

/// Loopback-only networking for a board ([`StartOptions::network`](crate::StartOptions)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkOptions {
    /// Guest-to-host TCP forwards.
    pub tcp_forwards: Vec<TcpForward>,
    /// A loopback UDP socket that exchanges raw Ethernet frames with the board (one frame
    /// per datagram); send to [`EmulatedBoard::frame_addr`](crate::EmulatedBoard::frame_addr).
    pub frame_peer: Option<SocketAddrV4>,
}

/// Why network options were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// A host end is not a loopback address.
    #[error("{0} is not a loopback address: an emulated board may reach only this machine")]
    NotLoopback(SocketAddrV4),
    /// A guest-side address is outside QEMU's user subnet or one QEMU keeps.
    #[error(
        "guest address {0} must be in 10.0.2.0/24 and not 10.0.2.2, .3 or .15 (QEMU's own and the guest's)"
    )]
    GuestAddress(Ipv4Addr),
    /// Two forwards for one guest address and port.
    #[error("two TCP forwards for guest address {0}")]
    DuplicateForward(SocketAddrV4),
}

impl NetworkOptions {
    /// Checks every address: host ends on loopback, guest ends in the user subnet.
    pub fn validate(&self) -> Result<(), NetworkError> {
        for (i, fwd) in self.tcp_forwards.iter().enumerate() {
            if !fwd.host.ip().is_loopback() {
                return Err(NetworkError::NotLoopback(fwd.host));
            }
            let ip = *fwd.guest.ip();
            let in_subnet = u32::from(ip) & 0xFFFF_FF00 == u32::from(SUBNET);
            if !in_subnet || RESERVED.contains(&ip) || ip.octets()[3] == 255 {
                return Err(NetworkError::GuestAddress(ip));
            }
            if self.tcp_forwards[..i].iter().any(|f| f.guest == fwd.guest) {
                return Err(NetworkError::DuplicateForward(fwd.guest));
            }
        }
        match self.frame_peer {
            Some(peer) if !peer.ip().is_loopback() => Err(NetworkError::NotLoopback(peer)),
            _ => Ok(()),
        }
    }

    /// QEMU arguments for this configuration; `frames` is the board's end of the frame
    /// link (a free loopback UDP address), needed when there is a frame peer.
    pub(crate) fn qemu_args(&self, uid: &Uid, frames: Option<SocketAddrV4>) -> Vec<OsString> {
        let mac = uid.mac_address();
        let mac = mac.map(|b| format!("{b:02x}")).join(":");
        let mut user = String::from("user,restrict=on,ipv6=off");
        for fwd in &self.tcp_forwards {
            user.push_str(&format!(",guestfwd=tcp:{}-tcp:{}", fwd.guest, fwd.host));
        }
        let mut args: Vec<OsString> = vec![
            "-net".into(),
            format!("nic,model=lan9118,macaddr={mac}").into(),
            "-net".into(),
            user.into(),
        ];
        if let (Some(peer), Some(local)) = (self.frame_peer, frames) {
            args.extend([
                "-netdev".into(),
                format!(
                    "dgram,id=fg-frames,local.type=inet,local.host={},local.port={},\
                     remote.type=inet,remote.host={},remote.port={}",
                    local.ip(),
                    local.port(),
                    peer.ip(),
                    peer.port()
                )
                .into(),
                "-netdev".into(),
                "hubport,id=fg-frames-port,hubid=0,netdev=fg-frames".into(),
            ]);
        }
        args
    }
}

/// The arguments for a board without network options: restricted, with no forward.
pub(crate) fn isolated_args() -> [&'static str; 2] {
    ["-nic", "user,model=lan9118,restrict=on,ipv6=off"]
}

/// A loopback UDP port free right now (QEMU binds it next; a race is caught by the start
/// retry, as for the TCP ports).
pub(crate) fn free_udp_addr() -> std::io::Result<SocketAddrV4> {
    match UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()? {
        SocketAddr::V4(addr) => Ok(addr),
        SocketAddr::V6(_) => unreachable!("bound to an IPv4 address"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(guest: [u8; 4], host: [u8; 4]) -> TcpForward {
        TcpForward {
            guest: SocketAddrV4::new(guest.into(), 9000),
            host: SocketAddrV4::new(host.into(), 4000),
        }
    }

    #[test]
    fn host_ends_must_be_loopback() {
        let mut options = NetworkOptions {
            tcp_forwards: vec![forward([10, 0, 2, 100], [192, 0, 2, 1])],
            frame_peer: None,
        };
        assert!(matches!(
            options.validate(),
            Err(NetworkError::NotLoopback(_))
        ));
        options.tcp_forwards = vec![forward([10, 0, 2, 100], [127, 0, 0, 1])];
        options.frame_peer = Some(SocketAddrV4::new([10, 1, 1, 1].into(), 5));
        assert!(matches!(
            options.validate(),
            Err(NetworkError::NotLoopback(_))
        ));
        options.frame_peer = Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5));
        assert_eq!(options.validate(), Ok(()));
    }

    #[test]
    fn guest_ends_must_be_free_subnet_addresses() {
        for guest in [
            [10, 0, 2, 2],
            [10, 0, 2, 15],
            [10, 0, 3, 100],
            [10, 0, 2, 255],
        ] {
            let options = NetworkOptions {
                tcp_forwards: vec![forward(guest, [127, 0, 0, 1])],
                frame_peer: None,
            };
            assert!(
                matches!(options.validate(), Err(NetworkError::GuestAddress(_))),
                "{guest:?}"
            );
        }
        let twice = NetworkOptions {
            tcp_forwards: vec![
                forward([10, 0, 2, 100], [127, 0, 0, 1]),
                forward([10, 0, 2, 100], [127, 0, 0, 2]),
            ],
            frame_peer: None,
        };
        assert!(matches!(
            twice.validate(),
            Err(NetworkError::DuplicateForward(_))
        ));
    }

    #[test]
    fn user_networking_is_restricted_and_the_mac_comes_from_the_uid() {
        let uid = Uid([0xA0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        let options = NetworkOptions {
            tcp_forwards: vec![forward([10, 0, 2, 100], [127, 0, 0, 1])],
            frame_peer: Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7000)),
        };
        let frames = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7001);
        let args: Vec<String> = options
            .qemu_args(&uid, Some(frames))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(args[1], "nic,model=lan9118,macaddr=02:a0:01:02:03:04");
        assert_eq!(
            args[3],
            "user,restrict=on,ipv6=off,guestfwd=tcp:10.0.2.100:9000-tcp:127.0.0.1:4000"
        );
        assert!(args[5].contains("local.host=127.0.0.1,local.port=7001"));
        assert!(args[5].contains("remote.host=127.0.0.1,remote.port=7000"));
        // A board without network options is restricted too, with no forward.
        assert_eq!(
            isolated_args()[1],
            "user,model=lan9118,restrict=on,ipv6=off"
        );
    }
}
