//! The operator's endpoints under `/admin`, authenticated by the operator token. Every change
//! an operator makes is recorded in the audit log, in the same transaction.

pub mod alerts;
pub mod audit;
pub mod devices;
pub mod merchants;
pub mod orders;
pub mod payees;
pub mod payments;
pub mod summary;
pub mod views;
pub mod webhooks;

use crate::error::ApiError;

/// A list page's size: 1–100, 50 by default.
pub fn page_size(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(n @ 1..=100) => Ok(n),
        Some(_) => Err(ApiError::InvalidRequest(
            "limit must be from 1 to 100".into(),
        )),
    }
}

/// Splits rows fetched with one row more than the page size into the page and whether more
/// follow.
pub fn into_page<T>(mut rows: Vec<T>, size: i64) -> (Vec<T>, bool) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let has_more = rows.len() > size;
    rows.truncate(size);
    (rows, has_more)
}

/// For a field where `null` means something (reset, remove): `Some(None)` for an explicit
/// `null`, `None` when the field is absent (with `#[serde(default)]`).
pub fn explicit_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}
