//! `verifications/{verification_id}`: a challenge handed to a field tool, answered once.
//!
//! The verdict's transaction deletes it, so a recorded answer cannot be replayed; an answer
//! after `expires_at_ms` is refused. A challenge never answered stays until `flashgate`
//! asks again (each costs a field credential's call; see docs/operations.md).

use serde::{Deserialize, Serialize};

use crate::ids::VerificationId;
use crate::repository::{hex, JsonRecord};

/// How long a field tool has to relay the board's answer.
pub const CHALLENGE_LIFETIME_MS: i64 = 5 * 60 * 1000;

/// One outstanding challenge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChallengeRecord {
    /// Its id.
    pub verification_id: VerificationId,
    /// The 32 bytes the board's hello must answer.
    #[serde(with = "hex")]
    pub challenge: [u8; 32],
    /// Who asked for it (as the audit log names them).
    pub requested_by: String,
    /// The answer is refused after this instant (Unix milliseconds).
    pub expires_at_ms: i64,
}

impl JsonRecord for ChallengeRecord {
    const PREFIX: &'static str = "verifications/";
    type Key = VerificationId;
}
