//! The bootloader's network link (feature `net`): the update session of the UART, carried over
//! one TCP connection to the device gateway (`docs/protocol.md` §7, "Over the network").
//!
//! The framing is the UART's, byte for byte (`uart::frame`: sync, type, length, payload,
//! CRC): the device connects, the gateway speaks first (hello), and every frame is served by
//! the same `BootloaderService` as the UART's. TCP adds nothing to the trust model: the
//! gateway sees what a UART host sees (ciphertext, MACs), and the device accepts only what
//! opens under its own key.
//!
//! The device connects to [`GATEWAY`] (a compile-time address: QEMU's guest forward on the
//! emulated board) from a random local port, and again with a doubling back-off
//! ([`RETRY_FIRST_S`] to [`RETRY_MAX_S`]) whenever the connection fails or closes. Nothing
//! blocks: [`NetLink::poll`] does one step and returns, so the UART is served in between.

use flashgate_board::mps2_an386::Lan9118;
use flashgate_board::{Board, EntropySource, NorFlash};
use flashgate_net::smoltcp::iface::{SocketHandle, SocketStorage};
use flashgate_net::smoltcp::socket::tcp;
use flashgate_net::smoltcp::wire::{IpEndpoint, Ipv4Address};
use flashgate_net::{Clock, NetDown, NetStack, OneTcp, TakeOnce, TcpBuffers};
use flashgate_protocol::boot::OsImage;
use flashgate_protocol::uart::service::FrameSink;
use flashgate_protocol::uart::{BootloaderAction, BootloaderService, FrameDecoder, MsgType};
use flashgate_protocol::update::boot_state;

/// The device gateway: an otherwise unused address of QEMU's user-net subnet that the
/// emulator forwards to the gateway's loopback port (`flashgate-coordinator serve
/// --device-gateway-listen`), and the gateway's default port.
pub const GATEWAY: IpEndpoint = IpEndpoint {
    addr: flashgate_net::smoltcp::wire::IpAddress::Ipv4(Ipv4Address::new(10, 0, 2, 100)),
    port: 7402,
};
/// The first wait before connecting again after a failed or closed connection.
pub const RETRY_FIRST_S: u64 = 1;
/// The longest wait between two connection attempts.
pub const RETRY_MAX_S: u64 = 32;
/// After an install over the network, how long the bootloader waits for the gateway's status
/// request before it starts the new OS anyway.
const REPORT_WINDOW_S: u64 = 5;

/// Receive buffer: a chunk frame (4 KiB + tag + header) and the next one in flight. Its size
/// also bounds the TCP window the device advertises, next to the controller's FIFO
/// ([`RX_FIFO_FRAMES`]).
pub const RX_LEN: usize = 8 * 1024;
/// Send buffer: the replies are small (a hello response or a receipt is the largest).
pub const TX_LEN: usize = 1024;
/// Full-size frames the LAN9118's RX data FIFO holds (see `net-check`).
const RX_FIFO_FRAMES: usize = 6;
/// Replies waiting for room in the send buffer (at most two per request).
const OUTBOX_LEN: usize = 1024;

static SOCKETS: TakeOnce<[SocketStorage<'static>; 1]> = TakeOnce::new([SocketStorage::EMPTY; 1]);
static RX: TakeOnce<[u8; RX_LEN]> = TakeOnce::new([0; RX_LEN]);
static TX: TakeOnce<[u8; TX_LEN]> = TakeOnce::new([0; TX_LEN]);

/// Replies of the service, kept until the socket has room for them.
struct Outbox {
    buf: [u8; OUTBOX_LEN],
    len: usize,
}

impl FrameSink for Outbox {
    fn send_frame(&mut self, frame: &[u8]) {
        // Every reply is far below OUTBOX_LEN and the box is flushed before the next request
        // is read; a frame that did not fit is dropped whole, like a frame lost on a wire.
        if let Some(room) = self.buf.get_mut(self.len..self.len + frame.len()) {
            room.copy_from_slice(frame);
            self.len += frame.len();
        }
    }
}

impl Outbox {
    /// Moves what fits into the socket's send buffer; true when the box is empty.
    fn flush(&mut self, socket: &mut tcp::Socket<'_>) -> bool {
        if self.len == 0 {
            return true;
        }
        let Ok(sent) = socket.send_slice(&self.buf[..self.len]) else {
            // Not connected any more: what was to be said is lost with the connection.
            self.len = 0;
            return true;
        };
        self.buf.copy_within(sent..self.len, 0);
        self.len -= sent;
        self.len == 0
    }
}

/// What the link is doing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Serving the session.
    Serving,
    /// The install finished: answer the gateway's status request (`answered`), then start
    /// `os`; start it anyway at `until` (clock ticks).
    Reporting {
        os: OsImage,
        until: u64,
        answered: bool,
    },
}

/// The network link: the stack, one TCP socket to the gateway, its frame decoder.
pub struct NetLink {
    stack: NetStack<'static, flashgate_board::mps2_an386::Lan9118Device>,
    clock: Clock,
    tcp: SocketHandle,
    decoder: FrameDecoder,
    outbox: Outbox,
    /// When (clock ticks) the next connection attempt is due, and the wait after it.
    retry_at: u64,
    backoff_s: u64,
    phase: Phase,
    /// Connections opened (the first included).
    pub connects: u32,
}

impl NetLink {
    /// Brings the controller and the stack up (static address, `Ipv4Config::QEMU_USER`), the
    /// seed of TCP sequence numbers and ports from `entropy`.
    pub fn up(eth: Lan9118, entropy: &mut impl EntropySource) -> Result<Self, NetDown> {
        let buffers = TcpBuffers {
            sockets: &SOCKETS,
            rx: &RX,
            tx: &TX,
        };
        let OneTcp { stack, clock, tcp } = OneTcp::up(
            || eth.init(None),
            entropy,
            Board::CORE_CLOCK_HZ,
            buffers,
            Some(RX_FIFO_FRAMES),
        )?;
        Ok(Self {
            stack,
            clock,
            tcp,
            decoder: FrameDecoder::new(),
            outbox: Outbox {
                buf: [0; OUTBOX_LEN],
                len: 0,
            },
            retry_at: 0,
            backoff_s: RETRY_FIRST_S,
            phase: Phase::Serving,
            connects: 0,
        })
    }

    /// One step: moves frames, (re)connects when due, serves the frames that arrived.
    /// `Start` comes back only once the gateway had its chance to ask for the receipt.
    pub fn poll<F: NorFlash>(
        &mut self,
        service: &mut BootloaderService<'_>,
        flash: &mut F,
    ) -> BootloaderAction {
        let now = self.clock.now();
        self.stack.poll(now);
        let ticks = self.clock.ticks();
        if let Phase::Reporting { os, until, .. } = self.phase {
            if ticks >= until || self.report_sent() {
                return BootloaderAction::Start(os);
            }
        }
        let socket = self.stack.socket::<tcp::Socket>(self.tcp);
        if !socket.is_open() {
            if ticks >= self.retry_at {
                self.decoder = FrameDecoder::new();
                self.outbox.len = 0;
                self.retry_at = ticks + self.backoff_s * u64::from(Board::CORE_CLOCK_HZ);
                self.backoff_s = (self.backoff_s * 2).min(RETRY_MAX_S);
                if self.stack.connect(self.tcp, GATEWAY).is_ok() {
                    self.connects += 1;
                }
            }
            return BootloaderAction::Continue;
        }
        if socket.may_send() && socket.may_recv() {
            // Established: the next failure starts the back-off from the beginning again.
            self.backoff_s = RETRY_FIRST_S;
        } else if !socket.may_recv() && socket.state() == tcp::State::CloseWait {
            // The gateway closed its side: close ours; the next attempt follows the back-off.
            socket.close();
            return BootloaderAction::Continue;
        }
        self.serve(service, flash, ticks)
    }

    /// Feeds received bytes to the decoder and the frames to `service`, one frame at a time
    /// while the replies to the last one are still waiting for room.
    fn serve<F: NorFlash>(
        &mut self,
        service: &mut BootloaderService<'_>,
        flash: &mut F,
        ticks: u64,
    ) -> BootloaderAction {
        let socket = self.stack.socket::<tcp::Socket>(self.tcp);
        let mut action = BootloaderAction::Continue;
        let (decoder, outbox) = (&mut self.decoder, &mut self.outbox);
        while action == BootloaderAction::Continue && outbox.flush(socket) && socket.can_recv() {
            let served = socket.recv(|bytes| {
                for (i, byte) in bytes.iter().enumerate() {
                    let Some(frame) = decoder.push(*byte) else {
                        continue;
                    };
                    let status =
                        matches!(&frame, Ok(f) if f.msg_type() == Ok(MsgType::StatusRequest));
                    action = service.handle(frame, flash, outbox);
                    if status {
                        if let Phase::Reporting {
                            ref mut answered, ..
                        } = self.phase
                        {
                            // Start as soon as the reply has reached the gateway.
                            *answered = true;
                        }
                    }
                    return (i + 1, ());
                }
                (bytes.len(), ())
            });
            if served.is_err() {
                break;
            }
        }
        outbox.flush(socket);
        match action {
            BootloaderAction::Start(os) if self.phase == Phase::Serving => {
                // The OS cannot answer over the network: say here, once, what is about to
                // run (verified, on trial) if the gateway asks.
                service.starting(&os, boot_state::read(flash).unwrap_or_default());
                self.phase = Phase::Reporting {
                    os,
                    until: ticks + REPORT_WINDOW_S * u64::from(Board::CORE_CLOCK_HZ),
                    answered: false,
                };
                BootloaderAction::Continue
            }
            other => other,
        }
    }

    /// The receipt was asked for and every byte of it acknowledged by the gateway.
    fn report_sent(&mut self) -> bool {
        let socket = self.stack.socket::<tcp::Socket>(self.tcp);
        matches!(self.phase, Phase::Reporting { answered: true, .. })
            && self.outbox.len == 0
            && socket.send_queue() == 0
    }
}
