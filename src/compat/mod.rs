//! The older protocols existing clients speak, each a translation to the same core calls (orders,
//! allocation, matching, the webhook outbox) and back. Each can be switched off with
//! `SOLOPAY_COMPAT`; a protocol that is off answers 404.

pub mod forwarder;

use crate::config::{Protocol, Settings};
use crate::error::ApiError;

/// `404` unless `protocol` is served.
pub fn require(settings: &Settings, protocol: Protocol) -> Result<(), ApiError> {
    if settings.serves(protocol) {
        Ok(())
    } else {
        Err(ApiError::NotFound("no such endpoint".into()))
    }
}
