//! Records one emulated device sends over the network (the `net` demo OS's uplink to
//! `serve --data-tcp`), beside the same records on its UART, one run, the same board, and the
//! RAM the OS's network stack takes.
//!
//! - **records/s**: bursts of [`BURST`] records asked over the UART (`DataEmit`); each sealed
//!   record goes out on both links as the same frame. Per burst, the time from the request to
//!   the last record accepted by the coordinator's ingest (network) and to the last record
//!   frame read from the UART (the same-run reference); records/s = records / the sum of those
//!   times. A burst larger than what the uplink buffers (2 KiB pending + 4 KiB of socket send
//!   buffer, ~80 B a frame) loses records on the network: the OS seals a burst without polling
//!   the stack, so the bursts here fit; one large burst shows the loss.
//! - **RAM**: `.data` + `.bss` of `demo-os-net` against `demo-os`, and the stack high-water of
//!   the run (the stack painted from the host before reset, read back over QMP: the deepest of
//!   `bootloader-net`'s boot checks — it starts no network with a valid OS — and the OS with
//!   its interface on the stack; both use the top of SRAM).
//!
//! `cargo bench -p flashgate-tests --bench network_data` (firmware built by `cargo xtask
//! firmware`; `--profile dev` runs it without a release build of the host side: the figures
//! are the emulated device's, the host only reads).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a bench: a panic is how it reports a failure"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashgate_emulator::StartOptions;
use flashgate_protocol::uart::host::HostLink;
use flashgate_protocol::uart::{MsgType, Request};
use flashgate_tests::net_rig::{NetSetup, PaintedStack, PAINT_LEN};
use flashgate_tests::{firmware_dir, firmware_size};

const T: Duration = Duration::from_secs(30);
/// Records per request: their frames fit the uplink's buffers.
const BURST: u8 = 40;
const BURSTS: usize = 25;
fn demo_os_net() -> Vec<u8> {
    std::fs::read(firmware_dir().join("demo-os-net.bin"))
        .expect("demo-os-net.bin: build the firmware first (`cargo xtask firmware`)")
}

/// When each record frame was read from the UART (a thread reads the whole run).
type Arrivals = Arc<Mutex<Vec<Instant>>>;

fn read_uart(stream: std::net::TcpStream) -> Arrivals {
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    std::thread::spawn(move || {
        let mut link = HostLink::new(stream);
        loop {
            match link.receive(Duration::from_secs(60)) {
                Ok(frame) if frame.msg_type() == MsgType::DataRecord => {
                    seen.lock().unwrap().push(Instant::now());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    arrivals
}

/// Waits until `n` records in all came on the UART (or `T` passed); when the last came.
async fn uart_reaches(arrivals: &Arrivals, n: usize) -> Option<Instant> {
    let deadline = Instant::now() + T;
    loop {
        if let Some(at) = arrivals.lock().unwrap().get(n.wrapping_sub(1)) {
            return Some(*at);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the ingest accepted `target` records in all (or `T` passed); the count and
/// when it was reached.
async fn ingest_reaches(s: &NetSetup, target: u64) -> (u64, Instant) {
    let deadline = Instant::now() + T;
    loop {
        let accepted = s.tc.data.stats().accepted;
        if accepted >= target || Instant::now() > deadline {
            return (accepted, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scratch = tempfile::tempdir().unwrap();
    let paint = PaintedStack::new(scratch.path());
    let mut s = NetSetup::new_with(Some((Some(demo_os_net()), 1))).await;
    s.power_on_with(StartOptions {
        extra_args: paint.qemu_args(),
        ..StartOptions::default()
    });
    let stream = std::net::TcpStream::connect(s.tb.board.serial_addr().unwrap()).unwrap();
    stream.set_nodelay(true).unwrap();
    let arrivals = read_uart(stream.try_clone().unwrap());
    let mut link = HostLink::new(stream);
    // The boot record over the network: the connection is up.
    let (boot, _) = ingest_reaches(&s, 1).await;
    assert_eq!(boot, 1, "the boot record arrived over the network");
    uart_reaches(&arrivals, 1).await.unwrap();

    let (mut net_time, mut uart_time) = (Duration::ZERO, Duration::ZERO);
    let (mut net_records, mut uart_count) = (0u64, 0u64);
    let mut accepted = s.tc.data.stats().accepted;
    for _ in 0..BURSTS {
        let start = Instant::now();
        link.send(&Request::DataEmit { count: BURST }).unwrap();
        let want_uart = 1 + (uart_count as usize) + usize::from(BURST);
        let ((now_accepted, net_done), uart_done) = tokio::join!(
            ingest_reaches(&s, accepted + u64::from(BURST)),
            uart_reaches(&arrivals, want_uart)
        );
        net_records += now_accepted - accepted;
        accepted = now_accepted;
        uart_count = arrivals.lock().unwrap().len() as u64 - 1;
        net_time += net_done - start;
        uart_time += uart_done.expect("the burst on the UART") - start;
    }
    // One burst larger than the uplink's buffers: what the network loses.
    let big = 200u8;
    link.send(&Request::DataEmit { count: big }).unwrap();
    uart_reaches(&arrivals, 1 + uart_count as usize + usize::from(big)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let big_net = s.tc.data.stats().accepted - accepted;

    // The stack high-water of the whole run.
    let high_water = paint.high_water(&s);
    s.tb.board.power_off().unwrap();

    let (text_net, data_net, bss_net) = firmware_size("demo-os-net").unwrap();
    let (text_plain, data_plain, bss_plain) = firmware_size("demo-os").unwrap();
    let sent = u64::from(BURST) * BURSTS as u64;
    let net_rate = net_records as f64 / net_time.as_secs_f64();
    let uart_rate = uart_count as f64 / uart_time.as_secs_f64();
    let stats = s.tc.data.stats();
    println!("== records from one emulated device (demo-os-net, v2 records of ~55 B bodies, ~85 B frames), {BURSTS} bursts of {BURST}, one run, wall clock");
    println!(
        "  network (TCP to serve --data-tcp, accepted by the ingest): {net_records} of {sent} records, {net_rate:.0} records/s ({net_time:.2?} request..last accepted, summed)"
    );
    println!(
        "  reference, UART (the same frames, read by the host): {uart_count} of {sent} records, {uart_rate:.0} records/s ({uart_time:.2?} request..last read, summed)"
    );
    println!(
        "  network/UART: {:.2}x; one burst of {big} (16 KB of frames, past the uplink's 6 KiB of buffers): {big_net} reached the ingest; refusals {:?}",
        net_rate / uart_rate,
        stats.rejected
    );
    println!(
        "  demo OS RAM for the network: {} B static (.data+.bss {} B with net, {} B without); stack high-water of the run {high_water} B (painted {PAINT_LEN} B; bootloader-net boot checks, then the OS); flash .text {text_net} B with net, {text_plain} B without (+{} B)",
        (data_net + bss_net) - (data_plain + bss_plain),
        data_net + bss_net,
        data_plain + bss_plain,
        text_net - text_plain
    );
    println!("  goal: none set by the issue (\"records/s a device can send\"); reference: the bootloader-net figures of `--bench network_update` (9,560 B static, 26,392 B stack high-water during a download)");
}
