//! What the rules tell their callers when they refuse, or when storage failed under them: one
//! variant per reason, with the words a person reads, and the storage cause kept whole. The HTTP
//! edge turns it into a problem document ([`crate::error::ApiError`]), the workers log it; the
//! rules never build an HTTP answer.

use crate::db::{StorageError, StorageFailure};
use crate::domain::InvalidMerchantOrderId;
use crate::money::AmountError;

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A request the rules cannot take as it is (a field out of bounds, a malformed value).
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    InvalidAmount(#[from] AmountError),
    /// Credentials missing, wrong or refused.
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials valid, but not for this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A merchant order number used again with other parameters.
    #[error("{0}")]
    IdempotencyConflict(String),
    /// The object is not in a state that allows this (closing a paid order, paying it twice).
    #[error("{0}")]
    InvalidState(String),
    /// Another object already holds what this one would (a collection code, a name).
    #[error("{0}")]
    Conflict(String),
    /// A notification without an amount whose text yields no single one (kept nonetheless).
    #[error("{0}")]
    UnparseableNotification(String),
    #[error("no enabled payee of this channel has an online listener device")]
    NoPayeeAvailable,
    #[error("every payable amount in the allowed offset range is taken; retry later")]
    AmountsExhausted,
    /// Storage failed; whoever answers decides what to say (the cause is kept).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A broken invariant: logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RuleError {
    /// The stable name of the reason, as the API's problem documents and stored rejections
    /// give it.
    pub fn code(&self) -> &'static str {
        match self {
            RuleError::InvalidRequest(_) => "invalid_request",
            RuleError::InvalidAmount(_) => "invalid_amount",
            RuleError::Unauthorized(_) => "unauthorized",
            RuleError::Forbidden(_) => "forbidden",
            RuleError::NotFound(_) => "not_found",
            RuleError::IdempotencyConflict(_) => "idempotency_conflict",
            RuleError::InvalidState(_) => "invalid_state",
            RuleError::Conflict(_) => "conflict",
            RuleError::UnparseableNotification(_) => "unparseable_notification",
            RuleError::NoPayeeAvailable => "no_payee_available",
            RuleError::AmountsExhausted => "amounts_exhausted",
            RuleError::Storage(error) if error.is_unavailable() => "service_unavailable",
            RuleError::Storage(StorageError::UnstorableText(_)) => "invalid_request",
            RuleError::Storage(_) | RuleError::Internal(_) => "internal_error",
        }
    }

    pub fn not_found(what: &str) -> RuleError {
        RuleError::NotFound(format!("{what} not found"))
    }

    pub fn internal(context: impl std::fmt::Display) -> RuleError {
        RuleError::Internal(context.to_string())
    }
}

impl From<InvalidMerchantOrderId> for RuleError {
    fn from(error: InvalidMerchantOrderId) -> Self {
        RuleError::InvalidRequest(error.to_string())
    }
}

impl From<diesel::result::Error> for RuleError {
    fn from(error: diesel::result::Error) -> Self {
        RuleError::Storage(error.into())
    }
}

impl From<diesel::r2d2::PoolError> for RuleError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        RuleError::Storage(error.into())
    }
}

impl StorageFailure for RuleError {
    fn storage_error(&self) -> Option<&StorageError> {
        match self {
            RuleError::Storage(error) => Some(error),
            _ => None,
        }
    }
}
