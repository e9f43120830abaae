//! [`TestBay`]: the station's [`EmulatedFixture`] (fresh QEMU boards, power-cycled after the
//! lock) with test controls around it: a [`LinkFault`] for the n-th board, and the boards kept
//! in a temporary directory to inspect once the flow is done. The station drives it through the
//! same `TargetFixture` trait as a factory bay.

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flashgate_emulator::qmp::QmpConnection;
use flashgate_emulator::{BoardFiles, StartOptions};
use flashgate_station::device_link::DeviceLink;
use flashgate_station::fixture::{BoxedProbe, EmulatedFixture, FixtureError, TargetFixture};
use flashgate_station::probe::LinkTap;

use crate::faults::{FaultyProbe, LinkFault, PowerCut};
use crate::uart_tap::UartTap;

/// A bay of emulated boards for tests.
pub struct TestBay {
    inner: EmulatedFixture,
    faults: HashMap<usize, LinkFault>,
    made: usize,
    dir: Option<tempfile::TempDir>,
    uart_tap: Option<Arc<UartTap>>,
}

impl TestBay {
    /// A bay named `name` whose boards live in a fresh temporary directory.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut bay = Self::in_dir(name, dir.path());
        bay.dir = Some(dir);
        bay
    }

    /// A bay whose boards live under `dir`.
    pub fn in_dir(name: &str, dir: impl Into<PathBuf>) -> Self {
        Self {
            inner: EmulatedFixture::new(name, dir),
            faults: HashMap::new(),
            made: 0,
            dir: None,
            uart_tap: None,
        }
    }

    /// Injects `fault` into the link of the `target`-th board (0-based).
    pub fn with_fault(mut self, target: usize, fault: LinkFault) -> Self {
        self.faults.insert(target, fault);
        self
    }

    /// Starts the boards with `options`.
    pub fn with_options(mut self, options: StartOptions) -> Self {
        self.inner = self.inner.with_options(options);
        self
    }

    /// Records every board's whole GDB link.
    pub fn with_link_tap(mut self, tap: Arc<dyn LinkTap>) -> Self {
        self.inner = self.inner.with_link_tap(tap);
        self
    }

    /// Puts `tap` between the station and every board's UART (records it; may cut the power).
    pub fn with_uart_tap(mut self, tap: Arc<UartTap>) -> Self {
        self.uart_tap = Some(tap);
        self
    }

    /// The files of the `n`-th board (powered off once the flow detached it).
    pub fn board_files(&self, n: usize) -> BoardFiles {
        BoardFiles::new(self.inner.board_dir(n))
    }

    /// The temporary directory the boards live in (kept alive by the caller from now on).
    pub fn into_dir(mut self) -> Option<tempfile::TempDir> {
        self.inner.detach();
        self.dir.take()
    }

    /// The `n`-th board's directory.
    pub fn board_dir(&self, n: usize) -> PathBuf {
        self.inner.board_dir(n)
    }

    /// Cuts the current board's power from another thread: QMP `quit`, no flash saved.
    fn power_cut(&mut self) -> Option<PowerCut> {
        let qmp = self.inner.board()?.qmp_addr()?;
        Some(Box::new(move || {
            if let Ok(mut conn) = QmpConnection::connect(qmp, Duration::from_secs(5)) {
                // QEMU may close the socket before it answers `quit`.
                let _ = conn.execute("quit", None);
            }
            // Give QEMU the moment it takes to close its gdbstub.
            std::thread::sleep(Duration::from_millis(200));
        }))
    }
}

impl TargetFixture for TestBay {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn attach_next(&mut self, timeout: Duration) -> Result<BoxedProbe, FixtureError> {
        let n = self.made;
        self.made += 1;
        let probe = self.inner.attach_next(timeout)?;
        Ok(match self.faults.get(&n).copied() {
            Some(fault) => {
                let cut = self.power_cut();
                Box::new(FaultyProbe::new(probe, fault, cut))
            }
            None => probe,
        })
    }

    fn restart_for_hello(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<DeviceLink<TcpStream>>, FixtureError> {
        let Some(tap) = self.uart_tap.clone() else {
            return self.inner.restart_for_hello(timeout);
        };
        // The emulated fixture's restart, with the link through the tap.
        let reset = |e: &dyn std::fmt::Display| FixtureError::Reset(e.to_string());
        let board = self
            .inner
            .board()
            .ok_or_else(|| reset(&"no board in the fixture"))?;
        board.power_cycle().map_err(|e| reset(&e))?;
        let uart = board
            .serial_addr()
            .ok_or_else(|| reset(&"the board has no UART after the power cycle"))?;
        let relay = tap.relay(uart, board.qmp_addr());
        let link = DeviceLink::connect_tcp(relay, timeout).map_err(|e| reset(&e))?;
        board.resume().map_err(|e| reset(&e))?;
        Ok(Some(link))
    }

    fn detach(&mut self) {
        self.inner.detach();
    }
}
