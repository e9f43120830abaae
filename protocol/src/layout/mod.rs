//! Where things live on the target: one memory map per board, the one selected re-exported
//! at this module's root.
//!
//! The addresses are shared by the firmware linker scripts (each program's `build.rs` writes
//! its `memory.x` from them; `cargo xtask firmware` checks the result), the station (which
//! writes the loader and mailbox over the debug link) and the board launcher (which looks for
//! the debug-lock marker in persisted flash). Every map defines the same names, so the
//! programs and the protocol's state machines are the same source on every board.
//!
//! - [`mps2_an386`]: the emulated board (default; every host build and every test).
//! - [`nrf52840`]: Nordic nRF52840, selected by the feature `board-nrf52840` (firmware builds
//!   for that chip; `cargo xtask firmware` builds its loader and bootloader and checks them
//!   against this map).
//!
//! Both maps are always compiled, so host tools can check a build for either board.

pub mod mps2_an386;
pub mod nrf52840;

#[cfg(not(feature = "board-nrf52840"))]
pub use mps2_an386::*;
#[cfg(feature = "board-nrf52840")]
pub use nrf52840::*;

#[cfg(test)]
mod tests;
