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
mod tests;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Derives a purpose-bound key from the device key (never used raw): HKDF-SHA256 with the
/// label as salt and `info` as info.
pub(crate) fn derive(device_key: &[u8; 32], label: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    let hk = Hkdf::<Sha256>::new(Some(label), device_key);
    // HKDF-Expand's info is one slice; join the parts in a small stack buffer.
    let mut buf = [0u8; 96];
    let mut n = 0;
    for part in info {
        buf[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    // 32 bytes of SHA-256 HKDF output: cannot fail.
    let _ = hk.expand(&buf[..n], &mut out[..]);
    out
}
