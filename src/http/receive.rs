//! Receiving a notification, whichever endpoint it came through (`POST /notify`, a forwarder,
//! the V免签 app): stored, authenticated, read and matched by the core, and answered with what
//! became of its payment.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::error::RuleError;
use crate::core::notifications::{
    Credentials, Notification, receive_notification, refuse_unreadable,
};
use crate::db::payments::Payment;
use crate::domain::NotificationSource;
use crate::domain::PaymentResult;
use crate::error::ApiError;
use crate::http::AppState;

/// The answer to a notification: what became of the payment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotifyResult {
    pub result: PaymentResult,
    #[schema(example = "pay_5d1f0e2c3b4a59687766554433221100")]
    pub payment_id: String,
    /// The order the payment paid, when `result` is `matched`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The first report of the same payment, when `result` is `duplicate` and there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

impl From<&Payment> for NotifyResult {
    fn from(payment: &Payment) -> Self {
        NotifyResult {
            result: payment.result,
            payment_id: payment.id.clone(),
            order_id: payment.order_id.clone(),
            duplicate_of: payment.duplicate_of.clone(),
        }
    }
}

/// Receives a notification (stored, authenticated, read, matched by the core) and answers with
/// what became of its payment; shared by every notification endpoint.
pub async fn receive<F>(
    state: &AppState,
    req: &HttpRequest,
    source: NotificationSource,
    credentials: Credentials,
    body: web::Bytes,
    read: F,
) -> Result<HttpResponse, ApiError>
where
    F: Fn(&[u8]) -> Result<Notification, RuleError> + Send + 'static,
{
    let remote = req.peer_addr().map(|a| a.ip().to_string());
    let rules = state.rules.clone();
    let outcome = state
        .db
        .run(move |conn| -> Result<_, RuleError> {
            let payment = receive_notification(
                conn,
                &rules,
                source,
                &credentials,
                &body,
                remote.as_deref(),
                read,
            )?;
            refuse_unreadable(payment)
        })
        .await;
    state.metrics.record_notification(match &outcome {
        Ok(payment) => payment.result.as_str(),
        Err(error) => error.code(),
    });
    Ok(HttpResponse::Ok().json(NotifyResult::from(&outcome.map_err(ApiError::from)?)))
}
