//! A 256 KiB OS update fetched by the bootloader over the network, against the same update
//! pushed over the UART, on the same board (`bootloader-net`, which serves both links), one
//! run, QEMU `-icount shift=0`:
//!
//! - **bytes**: over the network, every Ethernet frame either way (a frame peer on the
//!   board's hub sees them all) and the TCP payload (the proxy in front of the gateway); over
//!   the UART, the bytes of the frames either way;
//! - **time**: emulated instructions from the bootloader's first store into the staging slot's
//!   chunk marks (the erase at `begin`) to the mark of the last chunk (QEMU instruction-count
//!   plugin in measuring mode), and host wall time from `begin` to `finish`;
//! - **RAM** the network stack takes in the bootloader: its static buffers (`.data` + `.bss`
//!   of `bootloader-net` against `bootloader`) and the stack high-water of the network run
//!   (the stack painted from the host before reset through QEMU's loader device, read back
//!   over QMP).
//!
//! `cargo bench -p flashgate-tests --bench network_update` (firmware built by `cargo xtask
//! firmware`).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a bench: a panic is how it reports a failure"
)]

use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_emulator::cut::InstructionCut;
use flashgate_emulator::{NetworkOptions, StartOptions};
use flashgate_proto::v1;
use flashgate_protocol::layout::{IMAGE_HEADER_SPACE, STAGING_SLOT_ADDR};
use flashgate_protocol::uart::host::{HostLink, InstallOutcome, Transport};
use flashgate_protocol::update::package::CHUNK_SIZE;
use flashgate_tests::firmware_size;
use flashgate_tests::net_rig::{NetSetup, PaintedStack, PAINT_LEN};

const BODY: usize = 256 * 1024;
const T: Duration = Duration::from_secs(60);
/// The staging slot's chunk marks (`update::session`: one byte per chunk at +256).
const MARKS: std::ops::Range<u32> = STAGING_SLOT_ADDR + 256..STAGING_SLOT_ADDR + IMAGE_HEADER_SPACE;
/// A transport that counts the bytes either way.
struct Counting {
    inner: TcpStream,
    read: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Transport for Counting {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.inner.set_read_timeout(Some(timeout))
    }
}

/// Counts every frame the board's hub carries (the frame peer sees both directions).
fn frame_counter() -> (SocketAddrV4, Arc<(AtomicU64, AtomicU64)>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let std::net::SocketAddr::V4(addr) = socket.local_addr().unwrap() else {
        unreachable!("bound on IPv4")
    };
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let c = counts.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok(n) = socket.recv(&mut buf) {
            c.0.fetch_add(1, Ordering::SeqCst);
            c.1.fetch_add(n as u64, Ordering::SeqCst);
        }
    });
    (addr, counts)
}

/// Instructions from the first store into the chunk marks to the last one.
fn transfer_instructions(s: &NetSetup) -> u64 {
    let report = s.tb.board.files().cut_report().unwrap();
    let stores = &report.arm_stores;
    match (stores.first(), stores.last()) {
        (Some(first), Some(last)) => last.0 - first.0,
        _ => panic!("no store into the chunk marks: {report:?}"),
    }
}

/// Options of a measured run: icount, the mark-store log, the stack painted.
fn measured(paint: &PaintedStack) -> StartOptions {
    StartOptions {
        icount: true,
        instruction_cut: Some(InstructionCut {
            log_arm_stores: true,
            ..InstructionCut::measure(MARKS)
        }),
        extra_args: paint.qemu_args(),
        ..StartOptions::default()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scratch = tempfile::tempdir().unwrap();
    let paint = PaintedStack::new(scratch.path());
    let mut s = NetSetup::new(None).await;
    let serial = s.tb.uid.0;
    // The demo OS padded to 256 KiB: the same OS, a 256 KiB body to move.
    let mut body = s.fw.demo_os.clone();
    assert!(body.len() <= BODY);
    body.resize(BODY, 0);
    let chunks = BODY.div_ceil(CHUNK_SIZE as usize);

    // Over the network: the board has no OS and fetches v2 itself.
    s.publish_body(&body, 2, vec![serial.to_vec()]).await;
    let (peer, frames) = frame_counter();
    s.power_on_with(StartOptions {
        network: Some(NetworkOptions {
            tcp_forwards: Vec::new(),
            frame_peer: Some(peer),
        }),
        ..measured(&paint)
    });
    s.wait_for_status("v2 over the network", |st| st.os_version == 2)
        .await;
    let (to_device, to_gateway, sent) = s.proxy.carried.snapshot();
    let wall_net = {
        let t = s.proxy.carried.transfer.lock().unwrap();
        t.1.unwrap() - t.0.unwrap()
    };
    let (net_frames, net_frame_bytes) = (
        frames.0.load(Ordering::SeqCst),
        frames.1.load(Ordering::SeqCst),
    );
    let stack = paint.high_water(&s);
    s.tb.board.power_off().unwrap();
    let instr_net = transfer_instructions(&s);
    assert_eq!(sent, chunks as u64, "every chunk once");

    // Over the UART: v3 to the same board (now running v2), no network forward.
    s.publish_body(&body, 3, vec![serial.to_vec()]).await;
    let dir = s.tb.board.dir().to_path_buf();
    s.tb.board = flashgate_emulator::EmulatedBoard::start(dir, measured(&paint)).unwrap();
    let (read, written) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stream = TcpStream::connect(s.tb.board.serial_addr().unwrap()).unwrap();
    stream.set_nodelay(true).unwrap();
    s.tb.board.resume().unwrap();
    let mut link = HostLink::new(Counting {
        inner: stream,
        read: read.clone(),
        written: written.clone(),
    });
    let package = s
        .update_client()
        .await
        .get_update_package(s.tc.operator_request(v1::GetUpdatePackageRequest {
            product_id: 7,
            serial: serial.to_vec(),
        }))
        .await
        .unwrap()
        .into_inner();
    let (wall_uart, installed) = tokio::task::block_in_place(|| {
        link.enter_update(T).unwrap();
        read.store(0, Ordering::SeqCst);
        written.store(0, Ordering::SeqCst);
        let start = Instant::now();
        let ready = link.begin_update(&package.envelope, T).unwrap();
        for (i, chunk) in package.chunks.iter().enumerate().skip(ready.next as usize) {
            link.send_chunk(i as u32, chunk, T).unwrap();
        }
        link.finish_update(T).unwrap();
        let wall = start.elapsed();
        (wall, link.install(None, T).unwrap())
    });
    let (uart_rx, uart_tx) = (read.load(Ordering::SeqCst), written.load(Ordering::SeqCst));
    assert_eq!(installed, InstallOutcome::Installed { version: 3 });
    s.tb.board.power_off().unwrap();
    let instr_uart = transfer_instructions(&s);

    let (_, data_net, bss_net) = firmware_size("bootloader-net").unwrap();
    let (_, data_plain, bss_plain) = firmware_size("bootloader").unwrap();
    let (text_net, text_plain) = (
        firmware_size("bootloader-net").unwrap().0,
        firmware_size("bootloader").unwrap().0,
    );
    let statics = (data_net + bss_net) - (data_plain + bss_plain);

    println!("== a 256 KiB OS update ({chunks} chunks of {CHUNK_SIZE} B), the same board (bootloader-net), QEMU -icount shift=0, one run");
    println!(
        "  network (TCP to the device gateway, the whole session: hello, package, install, receipt): {net_frames} Ethernet frames, {net_frame_bytes} B on the wire; TCP payload {to_device} B to the device + {to_gateway} B back; {} instr begin..last chunk; wall {wall_net:.2?} begin..finish",
        instr_net
    );
    println!(
        "  reference, UART (the field tool's frames, begin..install): {} B to the device + {} B back; {} instr begin..last chunk; wall {wall_uart:.2?} begin..finish",
        uart_tx, uart_rx, instr_uart
    );
    println!(
        "  network/UART: {:.3}x bytes to the device (TCP payload), {:.3}x on the wire (Ethernet), {:.2}x instructions, {:.2}x wall",
        to_device as f64 / uart_tx as f64,
        net_frame_bytes as f64 / uart_tx as f64,
        instr_net as f64 / instr_uart as f64,
        wall_net.as_secs_f64() / wall_uart.as_secs_f64()
    );
    println!(
        "  bootloader RAM for the network: {statics} B static (.data+.bss {} B with net, {} B without), stack high-water of the network run {stack} B (painted {PAINT_LEN} B)",
        data_net + bss_net,
        data_plain + bss_plain
    );
    println!(
        "  bootloader flash: {text_net} B .text with net, {text_plain} B without (+{} B); slot {} B",
        text_net - text_plain,
        flashgate_protocol::layout::BOOTLOADER_MAX
    );
}
