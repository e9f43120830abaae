//! flashgate's board layer: the HAL boundary as traits, one implementation per board behind a
//! Cargo feature, and the minimal Cortex-M runtime the programs link with.
//!
//! Programs (loader, bootloader, demo OS, test app) use [`Board`] and the traits only, so
//! porting to a real MCU means a new module here (and new `layout` constants), not new
//! programs. Flash is the protocol crate's [`NorFlash`]/[`LoaderPlatform`] so that the
//! target-side state machines program through the same trait the host tests use.
#![no_std]

#[cfg(not(any(feature = "board-mps2-an386")))]
compile_error!("flashgate-board: enable exactly one board feature (`board-mps2-an386`)");

pub mod cpu;
pub mod hal;
pub mod rt;
pub mod stack_paint;
pub mod text;

#[cfg(feature = "board-mps2-an386")]
pub mod mps2_an386;

#[cfg(feature = "board-mps2-an386")]
pub use mps2_an386::Mps2An386 as Board;

pub use flashgate_protocol::flash::{FlashError, LoaderPlatform, NorFlash};
pub use hal::{
    DebugPortLock, EntropyError, EntropySource, EthernetDevice, EthernetError, MacAddress,
    SerialPort, UniqueId, MAX_FRAME_LEN,
};
