//! Errors, grouped by who must act, each mapped to one gRPC status code.

use tonic::Status;

use crate::keys::KeyError;
use crate::store::StoreError;

/// Why a coordinator call was refused. Messages say what to do; none carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The caller sent something malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller tried to create something that already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller could not prove who it is.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The system is not in a state that allows this (lease ended, expired, …).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A quota or a lease has no room left.
    #[error("{0}")]
    Exhausted(String),
    /// Our side: storage unreachable; retrying may help.
    #[error("storage is unavailable, retry later: {0}")]
    Store(#[from] StoreError),
    /// Our side: other writers kept winning the compare-and-swap race on `what`.
    #[error("{what} is heavily contended ({attempts} attempts); retry")]
    Contended {
        /// The record (or group of records) being updated.
        what: &'static str,
        /// How many compare-and-swap rounds were tried.
        attempts: u32,
    },
    /// Our side: something this call needs is briefly not ready (a record being written
    /// concurrently); retrying soon will do.
    #[error("{0}")]
    Unavailable(String),
    /// Our side: a stored record cannot be read (altered in the store, or written by an
    /// incompatible version). Never answered with empty or default values instead.
    #[error("stored record {key} is corrupt ({reason}); restore it from a backup or remove it")]
    CorruptRecord {
        /// The store key of the unreadable record.
        key: String,
        /// What the decoder found wrong.
        reason: String,
    },
    /// Our side: a bug or an inconsistent store (a record another one needs is missing).
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoordinatorError {
    /// Whether what the call wrote may have been applied although it failed: the store
    /// failed or did not answer in time.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Unavailable(_))
    }

    /// The same refusal again (same status, same message), for answering several callers
    /// whose shared transaction failed.
    pub fn duplicate(&self) -> Self {
        match self {
            Self::InvalidArgument(m) => Self::InvalidArgument(m.clone()),
            Self::NotFound(m) => Self::NotFound(m.clone()),
            Self::AlreadyExists(m) => Self::AlreadyExists(m.clone()),
            Self::Unauthenticated(m) => Self::Unauthenticated(m.clone()),
            Self::PermissionDenied(m) => Self::PermissionDenied(m.clone()),
            Self::FailedPrecondition(m) => Self::FailedPrecondition(m.clone()),
            Self::Exhausted(m) => Self::Exhausted(m.clone()),
            Self::Store(_) | Self::Unavailable(_) => Self::Unavailable(self.to_string()),
            Self::Contended { what, attempts } => Self::Contended {
                what,
                attempts: *attempts,
            },
            Self::CorruptRecord { key, reason } => Self::CorruptRecord {
                key: key.clone(),
                reason: reason.clone(),
            },
            Self::Internal(m) => Self::Internal(m.clone()),
        }
    }
}

impl From<KeyError> for CoordinatorError {
    fn from(error: KeyError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<CoordinatorError> for Status {
    fn from(error: CoordinatorError) -> Self {
        use CoordinatorError as E;
        let message = error.to_string();
        match error {
            E::InvalidArgument(_) => Status::invalid_argument(message),
            E::NotFound(_) => Status::not_found(message),
            E::AlreadyExists(_) => Status::already_exists(message),
            E::Unauthenticated(_) => Status::unauthenticated(message),
            E::PermissionDenied(_) => Status::permission_denied(message),
            E::FailedPrecondition(_) => Status::failed_precondition(message),
            E::Exhausted(_) => Status::resource_exhausted(message),
            E::Store(_) | E::Contended { .. } | E::Unavailable(_) => Status::unavailable(message),
            E::CorruptRecord { .. } => Status::data_loss(message),
            E::Internal(_) => Status::internal(message),
        }
    }
}

/// A coordinator result: [`CoordinatorError`] unless said otherwise.
pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;
