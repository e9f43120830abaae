//! UART0 in its legacy (non-DMA) mode, polled: one byte in RXD/TXD at a time, which is all the
//! request/response update protocol needs (the host waits for each answer, so nothing arrives
//! while the CPU is stalled on a flash erase).

use flashgate_protocol::layout;

use super::mmio;
use crate::hal::SerialPort;

const TASKS_STARTRX: u32 = layout::UART0_BASE;
const TASKS_STARTTX: u32 = layout::UART0_BASE + 0x008;
const EVENTS_RXDRDY: u32 = layout::UART0_BASE + 0x108;
const EVENTS_TXDRDY: u32 = layout::UART0_BASE + 0x11C;
const ENABLE: u32 = layout::UART0_BASE + 0x500;
const PSEL_TXD: u32 = layout::UART0_BASE + 0x50C;
const PSEL_RXD: u32 = layout::UART0_BASE + 0x514;
const RXD: u32 = layout::UART0_BASE + 0x518;
const TXD: u32 = layout::UART0_BASE + 0x51C;
const BAUDRATE: u32 = layout::UART0_BASE + 0x524;

const ENABLE_UART: u32 = 4;
const BAUD_115200: u32 = 0x01D7_E000;
/// The nRF52840-DK's interface-MCU virtual COM port: TX on P0.06, RX on P0.08.
const TX_PIN: u32 = 6;
const RX_PIN: u32 = 8;
/// One byte at 115200 baud is ~87 µs, ~5,600 cycles: a stuck transmitter is given far more.
const SPINS_PER_BYTE: u32 = 1_000_000;

/// UART0, polled (no interrupts, no EasyDMA).
pub struct Uart0 {
    pub(super) _private: (),
}

impl Uart0 {
    /// Routes the pins, sets 115200 8N1 and starts both directions.
    pub fn enable(&mut self) {
        mmio::write(PSEL_TXD, TX_PIN);
        mmio::write(PSEL_RXD, RX_PIN);
        mmio::write(BAUDRATE, BAUD_115200);
        mmio::write(ENABLE, ENABLE_UART);
        mmio::write(TASKS_STARTTX, 1);
        mmio::write(TASKS_STARTRX, 1);
    }
}

impl SerialPort for Uart0 {
    fn write_all(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            mmio::write(TXD, u32::from(byte));
            // A byte that never leaves (no clock) is dropped rather than hang the bootloader.
            let _ = mmio::take_event(EVENTS_TXDRDY, SPINS_PER_BYTE);
        }
    }

    fn try_read(&mut self) -> Option<u8> {
        if mmio::read(EVENTS_RXDRDY) == 0 {
            return None;
        }
        // Clear the event before reading RXD, as the reference manual orders: the next byte
        // may raise it again while this one is read.
        mmio::write(EVENTS_RXDRDY, 0);
        Some(mmio::read(RXD) as u8)
    }
}

serial_sinks!(Uart0);
