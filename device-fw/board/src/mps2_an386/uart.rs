//! CMSDK APB UART0 at 0x4000_4000, the first `-serial` of the mps2 boards.
#![allow(unsafe_code, reason = "memory-mapped registers of UART0")]

use flashgate_protocol::layout;

use crate::hal::SerialPort;

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

/// UART0, polled (no interrupts).
pub struct Uart0 {
    pub(super) _private: (),
}

impl Uart0 {
    fn reg(offset: usize) -> *mut u32 {
        (layout::UART0_BASE as usize + offset) as *mut u32
    }

    fn read_reg(offset: usize) -> u32 {
        // SAFETY: a register of UART0, which only this driver (one instance) touches.
        unsafe { core::ptr::read_volatile(Self::reg(offset)) }
    }

    fn write_reg(offset: usize, value: u32) {
        // SAFETY: as for `read_reg`.
        unsafe { core::ptr::write_volatile(Self::reg(offset), value) }
    }

    /// Enables transmitter and receiver (BAUDDIV 16: the minimum; QEMU ignores the rate).
    pub fn enable(&mut self) {
        Self::write_reg(BAUDDIV, 16);
        Self::write_reg(CTRL, CTRL_TX_EN | CTRL_RX_EN);
    }
}

impl SerialPort for Uart0 {
    fn write_all(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            while Self::read_reg(STATE) & STATE_TX_FULL != 0 {
                core::hint::spin_loop();
            }
            Self::write_reg(DATA, u32::from(byte));
        }
    }

    fn try_read(&mut self) -> Option<u8> {
        if Self::read_reg(STATE) & STATE_RX_FULL != 0 {
            Some(Self::read_reg(DATA) as u8)
        } else {
            None
        }
    }
}

serial_sinks!(Uart0);
