//! The chip's identity from FICR (factory information configuration registers, read only).

use flashgate_protocol::{layout, Serial, SERIAL_LEN};

use super::mmio;
use crate::hal::UniqueId;

/// FICR.INFO.PART (e.g. 0x52840) and INFO.VARIANT (e.g. "AAD0"): fixed per chip.
const INFO_PART: u32 = 0x1000_0100;
const INFO_VARIANT: u32 = 0x1000_0104;

/// The serial: FICR.DEVICEID[0..2] (64 bits, unique per chip, at
/// [`layout::UNIQUE_ID_ADDR`]) then INFO.PART and INFO.VARIANT, little endian, so the
/// 16-byte serial also names the part. DEVICEID carries the uniqueness.
pub struct Ficr {
    pub(super) _private: (),
}

impl UniqueId for Ficr {
    fn unique_id(&self) -> Serial {
        let words = [
            layout::UNIQUE_ID_ADDR,
            layout::UNIQUE_ID_ADDR + 4,
            INFO_PART,
            INFO_VARIANT,
        ];
        let mut uid = [0u8; SERIAL_LEN];
        for (chunk, addr) in uid.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&mmio::read(addr).to_le_bytes());
        }
        uid
    }
}
