//! V免签's listener app: `/appHeart` (the device is online) and `/appPush` (a payment it saw),
//! signed with the device's secret.

use actix_web::{HttpRequest, HttpResponse, route, web};

use super::{VmqAnswer, failure, vmq_response};
use crate::compat::{Fields, read_fields, require};
use crate::config::Protocol;
use crate::core::compat::{channel_of_vmq_type, parse_vmq_price};
use crate::core::devices::{Heartbeat, authenticate, record_heartbeat};
use crate::core::notifications::{
    AndroidMetadata, Credentials, Notification, check_notification_fields,
};
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::receive::receive;
use crate::money::Amount;

/// The listener app's credentials: `sign = md5(message + device secret)` with `t` in ms.
fn app_credentials(state: &AppState, message: String, fields: &Fields) -> Credentials {
    Credentials::Md5 {
        message,
        timestamp_ms: fields.get("t").map(str::to_string),
        sign: fields.get("sign").map(str::to_string),
        window: state.settings.compat_window,
    }
}

/// The V免签 app's heartbeat: `t` (ms) and `sign = md5(t + key)`.
#[utoipa::path(
    tag = "compat: V免签",
    params(("t" = String, Query, description = "Client time (ms)"), ("sign" = String, Query, description = "md5(t + device secret)")),
    responses(
        (status = 200, description = "`{code: 1}`, or `{code: -1, msg}`", body = VmqAnswer),
        (status = 404, description = "`not_found`: V免签 is switched off"),
    )
)]
#[route("/appHeart", method = "GET", method = "POST")]
pub async fn app_heart(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require(&state.settings, Protocol::Vmq)?;
    let fields = read_fields(&req, payload).await?;
    let credentials = app_credentials(&state, fields.text("t").to_string(), &fields);
    let outcome = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let device = authenticate(conn, &credentials, &fields.raw)?;
            record_heartbeat(conn, &device.id, &Heartbeat::default())
        })
        .await;
    Ok(match outcome {
        Ok(_) => vmq_response(1, "成功", None),
        Err(error) => failure(&error),
    })
}

/// The V免签 app's payment push: `t` (ms), `type` (1 WeChat, 2 Alipay), `price` and
/// `sign = md5(type + price + t + key)`. A repeat (same `t` and `sign`, with or without
/// `force_push=true`) credits once; a `t` outside `SOLOPAY_COMPAT_WINDOW_SECS` is refused.
#[utoipa::path(
    tag = "compat: V免签",
    params(
        ("t" = String, Query, description = "Client time (ms)"),
        ("type" = String, Query, description = "1 WeChat, 2 Alipay"),
        ("price" = String, Query, description = "The amount received, as the app prints it (`1.0`)"),
        ("sign" = String, Query, description = "md5(type + price + t + device secret)"),
    ),
    responses(
        (status = 200, description = "`{code: 1}` once recorded (matched or kept), or `{code: -1, msg}`", body = VmqAnswer),
        (status = 404, description = "`not_found`: V免签 is switched off"),
    )
)]
#[route("/appPush", method = "GET", method = "POST")]
pub async fn app_push(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require(&state.settings, Protocol::Vmq)?;
    let fields = read_fields(&req, payload).await?;
    let (t, kind, price) = (
        fields.text("t").to_string(),
        fields.text("type").to_string(),
        fields.text("price").to_string(),
    );
    let credentials = app_credentials(&state, format!("{kind}{price}{t}"), &fields);
    let raw = web::Bytes::from(fields.raw.clone());
    let read = move |_: &[u8]| {
        let channel = channel_of_vmq_type(&kind)
            .ok_or_else(|| ApiError::InvalidRequest("type must be 1 or 2".into()))?;
        let amount = parse_vmq_price(&price, Amount::storage_limit())?;
        if t.is_empty() || t.starts_with('0') || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::InvalidRequest(
                "t must be the time in milliseconds, digits only".into(),
            ));
        }
        // The same push again (the app retries with the same t and sign) is the same payment.
        // The sign covers type + price + t glued together, so the fields could be re-split
        // (price=10.0&t=0<t> for price=10.00&t=<t>) under the same sign: `t` in plain digits
        // rules that out (moving a digit into or out of it leaves the window).
        let notification_id = format!("vmq_{t}_{kind}_{price}");
        check_notification_fields(
            &notification_id,
            [("type", None), ("price", None), ("t", None)],
        )?;
        Ok(Notification {
            notification_id,
            channel: Some(channel),
            amount: Some(amount),
            package: None,
            title: None,
            text: None,
            reported_at: t
                .parse()
                .ok()
                .and_then(chrono::DateTime::from_timestamp_millis),
            listener_vouches: true,
            // The app sends a new `t` on each retry: its pushes are told apart by content.
            distinct_ids: false,
            android: AndroidMetadata::default(),
        })
    };
    let answered = receive(&state, &req, "vmq", credentials, raw, read).await;
    Ok(match answered {
        Ok(_) => vmq_response(1, "成功", None),
        Err(error) => failure(&error),
    })
}
