use flashgate_protocol::ErrorCode;

use crate::probe::{HaltReason, ProbeError};

/// Why provisioning one target failed. Nothing was registered for it.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    /// The debug link failed (probe unplugged, GDB server gone, timeout).
    #[error("debug link: {0}")]
    Probe(#[from] ProbeError),
    /// The flash loader refused a request: the session is over and nothing was made bootable.
    #[error("target refused {step}: {code}")]
    TargetRefused {
        /// What the station was doing.
        step: &'static str,
        /// The loader's error code.
        code: ErrorCode,
    },
    /// The loader reported an error code this station does not know.
    #[error("target refused {step} with unknown error code {raw:#x}: is the loader newer than this station?")]
    UnknownTargetError {
        /// What the station was doing.
        step: &'static str,
        /// The raw code.
        raw: u32,
    },
    /// Something the target sent does not verify on the station (reply tag, receipt, hello).
    #[error("station refused the target's {what}: {code}")]
    Verification {
        /// What was checked.
        what: &'static str,
        /// Why it failed.
        code: ErrorCode,
    },
    /// The core stopped somewhere other than the loader's `host_yield` breakpoint.
    #[error("target halted unexpectedly ({reason:?}) at pc {pc:#010x} during {step}: did the loader fault?")]
    UnexpectedHalt {
        /// What the station was doing.
        step: &'static str,
        /// Why the core stopped.
        reason: HaltReason,
        /// Where.
        pc: u32,
    },
    /// The loader image given to the station is not a flashgate loader.
    #[error("loader image is invalid: {0} (rebuild it with `cargo xtask firmware`)")]
    BadLoaderImage(ErrorCode),
    /// The test application image given to the station is malformed.
    #[error("test application image is invalid: {0}")]
    BadTestApp(ErrorCode),
    /// The bootloader image given to the station is malformed.
    #[error("bootloader image is invalid: {0}")]
    BadBootloaderImage(ErrorCode),
}
