//! The status receipt: what the device says about itself after an update, authenticated with
//! a key derived from its device key so the coordinator can believe it.
//!
//! ```text
//! request (0x14): challenge[32]   (issued by the coordinator with the package)
//! receipt (0x95): serial[16] | product_id u32 | bootloader_version u32
//!                 | running u8 (0 bootloader, 1 OS) | outcome u8 | phase u8 | attempts u8
//!                 | running_version u32 | floor u32 | new_version u32 | last_error u32
//!                 | reason u32 (why no OS runs; 0 when one does) | mac[32]
//! mac       = HMAC-SHA256(K_receipt, "flashgate-update-receipt-v1" ‖ challenge ‖ receipt[..48])
//! K_receipt = HKDF-SHA256(salt "flashgate-update-receipt-v1", ikm device_key, info "receipt")
//! ```

use crate::challenge_proof::{self, ProofKind};
use crate::codec::{self, Codec, Reader, Writer};
use crate::hello::DeviceState;
use crate::update::boot_state::{BootState, Outcome, Phase};
use crate::{ErrorCode, Serial};

/// Challenge length.
pub const CHALLENGE_LEN: usize = 32;
const BODY_LEN: usize = 48;
/// Encoded receipt length.
pub const RECEIPT_LEN: usize = BODY_LEN + 32;
const LABEL: &[u8] = b"flashgate-update-receipt-v1";

/// What a device reports about its update state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusReceipt {
    /// The device's serial.
    pub serial: Serial,
    /// Its product.
    pub product_id: u32,
    /// Installed bootloader version.
    pub bootloader_version: u32,
    /// What runs now (the OS and its version, or the bootloader and why).
    pub state: DeviceState,
    /// How the last update ended.
    pub outcome: Outcome,
    /// Install phase (idle unless an install is under way or on trial).
    pub phase: u8,
    /// Boots of the image on trial.
    pub attempts: u8,
    /// The anti-rollback floor of the boot state.
    pub floor: u32,
    /// Version of the last install attempt.
    pub new_version: u32,
    /// Why the last update was rolled back (0: it was not).
    pub last_error: u32,
}

impl StatusReceipt {
    /// Builds a receipt from the device's identity, what runs and its boot state.
    pub fn new(
        serial: Serial,
        product_id: u32,
        bootloader_version: u32,
        state: DeviceState,
        boot: &BootState,
    ) -> Self {
        Self {
            serial,
            product_id,
            bootloader_version,
            state,
            outcome: boot.outcome,
            phase: boot.phase as u8,
            attempts: boot.attempts,
            floor: boot.floor,
            new_version: boot.new_version,
            last_error: boot.last_error,
        }
    }

    /// True when an install is on trial (not yet confirmed).
    pub fn on_trial(&self) -> bool {
        self.phase == Phase::Trial as u8
    }
}

/// The receipt's body (what the MAC covers), 48 bytes.
impl Codec<'_> for StatusReceipt {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        let (running, version, reason) = match self.state {
            DeviceState::NoValidImage { reason } => (0u8, 0, reason as u32),
            DeviceState::OsRunning { version } => (1u8, version, 0),
        };
        w.put(&self.serial)?;
        w.u32(self.product_id)?;
        w.u32(self.bootloader_version)?;
        w.put(&[running, self.outcome as u8, self.phase, self.attempts])?;
        w.u32(version)?;
        w.u32(self.floor)?;
        w.u32(self.new_version)?;
        w.u32(self.last_error)?;
        w.u32(reason)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let serial = r.array()?;
        let product_id = r.u32()?;
        let bootloader_version = r.u32()?;
        let [running, outcome, phase, attempts] = r.array::<4>()?;
        let version = r.u32()?;
        let floor = r.u32()?;
        let new_version = r.u32()?;
        let last_error = r.u32()?;
        let reason = r.u32()?;
        let state = match running {
            0 => DeviceState::NoValidImage {
                reason: ErrorCode::from_u32(reason).ok_or(ErrorCode::BadMagic)?,
            },
            1 => DeviceState::OsRunning { version },
            _ => return Err(ErrorCode::BadMagic),
        };
        Ok(Self {
            serial,
            product_id,
            bootloader_version,
            state,
            outcome: Outcome::from_u8(outcome).ok_or(ErrorCode::BadMagic)?,
            phase,
            attempts,
            floor,
            new_version,
            last_error,
        })
    }
}

const PROOF: ProofKind = ProofKind {
    label: LABEL,
    info: b"receipt",
};

/// Device side: the receipt with its MAC.
pub fn encode(
    device_key: &[u8; 32],
    challenge: &[u8; CHALLENGE_LEN],
    receipt: &StatusReceipt,
) -> [u8; RECEIPT_LEN] {
    let body: [u8; BODY_LEN] = codec::to_array(receipt);
    challenge_proof::append(&PROOF, device_key, challenge, &body)
}

/// Host side: what the receipt claims, unverified (to find the device's key).
pub fn peek(raw: &[u8]) -> Result<StatusReceipt, ErrorCode> {
    if raw.len() != RECEIPT_LEN {
        return Err(ErrorCode::BadLength);
    }
    StatusReceipt::read_bytes(&raw[..BODY_LEN])
}

/// Coordinator side: verifies the MAC for `challenge` and returns the receipt.
pub fn verify(
    device_key: &[u8; 32],
    challenge: &[u8; CHALLENGE_LEN],
    raw: &[u8],
) -> Result<StatusReceipt, ErrorCode> {
    let body = challenge_proof::verify_appended(&PROOF, device_key, challenge, raw, BODY_LEN)?;
    StatusReceipt::read_bytes(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_under_key_and_challenge_and_matches_vector() {
        let boot = BootState {
            outcome: Outcome::Updated,
            floor: 2,
            new_version: 2,
            ..BootState::default()
        };
        let r = StatusReceipt::new([5; 16], 7, 3, DeviceState::OsRunning { version: 2 }, &boot);
        let raw = encode(&[1; 32], &[2; 32], &r);
        assert_eq!(verify(&[1; 32], &[2; 32], &raw), Ok(r));
        assert_eq!(verify(&[9; 32], &[2; 32], &raw), Err(ErrorCode::BadTag));
        assert_eq!(verify(&[1; 32], &[3; 32], &raw), Err(ErrorCode::BadTag));
        for i in 0..RECEIPT_LEN {
            let mut bad = raw;
            bad[i] ^= 1;
            assert!(verify(&[1; 32], &[2; 32], &bad).is_err(), "byte {i}");
        }
        assert_eq!(
            hex::encode(raw),
            include_str!("../../vectors/status_receipt.hex").trim()
        );
    }
}
