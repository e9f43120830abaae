//! The RAM flash loader's stack high-water mark, measured from outside over the debug link:
//! [`StackGauge`] paints the loader's stack area right after the station wrote the loader, and
//! reads it back when the station ends the session (it removes its `host_yield` breakpoint), so
//! the loader carries no measuring code. [`GaugedBay`] puts one on every board of a
//! [`TestBay`].

use std::net::TcpStream;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashgate_protocol::layout::{LOADER_BASE, LOADER_STACK_TOP};
use flashgate_station::device_link::DeviceLink;
use flashgate_station::fixture::{BoxedProbe, FixtureError, TargetFixture};
use flashgate_station::probe::{BreakpointKind, Probe, ProbeResult};

use crate::bay::TestBay;

const PAINT: [u8; 4] = 0x5EA1_57ACu32.to_le_bytes();

/// The deepest stack use seen, in bytes below `LOADER_STACK_TOP` (shared with the bay).
pub type HighWater = Arc<Mutex<Option<u32>>>;

/// A probe that paints `stack` once the loader is written and measures it when the session
/// ends.
pub struct StackGauge {
    inner: BoxedProbe,
    stack: Range<u32>,
    high_water: HighWater,
}

impl StackGauge {
    /// Measures the stack in `[stack_bottom, LOADER_STACK_TOP)` (`stack_bottom`: the end of
    /// the loader's `.bss`).
    pub fn new(inner: BoxedProbe, stack_bottom: u32, high_water: HighWater) -> Self {
        Self {
            inner,
            stack: (stack_bottom + 3) & !3..LOADER_STACK_TOP,
            high_water,
        }
    }

    fn paint(&mut self) -> ProbeResult<()> {
        let len = (self.stack.end - self.stack.start) as usize;
        let paint: Vec<u8> = PAINT.iter().copied().cycle().take(len).collect();
        self.inner.write_memory(self.stack.start, &paint)
    }

    fn measure(&mut self) -> ProbeResult<()> {
        let mut stack = vec![0u8; (self.stack.end - self.stack.start) as usize];
        self.inner.read_memory(self.stack.start, &mut stack)?;
        let untouched = stack.chunks(4).take_while(|w| *w == PAINT).count() as u32 * 4;
        let used = self.stack.end - self.stack.start - untouched;
        let mut deepest = self.high_water.lock().expect("not poisoned");
        *deepest = Some(deepest.map_or(used, |d| d.max(used)));
        Ok(())
    }
}

impl Probe for StackGauge {
    crate::forward_probe!(
        halt,
        resume,
        wait_for_halt,
        step,
        reset,
        read_memory,
        read_registers,
        write_registers,
        set_breakpoint,
        resume_from_breakpoint,
        monitor,
        read_memory_while_running,
    );
    fn write_memory(&mut self, addr: u32, data: &[u8]) -> ProbeResult<()> {
        self.inner.write_memory(addr, data)?;
        if addr == LOADER_BASE {
            self.paint()?;
        }
        Ok(())
    }
    fn clear_breakpoint(&mut self, addr: u32, kind: BreakpointKind) -> ProbeResult<()> {
        // The station's last act on a session: the loader ran every frame it will run.
        self.measure()?;
        self.inner.clear_breakpoint(addr, kind)
    }
}

/// A [`TestBay`] whose boards' loader stacks are measured.
pub struct GaugedBay {
    bay: TestBay,
    stack_bottom: u32,
    high_water: HighWater,
}

impl GaugedBay {
    /// Wraps `bay`; `stack_bottom` is the end of the loader's `.bss`.
    pub fn new(bay: TestBay, stack_bottom: u32) -> Self {
        Self {
            bay,
            stack_bottom,
            high_water: HighWater::default(),
        }
    }

    /// The deepest stack use of any session so far (bytes below `LOADER_STACK_TOP`).
    pub fn high_water(&self) -> Option<u32> {
        *self.high_water.lock().expect("not poisoned")
    }
}

impl TargetFixture for GaugedBay {
    fn name(&self) -> &str {
        self.bay.name()
    }
    fn attach_next(&mut self, timeout: Duration) -> Result<BoxedProbe, FixtureError> {
        let probe = self.bay.attach_next(timeout)?;
        Ok(Box::new(StackGauge::new(
            probe,
            self.stack_bottom,
            self.high_water.clone(),
        )))
    }
    fn restart_for_hello(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<DeviceLink<TcpStream>>, FixtureError> {
        self.bay.restart_for_hello(timeout)
    }
    fn detach(&mut self) {
        self.bay.detach()
    }
}
