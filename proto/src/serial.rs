//! A device's serial is its 16-byte unique ID, written as 32 lowercase hex characters.

/// Length of a serial in bytes.
pub const SERIAL_LEN: usize = 16;

/// Lowercase hex form of a serial.
pub fn to_hex(serial: &[u8; SERIAL_LEN]) -> String {
    hex::encode(serial)
}

/// Parses 32 hex characters (either case) into a serial.
pub fn from_hex(text: &str) -> Option<[u8; SERIAL_LEN]> {
    let mut out = [0u8; SERIAL_LEN];
    hex::decode_to_slice(text.trim(), &mut out).ok()?;
    Some(out)
}

/// Checks that wire bytes are exactly one serial.
pub fn from_bytes(bytes: &[u8]) -> Option<[u8; SERIAL_LEN]> {
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_is_lowercase() {
        let serial = [0xABu8; SERIAL_LEN];
        let text = to_hex(&serial);
        assert_eq!(text, "ab".repeat(16));
        assert_eq!(from_hex(&text.to_uppercase()), Some(serial));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_bytes(&[0; 15]), None);
    }
}
