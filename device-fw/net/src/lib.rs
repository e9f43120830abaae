//! flashgate's device network stack: [smoltcp] (no heap) on a board's
//! [`EthernetDevice`](flashgate_board::EthernetDevice).
//!
//! - [`EthernetLink`]: the board's frame-level controller as a smoltcp `phy::Device`, with
//!   one receive and one transmit frame buffer and [`LinkStats`];
//! - [`NetStack`]: link + smoltcp `Interface` + `SocketSet`, with a static IPv4 address
//!   ([`Ipv4Config`]; [`Ipv4Config::QEMU_USER`] for the emulated board);
//! - [`Clock`]: SysTick extended to 64 bits, in smoltcp's [`Instant`](smoltcp::time::Instant);
//! - [`TakeOnce`]: `'static` storage (socket buffers) handed out once, without `static mut`.
//!
//! A separate crate rather than a module of the board crate: the board crate stays the HAL
//! (traits and drivers, no protocol stack), every program that links it stays free of
//! smoltcp and its build-time configuration, and the stack is written against the
//! `EthernetDevice` trait only, so a new board needs a driver, not a new stack.
#![no_std]

mod clock;
mod link;
mod one_tcp;
mod stack;
mod storage;

pub use clock::Clock;
pub use link::{EthernetLink, LinkStats};
pub use one_tcp::{NetDown, OneTcp, TcpBuffers};
pub use smoltcp;
pub use stack::{Ipv4Config, NetStack};
pub use storage::TakeOnce;
