//! The board's Ethernet on real QEMU with the real `net-check` firmware (built by
//! `cargo xtask firmware`): UDP echo through the frame link, 256 KiB each way over a guest
//! TCP forward, and a connection to an unforwarded host port that must be refused. Every
//! socket here is on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test binary: a panic is how it reports a failure"
)]

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use flashgate_emulator::{EmulatedBoard, NetworkOptions, StartOptions, TcpForward};
use flashgate_protocol::uart::{FrameDecoder, MsgType};

/// `device-fw/net-check`'s constants.
const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 100), 9000);
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const UDP_ECHO_PORT: u16 = 7;
const TRANSFER_LEN: usize = 256 * 1024;
/// SysTick under `-icount shift=0`: 25 MHz of virtual time, 40 instructions a tick.
const TICK_HZ: f64 = 25e6;
const INSTRUCTIONS_PER_TICK: u64 = 40;

/// The test's station on the frame link: its own Ethernet and IPv4 address.
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x32];
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 50);
const PEER_UDP_PORT: u16 = 40000;

const IO_TIMEOUT: Duration = Duration::from_secs(60);

fn firmware() -> Vec<u8> {
    let dir = std::env::var_os("FLASHGATE_FIRMWARE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/firmware"));
    let path = dir.join("net-check.bin");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the firmware first: `cargo xtask firmware`",
            path.display()
        )
    })
}

/// `net-check`'s byte stream: xorshift32 words, little-endian.
fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 4);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Internet checksum (RFC 1071) over `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&PEER_MAC);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv4/UDP datagram from the peer to the guest's echo port, in an Ethernet frame.
fn udp_frame(guest_mac: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let mut udp = Vec::new();
    udp.extend_from_slice(&PEER_UDP_PORT.to_be_bytes());
    udp.extend_from_slice(&UDP_ECHO_PORT.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let pseudo = [
        &PEER_IP.octets()[..],
        &GUEST_IP.octets(),
        &[0, 17],
        &udp_len.to_be_bytes(),
    ]
    .concat();
    let sum = checksum(&[&pseudo, &udp]);
    udp[6..8].copy_from_slice(&sum.to_be_bytes());

    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&PEER_IP.octets());
    ip.extend_from_slice(&GUEST_IP.octets());
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&udp);
    ethernet(guest_mac, 0x0800, &ip)
}

/// What a frame from the board is to the peer.
enum Seen {
    /// An ARP request for the peer's address; the reply to send.
    ArpRequest(Vec<u8>),
    /// A UDP datagram from the guest's echo port to the peer's port.
    Echo(Vec<u8>),
    Other,
}

fn classify(frame: &[u8], guest_mac: [u8; 6]) -> Seen {
    if frame.len() < 14 || frame[6..12] != guest_mac {
        return Seen::Other;
    }
    let payload = &frame[14..];
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0806
            if payload.len() >= 28
                && payload[6..8] == [0, 1]
                && payload[24..28] == PEER_IP.octets() =>
        {
            let mut reply = vec![0, 1, 8, 0, 6, 4, 0, 2];
            reply.extend_from_slice(&PEER_MAC);
            reply.extend_from_slice(&PEER_IP.octets());
            reply.extend_from_slice(&payload[8..18]); // the asker's MAC and IP
            Seen::ArpRequest(ethernet(guest_mac, 0x0806, &reply))
        }
        0x0800
            if payload.len() >= 28 && payload[9] == 17 && payload[16..20] == PEER_IP.octets() =>
        {
            let ihl = usize::from(payload[0] & 0x0F) * 4;
            let udp = &payload[ihl..];
            let ports = [
                &UDP_ECHO_PORT.to_be_bytes()[..],
                &PEER_UDP_PORT.to_be_bytes(),
            ]
            .concat();
            let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
            if udp[..4] == ports[..] && len >= 8 && len <= udp.len() {
                Seen::Echo(udp[8..len].to_vec())
            } else {
                Seen::Other
            }
        }
        _ => Seen::Other,
    }
}

/// Sends `payload` to the guest's echo port until it comes back (answering ARP meanwhile).
fn udp_echo(frames: &UdpSocket, board: SocketAddrV4, guest_mac: [u8; 6], payload: &[u8]) {
    let deadline = Instant::now() + IO_TIMEOUT;
    let request = udp_frame(guest_mac, payload);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        frames.send_to(&request, board).unwrap();
        let resend = Instant::now() + Duration::from_millis(500);
        while Instant::now() < resend {
            let Ok(n) = frames.recv(&mut buf) else {
                continue;
            };
            match classify(&buf[..n], guest_mac) {
                Seen::ArpRequest(reply) => {
                    frames.send_to(&reply, board).unwrap();
                }
                // A late echo of an earlier size is not this one: keep waiting.
                Seen::Echo(echo) if echo == payload => return,
                _ => {}
            }
        }
    }
    panic!(
        "no UDP echo of {} bytes within {IO_TIMEOUT:?}",
        payload.len()
    );
}

/// Reads UART frames until the check's report (`MsgType::BenchReport`) arrives; returns its `name value` lines.
fn read_report(mut serial: TcpStream) -> HashMap<String, String> {
    serial.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut decoder = FrameDecoder::new();
    let mut byte = [0u8];
    loop {
        serial
            .read_exact(&mut byte)
            .expect("the board sends its report");
        let Some(Ok(frame)) = decoder.push(byte[0]) else {
            continue;
        };
        if frame.msg_type() == Ok(MsgType::BenchReport) {
            let text = String::from_utf8_lossy(frame.payload()).into_owned();
            return text
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
    }
}

struct Outcome {
    report: HashMap<String, String>,
    upload_ok: bool,
    first_upload_mismatch: Option<usize>,
    probe_reached_host: bool,
}

impl Outcome {
    fn get(&self, name: &str) -> &str {
        self.report
            .get(name)
            .unwrap_or_else(|| panic!("report has no {name}: {:?}", self.report))
    }

    fn num(&self, name: &str) -> u64 {
        self.get(name)
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {}", self.get(name)))
    }
}

/// `FLASHGATE_NET_ICOUNT=1` runs the board under `-icount shift=0`, so that SysTick counts
/// instructions (for the per-frame cost). Board time then runs far slower than the host's
/// (the guest never idles), so ARP and TCP timers stretch and a run takes about a minute:
/// measurement only.
fn icount() -> bool {
    std::env::var_os("FLASHGATE_NET_ICOUNT").is_some()
}

/// Runs `net-check` on a fresh networked board; `corrupt_at` flips one downloaded byte.
fn run_net_check(corrupt_at: Option<usize>) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let uid = EmulatedBoard::create(dir.path(), None).unwrap();
    let files = flashgate_emulator::BoardFiles::new(dir.path());
    let mut flash = std::fs::read(files.flash_path()).unwrap();
    let fw = firmware();
    flash[..fw.len()].copy_from_slice(&fw);
    std::fs::write(files.flash_path(), flash).unwrap();

    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    probe.set_nonblocking(true).unwrap();
    let frames = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    frames
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let local = |addr: std::net::SocketAddr| match addr {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("{other} is not IPv4"),
    };
    let options = StartOptions {
        icount: icount(),
        network: Some(NetworkOptions {
            tcp_forwards: vec![TcpForward {
                guest: PEER,
                host: local(server.local_addr().unwrap()),
            }],
            frame_peer: Some(local(frames.local_addr().unwrap())),
        }),
        ..StartOptions::default()
    };
    let mut board = EmulatedBoard::start(dir.path(), options).unwrap();
    let serial = TcpStream::connect(board.serial_addr().unwrap()).unwrap();
    // QEMU connected the guest forward while starting.
    let (mut peer, _) = server.accept().unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let (report_tx, report_rx) = mpsc::channel();
    thread::spawn(move || report_tx.send(read_report(serial)));
    board.resume().unwrap();

    let board_frames = board.frame_addr().expect("started with a frame peer");
    for size in [1, 64, 512, 1472] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        udp_echo(&frames, board_frames, uid.mac_address(), &payload);
    }

    let mut request = [0u8; 12];
    peer.read_exact(&mut request).expect("the device's request");
    assert_eq!(&request[..4], b"FGNC");
    assert_eq!(
        u32::from_le_bytes(request[4..8].try_into().unwrap()) as usize,
        TRANSFER_LEN
    );
    let seed = u32::from_le_bytes(request[8..12].try_into().unwrap());
    let mut download = pattern(seed, TRANSFER_LEN);
    if let Some(at) = corrupt_at {
        download[at] ^= 0x01;
    }
    let probe_port = local(probe.local_addr().unwrap()).port();
    peer.write_all(&probe_port.to_le_bytes()).unwrap();
    peer.write_all(&download).unwrap();
    let mut upload = vec![0u8; TRANSFER_LEN];
    peer.read_exact(&mut upload).expect("the device's upload");
    let want = pattern(!seed, TRANSFER_LEN);

    let report = report_rx.recv_timeout(IO_TIMEOUT).expect("a report");
    let probe_reached_host = probe.accept().is_ok();
    board.kill();
    Outcome {
        report,
        upload_ok: upload == want,
        first_upload_mismatch: upload.iter().zip(&want).position(|(a, b)| a != b),
        probe_reached_host,
    }
}

#[test]
fn udp_echo_tcp_both_ways_and_nothing_else() {
    let run = run_net_check(None);
    assert_eq!(run.get("tcp_result"), "ok", "{:?}", run.report);
    assert_eq!(run.num("tcp_received"), TRANSFER_LEN as u64);
    assert_eq!(
        run.num("tcp_mismatches"),
        0,
        "the device saw other bytes than were sent"
    );
    assert_eq!(run.num("tcp_sent"), TRANSFER_LEN as u64);
    assert!(
        run.upload_ok,
        "upload differs from byte {:?}",
        run.first_upload_mismatch
    );
    assert!(run.num("udp_echoed") >= 4);
    assert_eq!(run.num("rx_errors"), 0);
    assert_eq!(run.num("tx_errors"), 0);
    assert_eq!(run.get("link_up"), "1");
    // Isolation: the guest reached no host port it was not given.
    assert_eq!(run.get("probe"), "refused");
    assert!(
        !run.probe_reached_host,
        "the guest connected to an unforwarded host port"
    );

    let ticks = |from: &str, to: &str| run.num(to) - run.num(from);
    let down = ticks("tcp_first_byte_at", "tcp_downloaded_at");
    let up = ticks("tcp_downloaded_at", "tcp_uploaded_at");
    let frames = run.num("rx_frames") + run.num("tx_frames");
    let busy = run.num("busy_poll_ticks");
    let kib_s = |t: u64| TRANSFER_LEN as f64 / 1024.0 / (t as f64 / TICK_HZ);
    // Under -icount SysTick counts instructions; otherwise it follows the host clock.
    let cost = if icount() {
        format!("{} instructions", busy * INSTRUCTIONS_PER_TICK / frames)
    } else {
        format!("{:.1} µs", busy as f64 / TICK_HZ * 1e6 / frames as f64)
    };
    println!(
        "net-check: {TRANSFER_LEN} B down in {down} ticks ({:.0} KiB/s), up in {up} ticks \
         ({:.0} KiB/s); {} rx + {} tx frames, {cost} per frame in busy polls; stack high-water \
         {} B (main's frame {} B); NetStack {} B, sockets {} (TCP) / {} (UDP) B, socket buffers {} B",
        kib_s(down),
        kib_s(up),
        run.num("rx_frames"),
        run.num("tx_frames"),
        run.num("stack_high_water"),
        run.num("stack_main_frame"),
        run.num("size_net_stack"),
        run.num("size_tcp_socket"),
        run.num("size_udp_socket"),
        run.num("buf_tcp") + run.num("buf_udp") + run.num("buf_probe"),
    );
}

#[test]
fn a_corrupted_byte_is_caught_by_the_device() {
    let run = run_net_check(Some(100_000));
    assert_eq!(run.num("tcp_mismatches"), 1, "{:?}", run.report);
    assert_eq!(run.num("tcp_first_mismatch"), 100_000);
}
