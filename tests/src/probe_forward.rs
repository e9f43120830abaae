//! [`forward_probe!`]: the `Probe` methods a test wrapper passes to its `inner` probe
//! unchanged, so a wrapper spells out only the ones it changes.

/// Emits `Probe` methods that call the same method of `self.inner`, for the names given.
#[macro_export]
macro_rules! forward_probe {
    ($($method:ident),* $(,)?) => { $( $crate::forward_probe!(@one $method); )* };
    (@one halt) => {
        fn halt(&mut self) -> flashgate_station::probe::ProbeResult<flashgate_station::probe::HaltReason> {
            self.inner.halt()
        }
    };
    (@one resume) => {
        fn resume(&mut self) -> flashgate_station::probe::ProbeResult<()> {
            self.inner.resume()
        }
    };
    (@one wait_for_halt) => {
        fn wait_for_halt(
            &mut self,
            timeout: std::time::Duration,
        ) -> flashgate_station::probe::ProbeResult<flashgate_station::probe::HaltReason> {
            self.inner.wait_for_halt(timeout)
        }
    };
    (@one step) => {
        fn step(&mut self) -> flashgate_station::probe::ProbeResult<flashgate_station::probe::HaltReason> {
            self.inner.step()
        }
    };
    (@one reset) => {
        fn reset(&mut self) -> flashgate_station::probe::ProbeResult<()> {
            self.inner.reset()
        }
    };
    (@one read_memory) => {
        fn read_memory(&mut self, addr: u32, buf: &mut [u8]) -> flashgate_station::probe::ProbeResult<()> {
            self.inner.read_memory(addr, buf)
        }
    };
    (@one read_registers) => {
        fn read_registers(
            &mut self,
        ) -> flashgate_station::probe::ProbeResult<flashgate_station::probe::CoreRegisters> {
            self.inner.read_registers()
        }
    };
    (@one write_registers) => {
        fn write_registers(
            &mut self,
            regs: &flashgate_station::probe::CoreRegisters,
        ) -> flashgate_station::probe::ProbeResult<()> {
            self.inner.write_registers(regs)
        }
    };
    (@one set_breakpoint) => {
        fn set_breakpoint(
            &mut self,
            addr: u32,
            kind: flashgate_station::probe::BreakpointKind,
        ) -> flashgate_station::probe::ProbeResult<()> {
            self.inner.set_breakpoint(addr, kind)
        }
    };
    (@one clear_breakpoint) => {
        fn clear_breakpoint(
            &mut self,
            addr: u32,
            kind: flashgate_station::probe::BreakpointKind,
        ) -> flashgate_station::probe::ProbeResult<()> {
            self.inner.clear_breakpoint(addr, kind)
        }
    };
    (@one resume_from_breakpoint) => {
        fn resume_from_breakpoint(
            &mut self,
            addr: u32,
            kind: flashgate_station::probe::BreakpointKind,
        ) -> flashgate_station::probe::ProbeResult<()> {
            self.inner.resume_from_breakpoint(addr, kind)
        }
    };
    (@one monitor) => {
        fn monitor(&mut self, command: &str) -> flashgate_station::probe::ProbeResult<String> {
            self.inner.monitor(command)
        }
    };
    (@one read_memory_while_running) => {
        fn read_memory_while_running(
            &mut self,
            addr: u32,
            buf: &mut [u8],
        ) -> flashgate_station::probe::ProbeResult<()> {
            self.inner.read_memory_while_running(addr, buf)
        }
    };
}
