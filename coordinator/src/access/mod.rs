//! Who may call what on the operator side: credentials with roles ([`credentials`],
//! [`roles`]), checked by [`Access::authorize`] in the one RPC wrapper before any call runs, and
//! the stations' one-time enrolment tokens ([`enrolment`]).
//!
//! | key | value |
//! | --- | --- |
//! | `operators/{name}` | [`credentials::OperatorRecord`] |
//! | `operator_tokens/{sha256(token)}` | [`credentials::TokenRecord`]: the name and role (deleted at revocation) |
//! | `enrolment_tokens/{sha256(token)}` | [`enrolment::EnrolmentTokenRecord`]: expiry (deleted when used) |

pub mod credentials;
pub mod enrolment;
pub mod roles;
pub mod service;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Request;

use crate::audit::{Actor, AuditLog};
use crate::error::{CoordinatorError as E, Result};
use crate::repository::Db;

pub use credentials::Credentials;
pub use enrolment::EnrolmentTokens;
pub use roles::Role;
pub use service::AccessApi;

/// The name of the in-memory admin given with `serve --operator-token-file`.
pub const BOOTSTRAP: &str = "bootstrap";

/// An authorized operator call's caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The credential's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// As the audit log names it.
    pub fn actor(&self) -> Actor {
        Actor::operator(&self.name)
    }
}

/// Checks operator calls: token → credential → role → method.
#[derive(Clone)]
pub struct Access {
    /// Stored credentials.
    pub credentials: Credentials,
    /// Stations' one-time enrolment tokens.
    pub enrolment: EnrolmentTokens,
    bootstrap: Option<[u8; 32]>,
}

impl Access {
    /// Access over `db`; `bootstrap_token` (if any) is an admin held in memory only.
    pub fn new(db: Db, audit: AuditLog, bootstrap_token: Option<&str>) -> Self {
        Self {
            credentials: Credentials::new(db.clone(), audit.clone()),
            enrolment: EnrolmentTokens::new(db, audit),
            bootstrap: bootstrap_token
                .filter(|t| !t.is_empty())
                .map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// The caller of `method`, if its token is valid and its role allows the method.
    /// UNAUTHENTICATED without a valid token, PERMISSION_DENIED (naming the role needed) when
    /// the role does not allow it. Nothing is written either way.
    pub async fn authorize<T>(&self, request: &Request<T>, method: &str) -> Result<Caller> {
        let token = flashgate_proto::operator_auth::bearer_token(request.metadata())
            .ok_or_else(|| {
                E::Unauthenticated(
                    "operator calls need `authorization: Bearer <token>` (flashgate --token-file FILE or FLASHGATE_TOKEN_FILE)".into(),
                )
            })?;
        let caller = match self.bootstrap_caller(token) {
            Some(caller) => caller,
            None => {
                let record = self.credentials.lookup(token).await?.ok_or_else(|| {
                    E::Unauthenticated(
                        "the operator token is not valid (unknown or revoked)".into(),
                    )
                })?;
                Caller {
                    name: record.name.as_str().to_owned(),
                    role: record.role,
                }
            }
        };
        let needed = roles::needed(method).ok_or_else(|| {
            E::Internal(format!("method {method} has no role in the access table"))
        })?;
        if !caller.role.permits(needed) {
            tracing::warn!(operator = %caller.name, role = %caller.role, method, %needed, "operator call refused by role");
            return Err(E::PermissionDenied(format!(
                "{method} needs the {needed} role (or admin); credential {} has the {} role",
                caller.name, caller.role
            )));
        }
        Ok(caller)
    }

    fn bootstrap_caller(&self, token: &str) -> Option<Caller> {
        let expected = self.bootstrap?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        bool::from(hash.ct_eq(&expected)).then(|| Caller {
            name: BOOTSTRAP.to_owned(),
            role: Role::Admin,
        })
    }
}
