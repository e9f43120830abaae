//! One-time enrolment tokens: an operator makes one for `flashgate station bundle`; the station
//! presents it once in `Enrol`, which consumes it in the same transaction that enrols (and
//! approves) the station. Stored only as their hash, with their expiry.

use flashgate_proto::clock::now_ms;
use serde::{Deserialize, Serialize};

use super::credentials::{new_token, TokenHash};
use crate::audit::{Actor, AuditLog, Entry};
use crate::error::{CoordinatorError as E, Result};
use crate::repository::{Attempt, CasRetry, Db, JsonRecord, Stored, Txn};

/// Longest validity of an enrolment token.
pub const MAX_VALIDITY_S: u32 = 7 * 24 * 3600;
/// Validity when the operator names none.
pub const DEFAULT_VALIDITY_S: u32 = 24 * 3600;

/// `enrolment_tokens/{sha256}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrolmentTokenRecord {
    /// After this (Unix milliseconds) the token is refused.
    pub expires_at_ms: i64,
    /// What it is for, as the operator said.
    pub note: String,
    /// Who made it.
    pub created_by: String,
    /// When (Unix milliseconds).
    pub created_at_ms: i64,
}

impl JsonRecord for EnrolmentTokenRecord {
    const PREFIX: &'static str = "enrolment_tokens/";
    type Key = TokenHash;
}

/// Makes and checks enrolment tokens.
#[derive(Clone)]
pub struct EnrolmentTokens {
    db: Db,
    audit: AuditLog,
}

impl EnrolmentTokens {
    /// Tokens over `db`, audited in `audit`.
    pub fn new(db: Db, audit: AuditLog) -> Self {
        Self { db, audit }
    }

    /// A new token valid for `valid_s` seconds (0: a day); the token and its expiry.
    pub async fn create(
        &self,
        by: &Actor,
        valid_s: u32,
        note: &str,
    ) -> Result<(zeroize::Zeroizing<String>, i64)> {
        let valid_s = if valid_s == 0 {
            DEFAULT_VALIDITY_S
        } else {
            valid_s
        };
        if valid_s > MAX_VALIDITY_S || note.len() > 128 || note.chars().any(char::is_control) {
            return Err(E::InvalidArgument(format!(
                "an enrolment token is valid for 1 s to {MAX_VALIDITY_S} s, with a note of at most 128 printable characters"
            )));
        }
        let token = new_token();
        let hash = TokenHash::of(&token);
        let now = now_ms();
        let record = EnrolmentTokenRecord {
            expires_at_ms: now + i64::from(valid_s) * 1000,
            note: note.to_owned(),
            created_by: by.as_str().to_owned(),
            created_at_ms: now,
        };
        CasRetry::new("the audit log")
            .run(|| async {
                let txn = Txn::new()
                    .absent::<EnrolmentTokenRecord>(&hash)
                    .put(&hash, &record);
                let txn = self
                    .audit
                    .append_global(
                        txn,
                        Entry::new(by, "enrolment token created", note).detail(format!(
                            "expires at {} ({}…)",
                            record.expires_at_ms,
                            &::hex::encode(hash.0)[..8]
                        )),
                    )
                    .await?;
                Ok(Attempt::committed(self.db.commit(txn).await?, ()))
            })
            .await?;
        Ok((token, record.expires_at_ms))
    }

    /// The stored token `token` if it can still be used; the refusal otherwise. Consuming it is
    /// the caller's transaction's job (`Txn::delete` of the returned record, guarded).
    pub async fn usable(&self, token: &str) -> Result<Stored<EnrolmentTokenRecord>> {
        let stored = self
            .db
            .get::<EnrolmentTokenRecord>(&TokenHash::of(token))
            .await?
            .ok_or_else(|| {
                E::PermissionDenied(
                    "the enrolment token is unknown or was already used: ask the operator for a new bundle (`flashgate station bundle`)".into(),
                )
            })?;
        if stored.record.expires_at_ms < now_ms() {
            return Err(E::PermissionDenied(format!(
                "the enrolment token expired at {}: ask the operator for a new bundle (`flashgate station bundle`)",
                stored.record.expires_at_ms
            )));
        }
        Ok(stored)
    }
}
