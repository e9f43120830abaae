//! The app receipt: what the device says about its app slot, authenticated with a key derived
//! from its device key so the coordinator can believe it (the host that relays it cannot make
//! one).
//!
//! ```text
//! request (0x47): challenge[32]   (issued by the coordinator with the app package)
//! receipt (0x48): serial[16] | product_id u32 | version u32 (0: no valid app)
//!                 | floor u32 | reason u32 (why no app verifies; 0 when one does) | mac[32]
//! mac       = HMAC-SHA256(K_app, "flashgate-app-receipt-v1" ‖ challenge ‖ receipt[..32])
//! K_app     = HKDF-SHA256(salt "flashgate-app-receipt-v1", ikm device_key, info "app-receipt")
//! ```
//! The OS makes it from `verify_installed_app` (every check, the digest included) and the
//! app floor, so it states what would start, not what was last sent.

use crate::challenge_proof::{self, ProofKind};
use crate::codec::{self, Codec, Reader, Writer};
use crate::device_record::DeviceRecord;
use crate::flash::NorFlash;
use crate::{ErrorCode, Serial};

use super::{verify_installed_app, AppFloor};

/// Challenge length.
pub const CHALLENGE_LEN: usize = 32;
const BODY_LEN: usize = 32;
/// Encoded receipt length.
pub const APP_RECEIPT_LEN: usize = BODY_LEN + 32;

const PROOF: ProofKind = ProofKind {
    label: b"flashgate-app-receipt-v1",
    info: b"app-receipt",
};

/// What a device reports about its app slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppReceipt {
    /// The device's serial.
    pub serial: Serial,
    /// Its product.
    pub product_id: u32,
    /// The version of the app that verifies in the slot; 0 when none does.
    pub version: u32,
    /// The app floor (the highest app version ever committed).
    pub floor: u32,
    /// Why no app verifies (`None` when one does).
    pub reason: Option<ErrorCode>,
}

impl AppReceipt {
    /// Device side: the state of the app slot, checked now.
    pub fn of_slot<F: NorFlash>(flash: &mut F, record: &DeviceRecord) -> Result<Self, ErrorCode> {
        let floor = AppFloor::read(flash)?;
        let (version, reason) = match verify_installed_app(flash, record) {
            Ok(app) => (app.version, None),
            Err(code) => (0, Some(code)),
        };
        Ok(Self {
            serial: record.config.serial,
            product_id: record.config.product_id,
            version,
            floor,
            reason,
        })
    }
}

/// The receipt's body (what the MAC covers), 32 bytes.
impl Codec<'_> for AppReceipt {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.put(&self.serial)?;
        w.u32(self.product_id)?;
        w.u32(self.version)?;
        w.u32(self.floor)?;
        w.u32(self.reason.map_or(0, |c| c as u32))
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let serial = r.array()?;
        let product_id = r.u32()?;
        let version = r.u32()?;
        let floor = r.u32()?;
        let reason = match r.u32()? {
            0 => None,
            code => Some(ErrorCode::from_u32(code).ok_or(ErrorCode::BadMagic)?),
        };
        Ok(Self {
            serial,
            product_id,
            version,
            floor,
            reason,
        })
    }
}

/// Device side: the receipt with its MAC for `challenge`.
pub fn encode(
    device_key: &[u8; 32],
    challenge: &[u8; CHALLENGE_LEN],
    receipt: &AppReceipt,
) -> [u8; APP_RECEIPT_LEN] {
    let body: [u8; BODY_LEN] = codec::to_array(receipt);
    challenge_proof::append(&PROOF, device_key, challenge, &body)
}

/// Host side: what the receipt claims, unverified.
pub fn peek(raw: &[u8]) -> Result<AppReceipt, ErrorCode> {
    if raw.len() != APP_RECEIPT_LEN {
        return Err(ErrorCode::BadLength);
    }
    AppReceipt::read_bytes(&raw[..BODY_LEN])
}

/// Coordinator side: verifies the MAC for `challenge` and returns the receipt.
pub fn verify(
    device_key: &[u8; 32],
    challenge: &[u8; CHALLENGE_LEN],
    raw: &[u8],
) -> Result<AppReceipt, ErrorCode> {
    let body = challenge_proof::verify_appended(&PROOF, device_key, challenge, raw, BODY_LEN)?;
    AppReceipt::read_bytes(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_under_key_and_challenge_and_is_not_a_status_receipt() {
        let r = AppReceipt {
            serial: [5; 16],
            product_id: 7,
            version: 4,
            floor: 4,
            reason: None,
        };
        let raw = encode(&[1; 32], &[2; 32], &r);
        assert_eq!(verify(&[1; 32], &[2; 32], &raw), Ok(r));
        assert_eq!(verify(&[9; 32], &[2; 32], &raw), Err(ErrorCode::BadTag));
        assert_eq!(verify(&[1; 32], &[3; 32], &raw), Err(ErrorCode::BadTag));
        for i in 0..APP_RECEIPT_LEN {
            let mut bad = raw;
            bad[i] ^= 1;
            assert!(verify(&[1; 32], &[2; 32], &bad).is_err(), "byte {i}");
        }
        let none = AppReceipt {
            version: 0,
            reason: Some(ErrorCode::NoValidImage),
            ..r
        };
        let raw = encode(&[1; 32], &[2; 32], &none);
        assert_eq!(verify(&[1; 32], &[2; 32], &raw), Ok(none));
        // Another proof's label: a receipt of one kind never passes as the other.
        let status = crate::update::receipt::verify(&[1; 32], &[2; 32], &raw);
        assert!(status.is_err());
    }
}
