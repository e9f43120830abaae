//! SMSC LAN9118 Ethernet controller at 0x4020_0000 (32-bit bus), polled: no interrupt, no DMA.
//!
//! Only registers that QEMU 7.2's `hw/net/lan9118.c` implements are touched: the model aborts
//! QEMU on a read or write of any other system CSR or MAC CSR. Behaviour of the model that a
//! real chip does differently, and that this driver therefore does not rely on:
//! - soft reset, EEPROM load and the CSR/MII "busy" bits complete at once (a real chip takes
//!   microseconds to milliseconds): every wait is bounded and polls the real bit;
//! - `E2P_CMD`'s "MAC address loaded" flag is modelled at the wrong bit, so the station
//!   address is read back from `ADDRH`/`ADDRL` instead;
//! - TX data-end padding is computed from the wrong field, so frames are always written with
//!   4-byte end alignment and no start offset (no padding on either);
//! - the RX FIFO drops frames silently when full (no overflow status), so a caller that
//!   wants no loss keeps its receive window below the 10 KiB of RX FIFO.
#![allow(
    unsafe_code,
    reason = "the Ethernet controller's memory-mapped registers"
)]

use crate::hal::{EthernetDevice, EthernetError, MacAddress, MAX_FRAME_LEN};

const BASE: usize = 0x4020_0000;

// FIFO ports (any word in the 32-byte window reaches the FIFO) and system CSRs.
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const ID_REV: usize = 0x50;
const INT_STS: usize = 0x58;
const INT_EN: usize = 0x5C;
const BYTE_TEST: usize = 0x64;
const RX_CFG: usize = 0x6C;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_FIFO_INF: usize = 0x7C;
const TX_FIFO_INF: usize = 0x80;
const PMT_CTRL: usize = 0x84;
const MAC_CSR_CMD: usize = 0xA4;
const MAC_CSR_DATA: usize = 0xA8;
const E2P_CMD: usize = 0xB0;

const CHIP_ID: u32 = 0x0118;
const BYTE_TEST_VALUE: u32 = 0x8765_4321;
const HW_CFG_SRST: u32 = 1 << 0;
const PMT_CTRL_READY: u32 = 1 << 0;
const E2P_CMD_BUSY: u32 = 1 << 31;
const TX_CFG_TX_ON: u32 = 1 << 1;
/// Lets the TX status FIFO overrun: the driver never reads TX status, and with this bit a
/// full status FIFO does not stop transmission.
const TX_CFG_TXSAO: u32 = 1 << 2;
const CSR_BUSY: u32 = 1 << 31;
const CSR_READ: u32 = 1 << 30;

// MAC CSRs, reached through MAC_CSR_CMD/MAC_CSR_DATA.
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MAC_MII_ACC: u32 = 6;
const MAC_MII_DATA: u32 = 7;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_FDPX: u32 = 1 << 20;

// The internal PHY (address 1), reached through MII_ACC/MII_DATA.
const PHY_ADDR: u32 = 1;
const MII_BUSY: u32 = 1 << 0;
const MII_WRITE: u32 = 1 << 1;
const PHY_BMCR: u32 = 0;
const PHY_BMSR: u32 = 1;
const BMCR_RESET: u32 = 1 << 15;
const BMCR_AUTONEG: u32 = 1 << 12;
const BMSR_LINK: u32 = 1 << 2;

// TX command words and RX status.
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;
const RX_STS_ERROR: u32 = 1 << 15;
/// The FCS the MAC appends to every received frame (counted in the status length).
const FCS_LEN: usize = 4;
const ETH_HEADER_LEN: usize = 14;

/// Polls of a busy bit before the chip counts as not responding (QEMU clears every busy bit
/// at once; a real LAN9118 needs at most ~10 ms for reset and EEPROM load).
const SPIN_LIMIT: u32 = 1_000_000;

/// Why the controller could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lan9118Error {
    /// `ID_REV` does not name a LAN9118 (wrong board, or QEMU without the device).
    NotFound {
        /// What `ID_REV` read.
        id_rev: u32,
    },
    /// `BYTE_TEST` did not read back its fixed pattern: the bus is mis-configured.
    BusTest {
        /// What `BYTE_TEST` read.
        value: u32,
    },
    /// A reset, EEPROM load, MAC CSR or PHY access did not finish.
    Timeout,
    /// No station address was given and the chip has none (no EEPROM, or a multicast or
    /// all-zero one).
    NoMacAddress,
}

/// The LAN9118, not yet reset: [`Mps2An386::take`](super::Mps2An386::take) hands it out once.
pub struct Lan9118 {
    pub(super) _private: (),
}

/// The LAN9118 after [`Lan9118::init`]: MAC and PHY reset, station address set, receiver
/// and transmitter on.
pub struct Lan9118Device {
    mac: MacAddress,
    tag: u16,
}

fn read(offset: usize) -> u32 {
    // SAFETY: a register of the LAN9118, which only this driver (one instance, handed out
    // once) touches; every offset used is one the chip and QEMU's model implement.
    unsafe { core::ptr::read_volatile((BASE + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as for `read`.
    unsafe { core::ptr::write_volatile((BASE + offset) as *mut u32, value) }
}

/// Polls until `done` holds, at most [`SPIN_LIMIT`] times; an error from `done` ends the wait.
fn wait(mut done: impl FnMut() -> Result<bool, Lan9118Error>) -> Result<(), Lan9118Error> {
    for _ in 0..SPIN_LIMIT {
        if done()? {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(Lan9118Error::Timeout)
}

fn mac_csr_read(index: u32) -> Result<u32, Lan9118Error> {
    wait(|| Ok(read(MAC_CSR_CMD) & CSR_BUSY == 0))?;
    write(MAC_CSR_CMD, CSR_BUSY | CSR_READ | index);
    wait(|| Ok(read(MAC_CSR_CMD) & CSR_BUSY == 0))?;
    Ok(read(MAC_CSR_DATA))
}

fn mac_csr_write(index: u32, value: u32) -> Result<(), Lan9118Error> {
    wait(|| Ok(read(MAC_CSR_CMD) & CSR_BUSY == 0))?;
    write(MAC_CSR_DATA, value);
    write(MAC_CSR_CMD, CSR_BUSY | index);
    wait(|| Ok(read(MAC_CSR_CMD) & CSR_BUSY == 0))
}

fn wait_mii() -> Result<(), Lan9118Error> {
    wait(|| Ok(mac_csr_read(MAC_MII_ACC)? & MII_BUSY == 0))
}

fn phy_read(reg: u32) -> Result<u32, Lan9118Error> {
    wait_mii()?;
    mac_csr_write(MAC_MII_ACC, (PHY_ADDR << 11) | (reg << 6) | MII_BUSY)?;
    wait_mii()?;
    Ok(mac_csr_read(MAC_MII_DATA)? & 0xFFFF)
}

fn phy_write(reg: u32, value: u32) -> Result<(), Lan9118Error> {
    wait_mii()?;
    mac_csr_write(MAC_MII_DATA, value)?;
    mac_csr_write(
        MAC_MII_ACC,
        (PHY_ADDR << 11) | (reg << 6) | MII_WRITE | MII_BUSY,
    )?;
    wait_mii()
}

/// A station address a NIC may use: unicast and not all zero.
fn usable(mac: &MacAddress) -> bool {
    mac[0] & 1 == 0 && mac.iter().any(|&b| b != 0)
}

impl Lan9118 {
    /// Resets the chip, sets the station address (`mac`, or the one loaded from its EEPROM
    /// when `None`), resets the PHY with auto-negotiation on, clears and masks every
    /// interrupt, and turns the transmitter and receiver on (full duplex; unicast to the
    /// station address and broadcast only).
    pub fn init(self, mac: Option<MacAddress>) -> Result<Lan9118Device, Lan9118Error> {
        let id_rev = read(ID_REV);
        if id_rev >> 16 != CHIP_ID {
            return Err(Lan9118Error::NotFound { id_rev });
        }
        let value = read(BYTE_TEST);
        if value != BYTE_TEST_VALUE {
            return Err(Lan9118Error::BusTest { value });
        }
        write(HW_CFG, HW_CFG_SRST);
        wait(|| Ok(read(HW_CFG) & HW_CFG_SRST == 0))?;
        wait(|| Ok(read(PMT_CTRL) & PMT_CTRL_READY != 0))?;
        wait(|| Ok(read(E2P_CMD) & E2P_CMD_BUSY == 0))?;

        let mac = match mac {
            Some(mac) => {
                mac_csr_write(
                    MAC_ADDRL,
                    u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
                )?;
                mac_csr_write(MAC_ADDRH, u32::from(mac[4]) | u32::from(mac[5]) << 8)?;
                mac
            }
            None => {
                let low = mac_csr_read(MAC_ADDRL)?.to_le_bytes();
                let high = mac_csr_read(MAC_ADDRH)?.to_le_bytes();
                [low[0], low[1], low[2], low[3], high[0], high[1]]
            }
        };
        if !usable(&mac) {
            return Err(Lan9118Error::NoMacAddress);
        }

        phy_write(PHY_BMCR, BMCR_RESET)?;
        wait(|| Ok(phy_read(PHY_BMCR)? & BMCR_RESET == 0))?;
        phy_write(PHY_BMCR, BMCR_AUTONEG)?;

        write(INT_EN, 0);
        write(INT_STS, u32::MAX);
        // Defaults: no RX data offset, 4-byte end alignment.
        write(RX_CFG, 0);
        write(TX_CFG, TX_CFG_TX_ON | TX_CFG_TXSAO);
        // Clears the reset default PRMS (promiscuous): only our unicast and broadcast arrive.
        mac_csr_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX)?;
        Ok(Lan9118Device { mac, tag: 0 })
    }
}

impl Lan9118Device {
    /// Pops and discards `words` words of RX data (the rest of a dropped frame).
    fn discard(words: usize) {
        for _ in 0..words {
            let _ = read(RX_DATA_FIFO);
        }
    }
}

impl EthernetDevice for Lan9118Device {
    fn mac_address(&self) -> MacAddress {
        self.mac
    }

    fn link_up(&mut self) -> bool {
        phy_read(PHY_BMSR).is_ok_and(|v| v & BMSR_LINK != 0)
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, EthernetError> {
        // RXSUSED: statuses (= whole frames) waiting.
        if (read(RX_FIFO_INF) >> 16) & 0xFF == 0 {
            return Ok(None);
        }
        let status = read(RX_STATUS_FIFO);
        let with_fcs = ((status >> 16) & 0x3FFF) as usize;
        let words = with_fcs.div_ceil(4);
        if status & RX_STS_ERROR != 0 || with_fcs < ETH_HEADER_LEN + FCS_LEN {
            Self::discard(words);
            return Err(EthernetError::ReceiveError);
        }
        let len = with_fcs - FCS_LEN;
        if len > buf.len() {
            Self::discard(words);
            return Err(EthernetError::FrameTooLong);
        }
        let mut chunks = buf[..len].chunks_exact_mut(4);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&read(RX_DATA_FIFO).to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let mut used = len / 4;
        if !rest.is_empty() {
            let n = rest.len();
            rest.copy_from_slice(&read(RX_DATA_FIFO).to_le_bytes()[..n]);
            used += 1;
        }
        // The FCS words (one, or two when the frame does not end on a word).
        Self::discard(words - used);
        Ok(Some(len))
    }

    fn can_transmit(&mut self, len: usize) -> bool {
        // TDFREE: free bytes of TX data FIFO; a frame takes two command words and its data.
        (read(TX_FIFO_INF) & 0xFFFF) as usize >= 8 + len.div_ceil(4) * 4
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), EthernetError> {
        let len = frame.len();
        if !(ETH_HEADER_LEN..=MAX_FRAME_LEN).contains(&len) {
            return Err(EthernetError::BadFrameLength);
        }
        if !self.can_transmit(len) {
            return Err(EthernetError::TxFull);
        }
        self.tag = self.tag.wrapping_add(1);
        // One buffer per frame: first and last segment, no offset, 4-byte end alignment.
        write(TX_DATA_FIFO, TX_CMD_A_FIRST | TX_CMD_A_LAST | len as u32);
        write(TX_DATA_FIFO, u32::from(self.tag) << 16 | len as u32);
        let mut chunks = frame.chunks_exact(4);
        for chunk in &mut chunks {
            write(
                TX_DATA_FIFO,
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            );
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 4];
            word[..rest.len()].copy_from_slice(rest);
            write(TX_DATA_FIFO, u32::from_le_bytes(word));
        }
        Ok(())
    }
}
