//! Where targets come from. Each probe actor owns one fixture: the place one board at a time is
//! attached to one debug probe.
//!
//! - [`EmulatedFixture`] makes a fresh blank QEMU board for every target (models the operator
//!   placing the next board) and power-cycles it after the lock so its bootloader runs.
//! - [`GdbFixture`] is a GDB server at a fixed address (OpenOCD, a probe's gdb server) plus an
//!   optional UART; the fixture's own power-on reset restarts a locked board.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashgate_emulator::{EmulatedBoard, StartOptions};

use crate::device_link::DeviceLink;
use crate::probe::{GdbProbe, GdbProbeOptions, LinkTap, Probe};

/// A debug link to the target in the fixture.
pub type BoxedProbe = Box<dyn Probe + Send>;

/// Why a fixture could not give or reset a target.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// No target (board launcher failed, GDB server not reachable).
    #[error("{0}")]
    NoTarget(String),
    /// The target did not come back after the reset.
    #[error("target did not restart after the lock: {0}")]
    Reset(String),
}

/// Fault injection for tests and demos of the station's failure handling.
#[derive(Clone, Debug)]
pub enum FixtureFault {
    /// Kill the QEMU of the `target`-th target made by this fixture (0-based) once `after_bytes`
    /// bytes went over its debug link: models a board yanked mid-transfer.
    KillTargetMidTransfer {
        /// Which target.
        target: usize,
        /// After how many bytes sent.
        after_bytes: usize,
    },
}

/// One place where boards are attached to a probe.
pub trait TargetFixture: Send {
    /// A short name for progress lines.
    fn name(&self) -> &str;
    /// Waits for the next target and opens its debug link.
    fn attach_next(&mut self, timeout: Duration) -> Result<BoxedProbe, FixtureError>;
    /// Restarts the (now locked) target and returns a UART link to its running bootloader, or
    /// `None` when this fixture has no UART (the hello cannot be checked).
    fn restart_for_hello(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<DeviceLink<TcpStream>>, FixtureError>;
    /// The target is finished (the operator takes it out).
    fn detach(&mut self);
}

/// Fresh QEMU boards, one per target, in `dir`.
pub struct EmulatedFixture {
    name: String,
    dir: PathBuf,
    options: StartOptions,
    made: usize,
    board: Arc<Mutex<Option<EmulatedBoard>>>,
    fault: Option<FixtureFault>,
    keep_boards: bool,
}

impl EmulatedFixture {
    /// Boards are created under `dir/<name>-<n>`.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            dir: dir.into(),
            options: StartOptions::default(),
            made: 0,
            board: Arc::new(Mutex::new(None)),
            fault: None,
            keep_boards: true,
        }
    }

    /// Injects a fault.
    pub fn with_fault(mut self, fault: FixtureFault) -> Self {
        self.fault = Some(fault);
        self
    }

    fn with_board<T>(&self, f: impl FnOnce(&mut EmulatedBoard) -> T) -> Option<T> {
        let mut guard = self.board.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().map(f)
    }
}

/// Kills the board once enough bytes were sent.
struct KillAfter {
    board: Arc<Mutex<Option<EmulatedBoard>>>,
    after: usize,
    sent: AtomicUsize,
}

impl LinkTap for KillAfter {
    fn sent(&self, bytes: &[u8]) {
        let before = self.sent.fetch_add(bytes.len(), Ordering::Relaxed);
        if before < self.after && before + bytes.len() >= self.after {
            tracing::warn!("fault injection: killing the target mid-transfer");
            if let Some(board) = self
                .board
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                board.kill();
            }
        }
    }
    fn received(&self, _: &[u8]) {}
}

impl TargetFixture for EmulatedFixture {
    fn name(&self) -> &str {
        &self.name
    }

    fn attach_next(&mut self, timeout: Duration) -> Result<BoxedProbe, FixtureError> {
        self.detach();
        let index = self.made;
        self.made += 1;
        let dir = self.dir.join(format!("{}-{index}", self.name));
        let fail = |e: &dyn std::fmt::Display| {
            FixtureError::NoTarget(format!("board launcher ({}): {e}", dir.display()))
        };
        let _ = std::fs::remove_dir_all(&dir);
        EmulatedBoard::create(&dir, None).map_err(|e| fail(&e))?;
        let board = EmulatedBoard::start(&dir, self.options.clone()).map_err(|e| fail(&e))?;
        let addr = board
            .gdb_addr()
            .ok_or_else(|| fail(&"the new board offers no gdb port"))?;
        *self.board.lock().unwrap_or_else(|p| p.into_inner()) = Some(board);
        let tap: Option<Arc<dyn LinkTap>> = match &self.fault {
            Some(FixtureFault::KillTargetMidTransfer {
                target,
                after_bytes,
            }) if *target == index => Some(Arc::new(KillAfter {
                board: self.board.clone(),
                after: *after_bytes,
                sent: AtomicUsize::new(0),
            })),
            _ => None,
        };
        let probe = GdbProbe::connect_with(
            addr,
            GdbProbeOptions {
                timeout,
                tap,
                ..GdbProbeOptions::default()
            },
        )
        .map_err(|e| FixtureError::NoTarget(format!("gdb server {addr}: {e}")))?;
        Ok(Box::new(probe))
    }

    fn restart_for_hello(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<DeviceLink<TcpStream>>, FixtureError> {
        let reset = |e: &dyn std::fmt::Display| FixtureError::Reset(e.to_string());
        self.with_board(|board| {
            // A locked emulated board has no gdbstub: the reset is a power cycle.
            board.power_cycle().map_err(|e| reset(&e))?;
            let uart = board
                .serial_addr()
                .ok_or_else(|| reset(&"the board has no UART after the power cycle"))?;
            let link = DeviceLink::connect_tcp(uart, timeout).map_err(|e| reset(&e))?;
            board.resume().map_err(|e| reset(&e))?;
            Ok(Some(link))
        })
        .unwrap_or_else(|| Err(reset(&"no board in the fixture")))
    }

    fn detach(&mut self) {
        let board = self.board.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut board) = board {
            if self.keep_boards && board.is_powered() {
                // Save the flash so the board can be inspected (or booted) later.
                if board.power_off().is_err() {
                    board.kill();
                }
            } else {
                board.kill();
            }
        }
    }
}

impl Drop for EmulatedFixture {
    fn drop(&mut self) {
        self.detach();
    }
}

/// A GDB server at a fixed address, optionally with the target's UART.
pub struct GdbFixture {
    name: String,
    gdb: SocketAddr,
    uart: Option<SocketAddr>,
}

impl GdbFixture {
    /// A fixture at `gdb` (and `uart`).
    pub fn new(name: impl Into<String>, gdb: SocketAddr, uart: Option<SocketAddr>) -> Self {
        Self {
            name: name.into(),
            gdb,
            uart,
        }
    }
}

impl TargetFixture for GdbFixture {
    fn name(&self) -> &str {
        &self.name
    }

    fn attach_next(&mut self, timeout: Duration) -> Result<BoxedProbe, FixtureError> {
        let deadline = Instant::now() + timeout;
        loop {
            match GdbProbe::connect_with(
                self.gdb,
                GdbProbeOptions {
                    timeout,
                    ..GdbProbeOptions::default()
                },
            ) {
                Ok(probe) => return Ok(Box::new(probe)),
                Err(e) if Instant::now() >= deadline => {
                    return Err(FixtureError::NoTarget(format!(
                        "no GDB server answers at {}: {e}. Is the probe plugged in and its gdb server running?",
                        self.gdb
                    )))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn restart_for_hello(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<DeviceLink<TcpStream>>, FixtureError> {
        let Some(uart) = self.uart else {
            return Ok(None);
        };
        // The locked port refuses the debugger: the fixture's power-on reset restarts the board.
        let link = DeviceLink::connect_tcp(uart, timeout)
            .map_err(|e| FixtureError::Reset(e.to_string()))?;
        Ok(Some(link))
    }

    fn detach(&mut self) {}
}
