//! `hello`: a device proves who it is by a MAC under its device key over a host challenge.
//!
//! ```text
//! request:  challenge[32]
//! response: serial[16] chip_uid[16] product_id u32 bootloader_version u32 state u8
//!           reserved[3] os_version u32 reason u32 mac[32]
//! mac = HMAC-SHA256(K_hello, "flashgate-hello-v2" || challenge || response[..52])
//! K_hello = HKDF-SHA256(salt = "flashgate-hello-v2", ikm = device_key, info = "hello-proof")
//! ```
//! `serial` is the identity the device record claims, `chip_uid` the unique ID the firmware
//! read from the hardware. On a genuine device they are equal; a board running a copy of
//! another board's flash answers with the original's serial, its own `chip_uid` and a MAC that
//! verifies (the key was copied with the flash): the coordinator calls that a clone. The host
//! reads the serial from the response first (to find the device's key), then verifies the
//! MAC; nothing in the response is secret.

use crate::challenge_proof::{self, ProofKind};
use crate::codec::{self, Codec, Reader, Writer};
use crate::{ErrorCode, Serial};

/// Challenge length.
pub const CHALLENGE_LEN: usize = 32;
/// Encoded response length.
pub const RESPONSE_LEN: usize = BODY_LEN + 32;
const BODY_LEN: usize = 52;
const LABEL: &[u8] = b"flashgate-hello-v2";

/// What is running on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// The bootloader is serving updates: there is no valid OS, `reason` says why.
    NoValidImage {
        /// Why the installed OS (if any) was refused.
        reason: ErrorCode,
    },
    /// An OS is running.
    OsRunning {
        /// Its version.
        version: u32,
    },
}

/// The identity a device reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloInfo {
    /// The serial the device record claims.
    pub serial: Serial,
    /// The unique ID the firmware read from the chip (equal to `serial` on a genuine device).
    pub chip_uid: Serial,
    /// Its product.
    pub product_id: u32,
    /// Installed bootloader version.
    pub bootloader_version: u32,
    /// What runs.
    pub state: DeviceState,
}

impl HelloInfo {
    /// Whether the record's serial is this chip's unique ID (false on a board running a copy
    /// of another board's flash).
    pub fn on_its_own_chip(&self) -> bool {
        self.serial == self.chip_uid
    }
}

/// The response's body (what the MAC covers), 52 bytes.
impl Codec<'_> for HelloInfo {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        let (state, os_version, reason) = match self.state {
            DeviceState::NoValidImage { reason } => (0u8, 0, reason as u32),
            DeviceState::OsRunning { version } => (1u8, version, 0),
        };
        w.put(&self.serial)?;
        w.put(&self.chip_uid)?;
        w.u32(self.product_id)?;
        w.u32(self.bootloader_version)?;
        w.u8(state)?;
        w.put(&[0; 3])?;
        w.u32(os_version)?;
        w.u32(reason)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let serial = r.array()?;
        let chip_uid = r.array()?;
        let product_id = r.u32()?;
        let bootloader_version = r.u32()?;
        let state = r.u8()?;
        r.take(3)?;
        let os_version = r.u32()?;
        let reason = r.u32()?;
        let state = match state {
            0 => DeviceState::NoValidImage {
                reason: ErrorCode::from_u32(reason).ok_or(ErrorCode::BadMagic)?,
            },
            1 => DeviceState::OsRunning {
                version: os_version,
            },
            _ => return Err(ErrorCode::BadMagic),
        };
        Ok(Self {
            serial,
            chip_uid,
            product_id,
            bootloader_version,
            state,
        })
    }
}

const PROOF: ProofKind = ProofKind {
    label: LABEL,
    info: b"hello-proof",
};

/// Device side: encodes the response with its proof into `out`.
pub fn encode_response(
    device_key: &[u8; 32],
    challenge: &[u8; CHALLENGE_LEN],
    info: &HelloInfo,
    out: &mut [u8],
) -> Result<usize, ErrorCode> {
    let body: [u8; BODY_LEN] = codec::to_array(info);
    let tag = challenge_proof::tag(&PROOF, device_key, challenge, &body);
    let mut w = Writer::new(out);
    w.put(&body)?;
    w.put(&tag)?;
    Ok(w.len())
}

/// Host side: reads the claimed identity without verifying it (to look up the key).
pub fn peek_identity(response: &[u8]) -> Result<HelloInfo, ErrorCode> {
    if response.len() != RESPONSE_LEN {
        return Err(ErrorCode::BadLength);
    }
    HelloInfo::read_bytes(&response[..BODY_LEN])
}

/// Host side: verifies the proof under `device_key` and returns the identity.
pub fn verify_response(
    device_key: &[u8; 32],
    challenge: &[u8; CHALLENGE_LEN],
    response: &[u8],
) -> Result<HelloInfo, ErrorCode> {
    let info = peek_identity(response)?;
    challenge_proof::verify(
        &PROOF,
        device_key,
        challenge,
        &response[..BODY_LEN],
        &response[BODY_LEN..],
    )?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> HelloInfo {
        HelloInfo {
            serial: [7; 16],
            chip_uid: [7; 16],
            product_id: 3,
            bootloader_version: 2,
            state: DeviceState::NoValidImage {
                reason: ErrorCode::NoValidImage,
            },
        }
    }

    #[test]
    fn proof_verifies_only_under_the_right_key_and_challenge() {
        let mut out = [0u8; RESPONSE_LEN];
        let n = encode_response(&[1; 32], &[2; 32], &info(), &mut out).unwrap();
        assert_eq!(n, RESPONSE_LEN);
        assert_eq!(verify_response(&[1; 32], &[2; 32], &out), Ok(info()));
        assert_eq!(
            verify_response(&[9; 32], &[2; 32], &out),
            Err(ErrorCode::BadTag)
        );
        assert_eq!(
            verify_response(&[1; 32], &[3; 32], &out),
            Err(ErrorCode::BadTag)
        );
        let mut forged = out;
        forged[20] ^= 1;
        assert_eq!(
            verify_response(&[1; 32], &[2; 32], &forged),
            Err(ErrorCode::BadTag)
        );
        assert_eq!(
            hex::encode(out),
            include_str!("../vectors/hello_response.hex").trim()
        );
    }
}
