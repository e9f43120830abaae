//! [`UartTap`]: a loopback relay between the station and an emulated board's UART, put in by
//! [`TestBay::with_uart_tap`](crate::bay::TestBay::with_uart_tap). It records both directions
//! (the factory's view of the board link) and can cut the board's power once the station has
//! sent a given number of bytes: QMP `stop` freezes the CPU at that instant and the relay drops
//! the link, so the fixture's next restart saves exactly the flash of the cut.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashgate_emulator::qmp::QmpConnection;
use flashgate_station::probe::{LinkTap, TrafficRecorder};

/// Records a board's UART and cuts its power on demand (see the module documentation).
#[derive(Debug, Default)]
pub struct UartTap {
    /// Everything that crossed the UART: `sent` is station → board.
    pub recorder: TrafficRecorder,
    /// Cut the power when the station has sent this many bytes on one connection (0: never).
    cut_after: AtomicUsize,
    /// Power cuts done.
    cuts: AtomicUsize,
    open: Mutex<Vec<TcpStream>>,
}

impl UartTap {
    /// A tap that only records.
    pub fn recording() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A tap that cuts the power once, when the station has sent `bytes` bytes on a link.
    pub fn cutting_after(bytes: usize) -> Arc<Self> {
        let tap = Self::default();
        tap.cut_after.store(bytes, Ordering::SeqCst);
        Arc::new(tap)
    }

    /// Power cuts done so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }

    /// Relays a fresh local port to the board's UART at `board`; returns where to connect.
    pub(crate) fn relay(
        self: &Arc<Self>,
        board: SocketAddr,
        qmp: Option<SocketAddr>,
    ) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the UART relay");
        let addr = listener.local_addr().expect("relay address");
        let tap = self.clone();
        std::thread::spawn(move || {
            let Ok((station, _)) = listener.accept() else {
                return;
            };
            let Ok(device) = TcpStream::connect(board) else {
                return;
            };
            let _ = station.set_nodelay(true);
            let _ = device.set_nodelay(true);
            {
                let mut open = tap.open.lock().unwrap();
                open.push(station.try_clone().unwrap());
                open.push(device.try_clone().unwrap());
            }
            let (from_device, to_station) =
                (device.try_clone().unwrap(), station.try_clone().unwrap());
            let up = tap.clone();
            std::thread::spawn(move || up.pump(from_device, to_station, false, None));
            tap.pump(station, device, true, qmp);
        });
        addr
    }

    fn pump(
        &self,
        mut from: TcpStream,
        mut to: TcpStream,
        from_station: bool,
        qmp: Option<SocketAddr>,
    ) {
        let mut buf = [0u8; 4096];
        let mut sent = 0usize;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let limit = self.cut_after.load(Ordering::SeqCst);
            let take = if from_station && limit > 0 && sent + n >= limit {
                limit - sent
            } else {
                n
            };
            if from_station {
                self.recorder.sent(&buf[..take]);
            } else {
                self.recorder.received(&buf[..take]);
            }
            if to.write_all(&buf[..take]).is_err() {
                break;
            }
            sent += take;
            if take < n || (from_station && limit > 0 && sent >= limit) {
                self.cut(qmp);
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    }

    /// The power cut: the CPU stops now; the link goes down with it. Once only.
    fn cut(&self, qmp: Option<SocketAddr>) {
        self.cut_after.store(0, Ordering::SeqCst);
        if let Some(qmp) = qmp {
            if let Ok(mut conn) = QmpConnection::connect(qmp, Duration::from_secs(5)) {
                let _ = conn.execute("stop", None);
            }
        }
        self.cuts.fetch_add(1, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}
