//! Network check firmware: brings up the LAN9118 and smoltcp with a static address on QEMU user
//! networking, then serves two checks until it has sent its report.
//!
//! - **UDP echo** on port [`UDP_ECHO_PORT`]: every datagram goes back to its sender.
//! - **TCP transfer** to [`PEER`]:[`PEER_PORT`] (a guest forward to a loopback server): the
//!   device sends a 12-byte request `"FGNC" len:u32le seed:u32le`; the peer answers with a
//!   probe port (u16le) and `len` bytes of `Pattern(seed)`, which the device checks byte by
//!   byte as they arrive; then the device sends `len` bytes of `Pattern(!seed)`, which the
//!   peer checks, and closes. `seed` comes from the board's entropy: no two runs move the
//!   same bytes.
//! - **Isolation probe**: a TCP connection to QEMU's host side (10.0.2.2) at the probe port,
//!   where the peer listens on loopback without a forward. Restricted user networking must
//!   refuse it; `probe reached` in the report means the guest got out.
//!
//! When the check has finished (or failed, or [`DEADLINE_S`] of board time passed), one UART
//! frame of type `MsgType::BenchReport` carries text lines `name value` (SysTick counts: 1 tick = 40
//! instructions under `-icount shift=0`), and the device goes on echoing UDP. The emulator's
//! `network` test reads it.
#![no_std]
#![no_main]

use core::fmt::Write as _;

use flashgate_board::cpu::SysTickCounter;
use flashgate_board::mps2_an386::Lan9118Device;
use flashgate_board::stack_paint::{self, StackPaint};
use flashgate_board::text::TextBuf;
use flashgate_board::{rt, Board, EntropySource, EthernetDevice, SerialPort};
use flashgate_net::smoltcp::iface::SocketStorage;
use flashgate_net::smoltcp::socket::{tcp, udp};
use flashgate_net::smoltcp::wire::{IpEndpoint, Ipv4Address};
use flashgate_net::{Clock, EthernetLink, Ipv4Config, NetStack, TakeOnce};
use flashgate_protocol::uart::{encode_frame, DeviceMessage, OVERHEAD};

mod check;
mod pattern;

use check::{Check, Phase};

flashgate_board::vector_table!();

/// The device's UDP echo port.
pub const UDP_ECHO_PORT: u16 = 7;
/// The TCP peer: an otherwise unused address of QEMU's user-net subnet that the launcher
/// forwards to a loopback server (QEMU 7.2 refuses a guest forward on the gateway 10.0.2.2).
pub const PEER: Ipv4Address = Ipv4Address::new(10, 0, 2, 100);
/// The TCP peer's port.
pub const PEER_PORT: u16 = 9000;
/// Board time after which the report goes out even if the transfer has not finished.
pub const DEADLINE_S: u64 = 120;

const TCP_RX_LEN: usize = 8 * 1024;
const TCP_TX_LEN: usize = 8 * 1024;
/// Largest UDP payload without IP fragmentation (1500 − 20 − 8).
const UDP_MAX: usize = 1472;
const UDP_SLOTS: usize = 2;
/// Full-size frames the LAN9118's RX data FIFO holds (10 560 bytes, 1 518 + FCS each):
/// smoltcp advertises at most this many segments of TCP window so a burst never overflows it.
const RX_FIFO_FRAMES: usize = 6;
/// Stack below `main`'s frame painted for the high-water mark.
const PAINT_DEPTH: u32 = 64 * 1024;

/// The probe only needs to connect.
const PROBE_BUF_LEN: usize = 64;

static SOCKETS: TakeOnce<[SocketStorage<'static>; 3]> = TakeOnce::new([SocketStorage::EMPTY; 3]);
static TCP_RX: TakeOnce<[u8; TCP_RX_LEN]> = TakeOnce::new([0; TCP_RX_LEN]);
static TCP_TX: TakeOnce<[u8; TCP_TX_LEN]> = TakeOnce::new([0; TCP_TX_LEN]);
static UDP_RX_META: TakeOnce<[udp::PacketMetadata; UDP_SLOTS]> =
    TakeOnce::new([udp::PacketMetadata::EMPTY; UDP_SLOTS]);
static UDP_RX: TakeOnce<[u8; UDP_SLOTS * UDP_MAX]> = TakeOnce::new([0; UDP_SLOTS * UDP_MAX]);
static UDP_TX_META: TakeOnce<[udp::PacketMetadata; UDP_SLOTS]> =
    TakeOnce::new([udp::PacketMetadata::EMPTY; UDP_SLOTS]);
static UDP_TX: TakeOnce<[u8; UDP_SLOTS * UDP_MAX]> = TakeOnce::new([0; UDP_SLOTS * UDP_MAX]);
static PROBE_RX: TakeOnce<[u8; PROBE_BUF_LEN]> = TakeOnce::new([0; PROBE_BUF_LEN]);
static PROBE_TX: TakeOnce<[u8; PROBE_BUF_LEN]> = TakeOnce::new([0; PROBE_BUF_LEN]);

/// Sends `text` as one report frame (`MsgType::BenchReport`, shared with the crypto bench).
fn send_report(uart: &mut impl SerialPort, text: &[u8]) {
    let mut frame = [0u8; 2048 + OVERHEAD];
    if let Ok(n) = encode_frame(&DeviceMessage::BenchReport(text), &mut frame) {
        uart.write_all(&frame[..n]);
    }
}

/// Echoes every waiting datagram; returns (datagrams, bytes) echoed.
fn echo_udp(socket: &mut udp::Socket<'_>, scratch: &mut [u8; UDP_MAX]) -> (u32, u32) {
    let (mut datagrams, mut bytes) = (0, 0);
    while let Ok((n, meta)) = socket.recv_slice(scratch) {
        if socket.send_slice(&scratch[..n], meta).is_ok() {
            datagrams += 1;
            bytes += n as u32;
        }
    }
    (datagrams, bytes)
}

/// The sockets of the check, on `'static` storage.
struct Sockets {
    udp: udp::Socket<'static>,
    tcp: tcp::Socket<'static>,
    probe: tcp::Socket<'static>,
    storage: &'static mut [SocketStorage<'static>],
}

/// Takes every static buffer (once: `main` runs once).
fn sockets() -> Option<Sockets> {
    let udp = udp::Socket::new(
        udp::PacketBuffer::new(&mut UDP_RX_META.take()?[..], &mut UDP_RX.take()?[..]),
        udp::PacketBuffer::new(&mut UDP_TX_META.take()?[..], &mut UDP_TX.take()?[..]),
    );
    let tcp = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut TCP_RX.take()?[..]),
        tcp::SocketBuffer::new(&mut TCP_TX.take()?[..]),
    );
    let probe = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut PROBE_RX.take()?[..]),
        tcp::SocketBuffer::new(&mut PROBE_TX.take()?[..]),
    );
    Some(Sockets {
        udp,
        tcp,
        probe,
        storage: &mut SOCKETS.take()?[..],
    })
}

/// Counters of the main loop.
#[derive(Default)]
struct LoopStats {
    polls: u64,
    poll_ticks: u64,
    /// Polls that moved at least one frame, and their ticks: the stack's cost per frame
    /// without the idle spinning in between.
    busy_polls: u64,
    busy_poll_ticks: u64,
    echoed: u32,
    echoed_bytes: u32,
}

/// Fails with a one-line report.
fn fail(uart: &mut impl SerialPort, what: core::fmt::Arguments<'_>) -> ! {
    let mut report = TextBuf::<128>::new();
    let _ = writeln!(report, "error {what}");
    send_report(uart, report.as_bytes());
    park()
}

/// Brings the network up, serves the checks and sends the report.
#[allow(unsafe_code, reason = "the runtime's Reset calls `main` by name")]
#[no_mangle]
pub extern "C" fn main() -> ! {
    let paint = StackPaint::below_sp(PAINT_DEPTH);
    let Some(mut board) = Board::take() else {
        park()
    };
    let mut clock = Clock::new(SysTickCounter::start(), Board::CORE_CLOCK_HZ);

    let mut seed = [0u8; 12];
    if board.entropy.fill(&mut seed).is_err() {
        fail(&mut board.uart, format_args!("entropy"));
    }
    let init_start = clock.ticks();
    let mut eth = match board.eth.init(None) {
        Ok(eth) => eth,
        Err(e) => fail(&mut board.uart, format_args!("lan9118 {e:?}")),
    };
    let init_ticks = clock.ticks() - init_start;
    let link_up = eth.link_up();
    let Some(mut sockets) = sockets() else {
        fail(&mut board.uart, format_args!("socket storage taken twice"))
    };
    let (tcp_seed, random) = seed.split_at(4);
    let mut check = Check::new(u32::from_le_bytes(tcp_seed.try_into().unwrap_or([1; 4])));
    if sockets.udp.bind(UDP_ECHO_PORT).is_err() {
        check.phase = Phase::Failed("udp bind");
    }
    let mut stack = NetStack::new(
        eth,
        &Ipv4Config::QEMU_USER,
        u64::from_le_bytes(random.try_into().unwrap_or([1; 8])),
        Some(RX_FIFO_FRAMES),
        sockets.storage,
        clock.now(),
    );
    let (Ok(udp_h), Ok(tcp_h), Ok(probe_h)) = (
        stack.add_socket(sockets.udp),
        stack.add_socket(sockets.tcp),
        stack.add_socket(sockets.probe),
    ) else {
        fail(&mut board.uart, format_args!("socket set full"))
    };
    if stack
        .connect(tcp_h, IpEndpoint::new(PEER.into(), PEER_PORT))
        .is_err()
    {
        check.phase = Phase::Failed("tcp connect");
    }

    let deadline = DEADLINE_S * u64::from(Board::CORE_CLOCK_HZ);
    let mut stats = LoopStats::default();
    let mut scratch = [0u8; UDP_MAX];
    let mut reported = false;
    loop {
        let (before, frames) = (clock.ticks(), stack.link_stats().frames());
        stack.poll(clock.now());
        let now = clock.ticks();
        stats.poll_ticks += now - before;
        stats.polls += 1;
        if stack.link_stats().frames() != frames {
            stats.busy_poll_ticks += now - before;
            stats.busy_polls += 1;
        }

        let (datagrams, bytes) = echo_udp(stack.socket::<udp::Socket>(udp_h), &mut scratch);
        stats.echoed += datagrams;
        stats.echoed_bytes += bytes;
        check.step(stack.socket::<tcp::Socket>(tcp_h), now);
        if check.phase == Phase::ProbeReady {
            let opened = stack.connect(probe_h, check.probe_target()).is_ok();
            check.probe_started(opened, now);
        }
        check.probe_step(stack.socket::<tcp::Socket>(probe_h), now);

        if reported {
            continue;
        }
        if now > deadline && !check.finished() {
            check.phase = Phase::Failed("deadline");
        }
        if check.finished() {
            let high_water = paint.high_water(rt::stack_top());
            // `main`'s own frame (the stack, sockets handles, report buffers): the rest of
            // the high-water mark is what polling and the checks need below it.
            let main_frame = rt::stack_top() - stack_paint::stack_pointer();
            let mut report = TextBuf::<2048>::new();
            write_report(&mut report, &mut stack, &check, &stats, init_ticks, link_up);
            let _ = writeln!(report, "stack_high_water {high_water}");
            let _ = writeln!(report, "stack_main_frame {main_frame}");
            let _ = writeln!(
                report,
                "stack_paint_exhausted {}",
                u8::from(paint.exhausted())
            );
            send_report(&mut board.uart, report.as_bytes());
            reported = true;
        }
    }
}

fn write_report(
    r: &mut impl core::fmt::Write,
    stack: &mut NetStack<'_, Lan9118Device>,
    check: &Check,
    stats: &LoopStats,
    init_ticks: u64,
    link_up: bool,
) {
    let mac = stack.device_mut().mac_address();
    let _ = writeln!(
        r,
        "mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    );
    let x = &check.xfer;
    let result = match check.phase {
        Phase::Failed(why) => why,
        _ => "ok",
    };
    let _ = writeln!(r, "link_up {}", u8::from(link_up));
    let _ = writeln!(r, "init_ticks {init_ticks}");
    let _ = writeln!(r, "tcp_result {result}");
    let _ = writeln!(r, "tcp_seed {}", check.seed);
    let _ = writeln!(r, "probe {}", check.probe.name());
    let link = stack.link_stats();
    let counters: [(&str, u64); 22] = [
        ("tcp_connected_at", x.connected_at),
        ("tcp_first_byte_at", x.first_byte_at),
        ("tcp_downloaded_at", x.downloaded_at),
        ("tcp_uploaded_at", x.uploaded_at),
        ("tcp_received", x.received.into()),
        ("tcp_mismatches", x.mismatches.into()),
        (
            "tcp_first_mismatch",
            x.first_mismatch.map_or(u64::MAX, u64::from),
        ),
        ("tcp_sent", x.sent.into()),
        ("udp_echoed", stats.echoed.into()),
        ("udp_echoed_bytes", stats.echoed_bytes.into()),
        ("rx_frames", link.rx_frames.into()),
        ("rx_bytes", link.rx_bytes),
        ("rx_errors", link.rx_errors.into()),
        ("tx_frames", link.tx_frames.into()),
        ("tx_bytes", link.tx_bytes),
        ("tx_errors", link.tx_errors.into()),
        ("polls", stats.polls),
        ("poll_ticks", stats.poll_ticks),
        ("busy_polls", stats.busy_polls),
        ("busy_poll_ticks", stats.busy_poll_ticks),
        (
            "size_net_stack",
            size_of::<NetStack<'static, Lan9118Device>>() as u64,
        ),
        ("size_link", size_of::<EthernetLink<Lan9118Device>>() as u64),
    ];
    for (name, value) in counters {
        let _ = writeln!(r, "{name} {value}");
    }
    let sizes = [
        ("size_tcp_socket", size_of::<tcp::Socket<'static>>()),
        ("size_udp_socket", size_of::<udp::Socket<'static>>()),
        (
            "size_socket_storage",
            size_of::<[SocketStorage<'static>; 3]>(),
        ),
        ("buf_tcp", TCP_RX_LEN + TCP_TX_LEN),
        ("buf_udp", 2 * UDP_SLOTS * UDP_MAX),
        ("buf_probe", 2 * PROBE_BUF_LEN),
    ];
    for (name, size) in sizes {
        let _ = writeln!(r, "{name} {size}");
    }
}

fn park() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    park()
}
