//! Operator credentials: one per person or system, each a random token with a role. The
//! coordinator keeps only the token's SHA-256 (a 256-bit random token needs no slow hash),
//! indexed by it so that checking a call is one read. The bootstrap admin of
//! `serve --operator-token-file` is held in memory only.

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::roles::Role;
use crate::audit::{Actor, AuditLog, Entry};
use crate::error::{CoordinatorError as E, Result};
use crate::repository::{hex, Attempt, CasRetry, Db, JsonRecord, KeyPart, Scope, Txn};

/// An operator credential's name: 1-64 letters, digits, `-`, `_`, `.`, `@`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OperatorName(String);

impl OperatorName {
    /// Parses a name given by a caller.
    pub fn parse(text: &str) -> Result<Self> {
        let ok = (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
        if !ok {
            return Err(E::InvalidArgument(
                "an operator name is 1-64 characters of letters, digits, '-', '_', '.' and '@'"
                    .into(),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl KeyPart for OperatorName {
    fn write_key(&self, out: &mut String) {
        out.push_str(&self.0);
    }
}

/// A token's hash, hex in keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenHash(#[serde(with = "hex")] pub [u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

impl KeyPart for TokenHash {
    fn write_key(&self, out: &mut String) {
        out.push_str(&::hex::encode(self.0));
    }
}

/// `operators/{name}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OperatorRecord {
    /// The credential's name (who, in the audit log).
    pub name: OperatorName,
    /// What it may do.
    pub role: Role,
    /// The SHA-256 of its token.
    pub token_hash: TokenHash,
    /// When it was made (Unix milliseconds).
    pub created_at_ms: i64,
    /// Which credential made it.
    pub created_by: String,
    /// When it was revoked (0: active).
    pub revoked_at_ms: i64,
}

impl JsonRecord for OperatorRecord {
    const PREFIX: &'static str = "operators/";
    type Key = OperatorName;
}

impl OperatorRecord {
    /// As the API shows it (never the hash).
    pub fn to_proto(&self) -> v1::Operator {
        v1::Operator {
            name: self.name.0.clone(),
            role: self.role.to_proto() as i32,
            created_at_ms: self.created_at_ms,
            created_by: self.created_by.clone(),
            revoked_at_ms: self.revoked_at_ms,
        }
    }
}

/// `operator_tokens/{sha256}`: the index a call's token is looked up in (deleted at revocation).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The credential.
    pub name: OperatorName,
    /// Its role (copied, so a check is one read).
    pub role: Role,
}

impl JsonRecord for TokenRecord {
    const PREFIX: &'static str = "operator_tokens/";
    type Key = TokenHash;
}

/// A fresh random token: `fgo_` and 64 hex characters.
pub fn new_token() -> zeroize::Zeroizing<String> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut bytes[..]);
    zeroize::Zeroizing::new(format!("fgo_{}", ::hex::encode(&bytes[..])))
}

/// Creates, lists and revokes credentials.
#[derive(Clone)]
pub struct Credentials {
    db: Db,
    audit: AuditLog,
}

impl Credentials {
    /// Credentials over `db`, changes audited in `audit`.
    pub fn new(db: Db, audit: AuditLog) -> Self {
        Self { db, audit }
    }

    /// The credential a token belongs to, if it is active.
    pub async fn lookup(&self, token: &str) -> Result<Option<TokenRecord>> {
        Ok(self
            .db
            .get::<TokenRecord>(&TokenHash::of(token))
            .await?
            .map(|s| s.record))
    }

    /// A new credential; returns it and its token (shown once).
    pub async fn create(
        &self,
        by: &Actor,
        name: &str,
        role: Role,
    ) -> Result<(v1::Operator, zeroize::Zeroizing<String>)> {
        let name = OperatorName::parse(name)?;
        let token = new_token();
        let hash = TokenHash::of(&token);
        let record = OperatorRecord {
            name: name.clone(),
            role,
            token_hash: hash,
            created_at_ms: now_ms(),
            created_by: by.as_str().to_owned(),
            revoked_at_ms: 0,
        };
        CasRetry::new("the audit log")
            .run(|| async {
                if self.db.get::<OperatorRecord>(&name).await?.is_some() {
                    return Err(E::AlreadyExists(format!(
                        "operator {} exists already (revoked names are not reused)",
                        name.as_str()
                    )));
                }
                let txn = Txn::new()
                    .absent::<OperatorRecord>(&name)
                    .absent::<TokenRecord>(&hash)
                    .put(&name, &record)
                    .put(
                        &hash,
                        &TokenRecord {
                            name: name.clone(),
                            role,
                        },
                    );
                let txn = self
                    .audit
                    .append_global(
                        txn,
                        Entry::new(by, "operator created", name.as_str())
                            .detail(format!("role {role}")),
                    )
                    .await?;
                Ok(Attempt::committed(self.db.commit(txn).await?, ()))
            })
            .await?;
        tracing::info!(operator = name.as_str(), %role, by = by.as_str(), "operator credential created");
        Ok((record.to_proto(), token))
    }

    /// Every credential, revoked ones too.
    pub async fn list(&self) -> Result<Vec<v1::Operator>> {
        Ok(self
            .db
            .list(Scope::<OperatorRecord>::all())
            .await?
            .iter()
            .map(|s| s.record.to_proto())
            .collect())
    }

    /// Revokes a credential: its token stops working at once.
    pub async fn revoke(&self, by: &Actor, name: &str) -> Result<v1::Operator> {
        let name = OperatorName::parse(name)?;
        CasRetry::new("the operator record")
            .run(|| async {
                let stored = self.db.get::<OperatorRecord>(&name).await?.ok_or_else(|| {
                    E::NotFound(format!(
                        "no operator {} (see `flashgate operator list`)",
                        name.as_str()
                    ))
                })?;
                if stored.record.revoked_at_ms != 0 {
                    return Ok(Attempt::Done(stored.record.to_proto()));
                }
                let mut revoked = stored.record.clone();
                revoked.revoked_at_ms = now_ms();
                let mut txn = Txn::new().unchanged(&stored).replace(&stored, &revoked);
                if let Some(token) = self
                    .db
                    .get::<TokenRecord>(&stored.record.token_hash)
                    .await?
                {
                    txn = txn.unchanged(&token).delete(&token);
                }
                let txn = self
                    .audit
                    .append_global(txn, Entry::new(by, "operator revoked", name.as_str()))
                    .await?;
                Ok(Attempt::committed(
                    self.db.commit(txn).await?,
                    revoked.to_proto(),
                ))
            })
            .await
    }
}
