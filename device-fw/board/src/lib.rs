//! flashgate's board layer: the HAL boundary as traits, one implementation per board behind a
//! Cargo feature, and the minimal Cortex-M runtime the programs link with.
//!
//! Programs (loader, bootloader, demo OS, test app) use [`Board`] and the traits only, so
//! porting to a real MCU means a new module here (and new `layout` constants), not new
//! programs. Flash is the protocol crate's [`NorFlash`]/[`LoaderPlatform`] so that the
//! target-side state machines program through the same trait the host tests use.
#![no_std]

#[cfg(not(any(feature = "board-mps2-an386", feature = "board-nrf52840")))]
compile_error!(
    "flashgate-board: enable a board feature (`board-mps2-an386`, the default, or `board-nrf52840`)"
);

#[macro_use]
mod serial_sinks;

pub mod cpu;
pub mod hal;
mod mapped_flash;
pub mod rt;
pub mod stack_paint;
pub mod text;

// A silicon board feature replaces the emulated default, so a program builds for the chip with
// `--features board-nrf52840` alone.
#[cfg(all(feature = "board-mps2-an386", not(feature = "board-nrf52840")))]
pub mod mps2_an386;
#[cfg(feature = "board-nrf52840")]
pub mod nrf52840;

#[cfg(all(feature = "board-mps2-an386", not(feature = "board-nrf52840")))]
pub use mps2_an386::Mps2An386 as Board;
#[cfg(feature = "board-nrf52840")]
pub use nrf52840::Nrf52840 as Board;

pub use flashgate_protocol::flash::{FlashError, LoaderPlatform, NorFlash};
pub use hal::{
    DebugPortLock, EntropyError, EntropySource, EthernetDevice, EthernetError, MacAddress,
    SerialPort, UniqueId, MAX_FRAME_LEN,
};
