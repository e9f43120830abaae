//! The demo OS's network uplink (feature `net`): its sealed records, straight to the
//! coordinator's data ingest over TCP, with no host tool (`docs/protocol.md`, "Records over
//! the network").
//!
//! TCP and not UDP: the emulated board's only network is QEMU user networking with
//! `restrict=on`, which drops every UDP datagram the guest sends; its guest forwards carry TCP
//! only. The bytes on the connection are the UART's frames (`DataRecord`: sync, type, length,
//! payload, CRC), so the ingest decodes them with the same `FrameDecoder`. TCP adds nothing
//! to the trust model: each record authenticates itself under the device's epoch key, and the
//! coordinator's replay window refuses a copy, whichever link carried it.
//!
//! The device connects to [`INGEST`] (a compile-time address, like the bootloader's gateway:
//! QEMU's guest forward on the emulated board), again with a doubling back-off whenever the
//! connection fails or closes. Records sealed while it is down wait in [`PENDING_LEN`] bytes of
//! whole frames; past that a record is dropped: its counter is spent all the
//! same (reserved in flash), so no counter is ever sealed twice.
//!
//! The same connection carries the down-link: the coordinator writes sealed down messages on
//! it as `DataDown` frames once it knows which device is on it (queue-and-reply: the device
//! opened the connection, so this crosses NAT). [`Uplink::poll`] hands each one to the OS,
//! which opens and checks it (`down.rs`).

use flashgate_board::mps2_an386::{Lan9118, Lan9118Device};
use flashgate_board::{Board, EntropySource};
use flashgate_net::smoltcp::iface::{SocketHandle, SocketStorage};
use flashgate_net::smoltcp::socket::tcp;
use flashgate_net::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
use flashgate_net::{Clock, NetDown, NetStack, OneTcp, TakeOnce, TcpBuffers};
use flashgate_protocol::data_stream::down::SealedDown;
use flashgate_protocol::uart::{FrameDecoder, MsgType};


/// The data ingest: an otherwise unused address of QEMU's user-net subnet that the emulator
/// forwards to the coordinator's loopback port (`flashgate-coordinator serve --data-tcp`).
pub const INGEST: IpEndpoint = IpEndpoint {
    addr: IpAddress::Ipv4(Ipv4Address::new(10, 0, 2, 101)),
    port: 7403,
};
/// The first wait before connecting again after a failed or closed connection.
const RETRY_FIRST_S: u64 = 1;
/// The longest wait between two connection attempts.
const RETRY_MAX_S: u64 = 32;
/// Receive buffer: room for two whole down messages in their frames.
pub const RX_LEN: usize = 640;
/// Send buffer: about 90 frames of 22-byte v2 records (8 bytes of framing each).
pub const TX_LEN: usize = 4096;
/// Whole frames waiting while the connection is down.
pub const PENDING_LEN: usize = 2048;

static SOCKETS: TakeOnce<[SocketStorage<'static>; 1]> = TakeOnce::new([SocketStorage::EMPTY; 1]);
static RX: TakeOnce<[u8; RX_LEN]> = TakeOnce::new([0; RX_LEN]);
static TX: TakeOnce<[u8; TX_LEN]> = TakeOnce::new([0; TX_LEN]);

/// The uplink: the stack, one TCP socket to the ingest, frames waiting for it.
pub struct Uplink {
    stack: NetStack<'static, Lan9118Device>,
    clock: Clock,
    tcp: SocketHandle,
    pending: [u8; PENDING_LEN],
    pending_len: usize,
    retry_at: u64,
    backoff_s: u64,
    /// Frames from the coordinator (down messages), across reads.
    decoder: FrameDecoder,
}

impl Uplink {
    /// Brings the controller and the stack up (static address, `Ipv4Config::QEMU_USER`), the
    /// seed of TCP sequence numbers and ports from `entropy`.
    pub fn up(eth: Lan9118, entropy: &mut impl EntropySource) -> Result<Self, NetDown> {
        let buffers = TcpBuffers {
            sockets: &SOCKETS,
            rx: &RX,
            tx: &TX,
        };
        let OneTcp { stack, clock, tcp } =
            OneTcp::up(|| eth.init(None), entropy, Board::CORE_CLOCK_HZ, buffers, None)?;
        Ok(Self {
            stack,
            clock,
            tcp,
            pending: [0; PENDING_LEN],
            pending_len: 0,
            retry_at: 0,
            backoff_s: RETRY_FIRST_S,
            decoder: FrameDecoder::new(),
        })
    }

    /// Queues one encoded frame (whole or not at all) and pushes what the socket takes.
    pub fn queue(&mut self, frame: &[u8]) {
        // A frame that does not fit is lost like a datagram on a full link; its counter stays
        // spent.
        if let Some(room) = self
            .pending
            .get_mut(self.pending_len..self.pending_len + frame.len())
        {
            room.copy_from_slice(frame);
            self.pending_len += frame.len();
        }
        self.flush();
    }

    /// Moves what fits from the pending buffer into the socket (when it is established).
    fn flush(&mut self) {
        let socket = self.stack.socket::<tcp::Socket>(self.tcp);
        if self.pending_len == 0 || !socket.may_send() {
            return;
        }
        if let Ok(n) = socket.send_slice(&self.pending[..self.pending_len]) {
            self.pending.copy_within(n..self.pending_len, 0);
            self.pending_len -= n;
        }
    }

    /// One step: moves frames, (re)connects when due, reads what the coordinator sent, flushes;
    /// returns a down message when one came whole (one per call: the rest stays in the socket).
    pub fn poll(&mut self) -> Option<SealedDown> {
        let now = self.clock.now();
        self.stack.poll(now);
        let ticks = self.clock.ticks();
        let socket = self.stack.socket::<tcp::Socket>(self.tcp);
        if !socket.is_open() {
            if ticks >= self.retry_at {
                self.retry_at = ticks + self.backoff_s * u64::from(Board::CORE_CLOCK_HZ);
                self.backoff_s = (self.backoff_s * 2).min(RETRY_MAX_S);
                // A new connection starts a new frame stream.
                self.decoder = FrameDecoder::new();
                // A failed attempt is retried after the back-off like a refused one.
                let _ = self.stack.connect(self.tcp, INGEST);
            }
            return None;
        }
        if socket.may_send() && socket.may_recv() {
            self.backoff_s = RETRY_FIRST_S;
        } else if !socket.may_recv() && socket.state() == tcp::State::CloseWait {
            socket.close();
            return None;
        }
        let decoder = &mut self.decoder;
        let mut down = None;
        while down.is_none() && socket.can_recv() {
            // Byte by byte up to the end of a frame: what follows it stays for the next call.
            let read = socket.recv(|bytes| {
                for (i, &byte) in bytes.iter().enumerate() {
                    if let Some(Ok(frame)) = decoder.push(byte) {
                        if frame.msg_type() == Ok(MsgType::DataDown) {
                            return (i + 1, SealedDown::copy_of(frame.payload()).ok());
                        }
                    }
                }
                (bytes.len(), None)
            });
            match read {
                Ok(found) => down = found,
                Err(_) => break,
            }
        }
        self.flush();
        self.stack.poll(self.clock.now());
        down
    }

    /// Polls until what is pending has left (or about 0.2 s passed): before the OS hands over
    /// to the bootloader, so its last record (the ack) is not lost with the socket.
    pub fn drain(&mut self) {
        let until = self.clock.ticks() + u64::from(Board::CORE_CLOCK_HZ) / 5;
        while self.clock.ticks() < until {
            let _ = self.poll();
            let socket = self.stack.socket::<tcp::Socket>(self.tcp);
            if self.pending_len == 0 && socket.send_queue() == 0 {
                return;
            }
        }
    }
}
