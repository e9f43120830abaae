//! Over-the-UART updates: packages only one device can open, a resumable transfer into the
//! staging slot, a power-fail-safe install with revert, and a receipt the coordinator checks.
//!
//! - [`package`]: the package format (release ciphertext + per-device envelope) and, with
//!   `std`, the coordinator's side that builds it;
//! - [`session`]: the device's side of the transfer (bootloader);
//! - [`boot_state`]: append-only records in the boot-state pages (floor, progress, counter);
//! - [`install`]: the install / revert / confirm state machine the bootloader runs at reset;
//! - [`receipt`]: the status receipt, authenticated with a key derived from the device key.
//!
//! The format is written up in `docs/protocol.md` §7.

pub mod boot_state;
pub mod install;
pub mod package;
pub mod receipt;
pub mod session;
#[cfg(test)]
pub(crate) mod tests;
