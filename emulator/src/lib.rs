//! Emulated flashgate boards: QEMU `mps2-an386` with a persisted code memory ("flash"), a
//! unique ID and a debug port (QEMU's gdbstub) that disappears once the board is debug-locked.
//!
//! A board lives in a directory:
//! - `flash.bin`: the 4 MiB code memory at address 0, loaded at every start and saved at every
//!   clean power-off (created erased, all `0xFF`);
//! - `uid.bin`: the 16-byte unique ID, loaded at [`UNIQUE_ID_ADDR`](layout::UNIQUE_ID_ADDR);
//! - `qemu.log`: QEMU's stderr of the last start.
//!
//! [`cut`] cuts a board's power at a chosen instruction (a QEMU plugin under `-icount`), so power
//! cuts land inside the firmware's erase and program loops.
//!
//! Its Ethernet (the LAN9118) reaches nothing unless [`StartOptions::network`] gives it forwards to
//! this machine ([`NetworkOptions`]).
//!
//! ```no_run
//! use flashgate_emulator::{EmulatedBoard, StartOptions};
//! # fn main() -> Result<(), flashgate_emulator::BoardError> {
//! let dir = std::path::Path::new("/tmp/board-1");
//! EmulatedBoard::create(dir, None)?;
//! let mut board = EmulatedBoard::start(dir, StartOptions::default())?;
//! println!("debug port at {:?}", board.gdb_addr());
//! board.power_off()?; // code memory saved into flash.bin
//! # Ok(()) }
//! ```

mod board;
pub mod cut;
mod error;
mod network;
pub mod qmp;

pub use board::{BoardFiles, EmulatedBoard, StartOptions, Uid, FLASH_FILE, LOG_FILE, UID_FILE};
pub use error::BoardError;
pub use network::{NetworkError, NetworkOptions, TcpForward};

/// The memory-map constants the launcher needs, from the protocol crate (single source of truth).
pub mod layout {
    pub use flashgate_protocol::layout::{
        DEBUG_LOCK_ADDR, DEBUG_LOCK_MAGIC, FLASH_SIZE, UNIQUE_ID_ADDR, UNIQUE_ID_LEN,
    };
}
