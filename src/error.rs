//! The error of the HTTP edge: each variant has a stable machine-readable `code` and an HTTP
//! status, and renders as `application/problem+json` (RFC 9457). The rules' refusals
//! ([`crate::core::error::RuleError`]) and storage failures become one here, and only here; the
//! cause of a fault is logged, never shown.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::InvalidMerchantOrderId;
use crate::money::AmountError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidAmount(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    IdempotencyConflict(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("too many requests from this address; retry in {} s", .0.as_secs().max(1))]
    RateLimited(std::time::Duration),
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("{0}")]
    UnparseableNotification(String),
    #[error("no enabled payee of this channel has an online listener device")]
    NoPayeeAvailable,
    #[error("every payable amount in the allowed offset range is taken; retry later")]
    AmountsExhausted,
    #[error("{0}")]
    Unavailable(String),
    /// Storage failed; what the caller is told depends on how (the cause is logged).
    #[error("{}", storage_detail(.0))]
    Storage(#[from] crate::db::StorageError),
    /// The detail is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Every code an error can have, as documented.
    pub const CODES: &'static [&'static str] = &[
        "invalid_request",
        "invalid_amount",
        "unauthorized",
        "forbidden",
        "not_found",
        "idempotency_conflict",
        "invalid_state",
        "conflict",
        "payload_too_large",
        "rate_limited",
        "request_timeout",
        "unparseable_notification",
        "no_payee_available",
        "amounts_exhausted",
        "service_unavailable",
        "internal_error",
    ];

    /// The stable, documented error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidAmount(_) => "invalid_amount",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::IdempotencyConflict(_) => "idempotency_conflict",
            ApiError::InvalidState(_) => "invalid_state",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::UnparseableNotification(_) => "unparseable_notification",
            ApiError::NoPayeeAvailable => "no_payee_available",
            ApiError::AmountsExhausted => "amounts_exhausted",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Storage(error) => match storage_answer(error) {
                StorageAnswer::Unavailable => "service_unavailable",
                StorageAnswer::BadText => "invalid_request",
                StorageAnswer::Fault => "internal_error",
            },
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "Invalid request",
            ApiError::InvalidAmount(_) => "Invalid amount",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) => "Not found",
            ApiError::IdempotencyConflict(_) => "Idempotency conflict",
            ApiError::InvalidState(_) => "Invalid state",
            ApiError::Conflict(_) => "Conflict",
            ApiError::PayloadTooLarge(_) => "Payload too large",
            ApiError::RateLimited(_) => "Too many requests",
            ApiError::RequestTimeout => "Request timeout",
            ApiError::UnparseableNotification(_) => "Unparseable notification",
            ApiError::NoPayeeAvailable => "No payee available",
            ApiError::AmountsExhausted => "Amounts exhausted",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::Storage(error) => match storage_answer(error) {
                StorageAnswer::Unavailable => "Service unavailable",
                StorageAnswer::BadText => "Invalid request",
                StorageAnswer::Fault => "Internal error",
            },
            ApiError::Internal(_) => "Internal error",
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn internal(context: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(context.to_string())
    }

    pub fn problem(&self) -> Problem {
        let detail = match self {
            ApiError::Internal(_) => "an internal error occurred; it has been logged".to_string(),
            ApiError::Storage(error) if storage_answer(error) == StorageAnswer::Fault => {
                "an internal error occurred; it has been logged".to_string()
            }
            other => other.to_string(),
        };
        Problem {
            problem_type: format!("urn:solopay:problem:{}", self.code()),
            title: self.title().to_string(),
            status: self.status_code().as_u16(),
            code: self.code().to_string(),
            detail,
        }
    }
}

/// An error answer (RFC 9457 problem details) with solopay's stable `code`.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:solopay:problem:invalid_amount",
    "title": "Invalid amount",
    "status": 400,
    "code": "invalid_amount",
    "detail": "amount must be greater than zero"
}))]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// Stable machine-readable code (see the description of each answer).
    #[schema(schema_with = problem_code_schema)]
    pub code: String,
    pub detail: String,
}

fn problem_code_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(ApiError::CODES.iter().copied()))
        .description(Some(
            "Stable machine-readable code (see the description of each answer).",
        ))
        .build()
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) | ApiError::InvalidAmount(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::IdempotencyConflict(_)
            | ApiError::InvalidState(_)
            | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnparseableNotification(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NoPayeeAvailable | ApiError::AmountsExhausted | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Storage(error) => match storage_answer(error) {
                StorageAnswer::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                StorageAnswer::BadText => StatusCode::BAD_REQUEST,
                StorageAnswer::Fault => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(context) => tracing::error!(error = %context, "internal error"),
            ApiError::Storage(error) => match storage_answer(error) {
                StorageAnswer::Fault => tracing::error!(%error, "storage fault"),
                _ => tracing::warn!(%error, "storage unavailable"),
            },
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if matches!(self, ApiError::Unauthorized(_)) {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            // The database is unreachable, busy or switching over: worth a retry soon.
            response.insert_header((header::RETRY_AFTER, 1));
        }
        if let ApiError::RateLimited(wait) = self {
            // Whole seconds, rounded up.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.insert_header((header::RETRY_AFTER, secs.max(1)));
        }
        response.json(self.problem())
    }
}

/// A rule's refusal, answered: each reason has its code and status.
impl From<crate::core::error::RuleError> for ApiError {
    fn from(error: crate::core::error::RuleError) -> Self {
        use crate::core::error::RuleError;
        match error {
            RuleError::InvalidRequest(detail) => ApiError::InvalidRequest(detail),
            RuleError::InvalidAmount(error) => ApiError::InvalidAmount(error.to_string()),
            RuleError::Unauthorized(detail) => ApiError::Unauthorized(detail),
            RuleError::Forbidden(detail) => ApiError::Forbidden(detail),
            RuleError::NotFound(detail) => ApiError::NotFound(detail),
            RuleError::IdempotencyConflict(detail) => ApiError::IdempotencyConflict(detail),
            RuleError::InvalidState(detail) => ApiError::InvalidState(detail),
            RuleError::Conflict(detail) => ApiError::Conflict(detail),
            RuleError::UnparseableNotification(detail) => ApiError::UnparseableNotification(detail),
            RuleError::NoPayeeAvailable => ApiError::NoPayeeAvailable,
            RuleError::AmountsExhausted => ApiError::AmountsExhausted,
            RuleError::Storage(error) => ApiError::Storage(error),
            RuleError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<InvalidMerchantOrderId> for ApiError {
    fn from(error: InvalidMerchantOrderId) -> Self {
        ApiError::InvalidRequest(error.to_string())
    }
}

impl From<AmountError> for ApiError {
    fn from(error: AmountError) -> Self {
        ApiError::InvalidAmount(error.to_string())
    }
}

/// How a storage error is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageAnswer {
    /// Retry later: the database is unreachable, busy, slow, or aborted the work.
    Unavailable,
    /// The request carried text the database cannot store.
    BadText,
    /// A fault: logged, never shown.
    Fault,
}

fn storage_answer(error: &crate::db::StorageError) -> StorageAnswer {
    use crate::db::StorageError;
    match error {
        StorageError::Unreachable(_)
        | StorageError::PoolExhausted
        | StorageError::Aborted(_)
        | StorageError::Timeout(_) => StorageAnswer::Unavailable,
        StorageError::UnstorableText(_) => StorageAnswer::BadText,
        StorageError::Constraint { .. } | StorageError::Other(_) => StorageAnswer::Fault,
    }
}

/// What a caller is told of a storage error (the cause stays in the logs).
fn storage_detail(error: &crate::db::StorageError) -> String {
    use crate::db::StorageError;
    match error {
        StorageError::Unreachable(_) => "the database is unreachable; retry later".into(),
        StorageError::PoolExhausted => "no database connection available; retry later".into(),
        StorageError::Aborted(_) => "the database aborted the transaction; retry".into(),
        StorageError::Timeout(_) => "the database did not answer in time; retry later".into(),
        StorageError::UnstorableText(_) => {
            "text fields must not contain NUL (U+0000) characters".into()
        }
        StorageError::Constraint { .. } | StorageError::Other(_) => {
            "an internal error occurred; it has been logged".into()
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        ApiError::Storage(error.into())
    }
}

impl From<diesel::r2d2::PoolError> for ApiError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        ApiError::Storage(error.into())
    }
}

impl crate::db::StorageFailure for ApiError {
    fn storage_error(&self) -> Option<&crate::db::StorageError> {
        match self {
            ApiError::Storage(error) => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ApiError;

    #[test]
    fn every_code_is_documented_once() {
        let text = || "x".to_string();
        let errors = [
            ApiError::InvalidRequest(text()),
            ApiError::InvalidAmount(text()),
            ApiError::Unauthorized(text()),
            ApiError::Forbidden(text()),
            ApiError::NotFound(text()),
            ApiError::IdempotencyConflict(text()),
            ApiError::InvalidState(text()),
            ApiError::Conflict(text()),
            ApiError::PayloadTooLarge(1),
            ApiError::RateLimited(std::time::Duration::from_secs(1)),
            ApiError::RequestTimeout,
            ApiError::UnparseableNotification(text()),
            ApiError::NoPayeeAvailable,
            ApiError::AmountsExhausted,
            ApiError::Unavailable(text()),
            ApiError::Storage(crate::db::StorageError::PoolExhausted),
            ApiError::Internal(text()),
        ];
        // No wildcard arm: a new variant does not compile until it is numbered here, next to the
        // list it must join; `errors` holds one of each number, 0 to the highest.
        let variant = |error: &ApiError| match error {
            ApiError::InvalidRequest(_) => 0,
            ApiError::InvalidAmount(_) => 1,
            ApiError::Unauthorized(_) => 2,
            ApiError::Forbidden(_) => 3,
            ApiError::NotFound(_) => 4,
            ApiError::IdempotencyConflict(_) => 5,
            ApiError::InvalidState(_) => 6,
            ApiError::Conflict(_) => 7,
            ApiError::PayloadTooLarge(_) => 8,
            ApiError::RateLimited(_) => 9,
            ApiError::RequestTimeout => 10,
            ApiError::UnparseableNotification(_) => 11,
            ApiError::NoPayeeAvailable => 12,
            ApiError::AmountsExhausted => 13,
            ApiError::Unavailable(_) => 14,
            ApiError::Storage(_) => 15,
            ApiError::Internal(_) => 16,
        };
        let variants: std::collections::BTreeSet<usize> = errors.iter().map(variant).collect();
        assert_eq!(variants, (0..=16).collect());
        let codes: std::collections::BTreeSet<&str> = errors.iter().map(ApiError::code).collect();
        let documented: std::collections::BTreeSet<&str> =
            ApiError::CODES.iter().copied().collect();
        assert_eq!(codes, documented);
        assert_eq!(documented.len(), ApiError::CODES.len());
    }
}
