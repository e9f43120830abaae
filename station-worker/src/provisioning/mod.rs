//! Provisioning one target through its debug probe: the station's half of `docs/protocol.md`.
//!
//! [`FlashLoaderSession`] writes the RAM flash loader, runs the handshake through the mailbox
//! and sends the bootloader, key and configuration as sealed frames, taking turns with the
//! target at the loader's `host_yield` breakpoint (QEMU's gdbstub is all-stop).

mod error;
mod faults;
mod loader_image;
mod session;
mod timings;

pub use error::ProvisioningError;
pub use faults::LinkFault;
pub use loader_image::LoaderImage;
pub use session::{
    provision, FlashLoaderSession, ProvisioningJob, ProvisioningOutcome, TestAppReport,
};
pub use timings::PhaseTimings;
