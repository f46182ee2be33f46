//! V免签's `/getState`: whether a listener is online, for the merchant `SOLOPAY_VMQ_MERCHANT`
//! names.

use actix_web::{HttpRequest, HttpResponse, route, web};
use serde::Serialize;

use super::{VmqAnswer, VmqOutcome, serve, signing_merchant};
use crate::compat::Fields;
use crate::core::compat::unix_or_zero;
use crate::core::devices::{ListenerState, ListenerStatus, listener_state};
use crate::error::ApiError;
use crate::http::AppState;

/// `/getState`'s fields, as sent.
pub struct VmqGetState {
    /// The merchant's clock; signed, not checked.
    t: String,
    /// `md5(t + key)`.
    sign: String,
}

impl From<Fields> for VmqGetState {
    fn from(fields: Fields) -> VmqGetState {
        VmqGetState {
            t: fields.text("t").to_string(),
            sign: fields.text("sign").to_string(),
        }
    }
}

/// `/getState`'s answer.
#[derive(Debug, Serialize)]
struct VmqListenerState {
    /// The last heartbeat of any listening device, seconds since the epoch (0: never).
    lastheart: i64,
    /// The last payment received, seconds since the epoch (0: never).
    lastpay: i64,
    /// 1 a listener is online, 0 none is, -1 none was ever seen.
    state: i8,
}

impl From<ListenerState> for VmqListenerState {
    fn from(listeners: ListenerState) -> VmqListenerState {
        VmqListenerState {
            lastheart: unix_or_zero(listeners.last_heartbeat_at),
            lastpay: unix_or_zero(listeners.last_payment_at),
            state: match listeners.status {
                ListenerStatus::Online => 1,
                ListenerStatus::Offline => 0,
                ListenerStatus::NeverSeen => -1,
            },
        }
    }
}

/// Whether a listener is online: `t` and `sign = md5(t + key)`.
#[utoipa::path(
    tag = "compat: V免签",
    params(("t" = String, Query), ("sign" = String, Query, description = "md5(t + key)")),
    responses(
        (status = 200, description = "`{code: 1, data: {lastheart, lastpay, state}}`, or `{code: -1, msg}`", body = VmqAnswer),
        (status = 404, description = "`not_found`: V免签 is switched off"),
    )
)]
#[route("/getState", method = "GET", method = "POST")]
pub async fn get_state(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    serve(&state, &req, payload, async |request: VmqGetState| {
        let (merchant_id, offline_after) = (
            state.settings.vmq_merchant.clone(),
            state.settings.device_offline_after,
        );
        let listeners = state
            .db
            .run(move |conn| -> Result<_, ApiError> {
                signing_merchant(conn, merchant_id.as_deref(), &request.t, &request.sign)?;
                Ok(listener_state(conn, offline_after)?)
            })
            .await?;
        Ok(VmqOutcome::success(&VmqListenerState::from(listeners)))
    })
    .await
}
