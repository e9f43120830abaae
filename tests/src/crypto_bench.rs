//! The `crypto-bench` firmware run under QEMU `-icount shift=0`: its one report frame, as
//! `name -> (SysTick ticks, stack bytes)` (1 tick = 40 instructions). Its figures are the
//! same-run references of the field-life and foundation benches.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flashgate_protocol::uart::host::{HostLink, Transport};
use flashgate_protocol::uart::MsgType;

use crate::firmware_dir;

const WAIT: Duration = Duration::from_secs(60);

/// `name -> (ticks, stack bytes)` from the crypto bench's report.
pub type Report = BTreeMap<String, (u64, u64)>;

/// Runs `crypto-bench.elf` under `-icount shift=0` and decodes its report frame.
pub fn crypto_bench() -> Report {
    let elf = firmware_dir().join("crypto-bench.elf");
    assert!(
        elf.exists(),
        "{} is missing: build the firmware with `cargo xtask firmware`",
        elf.display()
    );
    let mut child = Command::new("qemu-system-arm")
        .args(["-M", "mps2-an386", "-display", "none", "-monitor", "none"])
        .args(["-icount", "shift=0", "-serial", "stdio", "-kernel"])
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-arm runs (scripts/setup.sh installs it)");
    let stdout = child.stdout.take().expect("piped stdout");
    let report = HostLink::new(StdoutUart::spawn(stdout)).expect(MsgType::BenchReport, WAIT);
    let _ = child.kill();
    let _ = child.wait();
    let report = report.expect("crypto-bench sent its report frame within 60 s");
    let text = String::from_utf8_lossy(report.payload());
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_owned();
            Some((name, (f.next()?.parse().ok()?, f.next()?.parse().ok()?)))
        })
        .collect()
}

/// QEMU's stdout, which carries the crypto bench's UART: read on a thread, so that waiting
/// for the report can time out (a child's stdout has no read timeout). Output only.
struct StdoutUart {
    rx: mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
    at: usize,
    timeout: Duration,
}

impl StdoutUart {
    fn spawn(mut stdout: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self {
            rx,
            pending: Vec::new(),
            at: 0,
            timeout: WAIT,
        }
    }
}

impl Read for StdoutUart {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.pending.len() {
            self.pending = match self.rx.recv_timeout(self.timeout) {
                Ok(bytes) => bytes,
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(io::ErrorKind::TimedOut.into()),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(0),
            };
            self.at = 0;
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for StdoutUart {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the crypto bench takes no requests",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for StdoutUart {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }
}
