//! V免签's listener app: `/appHeart` (the device is online) and `/appPush` (a payment it saw),
//! signed with the device's secret. The device is the one whose secret makes the sign match.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, route, web};

use super::{VmqAnswer, VmqOutcome, serve};
use crate::compat::Fields;
use crate::core::compat::{channel_of_vmq_type, parse_vmq_price};
use crate::core::devices::{Heartbeat, authenticate, record_heartbeat};
use crate::core::error::RuleError;
use crate::core::notifications::{
    AndroidMetadata, Credentials, Notification, check_notification_fields,
};
use crate::domain::NotificationSource;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::receive::receive;
use crate::money::Amount;

/// What signs every app request, as sent: the app's clock and
/// `sign = md5(signed fields + device secret)`.
struct AppSign {
    /// Milliseconds since the epoch.
    t: Option<String>,
    sign: Option<String>,
}

impl AppSign {
    fn read(fields: &Fields) -> AppSign {
        AppSign {
            t: fields.get("t").map(str::to_string),
            sign: fields.get("sign").map(str::to_string),
        }
    }

    /// `t` as the sign covers it (empty when absent).
    fn t(&self) -> &str {
        self.t.as_deref().unwrap_or_default()
    }

    /// The credentials of a request whose signed fields concatenate to `signed_text`; `t` must
    /// fall within `window` of the server's clock.
    fn credentials(&self, signed_text: String, window: Duration) -> Credentials {
        Credentials::Md5 {
            message: signed_text,
            timestamp_ms: self.t.clone(),
            sign: self.sign.clone(),
            window,
        }
    }
}

/// `/appHeart`: `t` and `sign = md5(t + device secret)`.
pub struct AppHeart {
    signed: AppSign,
    /// The request as received.
    raw: web::Bytes,
}

impl From<Fields> for AppHeart {
    fn from(fields: Fields) -> AppHeart {
        AppHeart {
            signed: AppSign::read(&fields),
            raw: fields.raw.into(),
        }
    }
}

impl AppHeart {
    fn credentials(&self, window: Duration) -> Credentials {
        self.signed.credentials(self.signed.t().to_string(), window)
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
    serve(&state, &req, payload, async |heartbeat: AppHeart| {
        let credentials = heartbeat.credentials(state.settings.compat_window);
        state
            .db
            .run(move |conn| -> Result<_, ApiError> {
                let device = authenticate(conn, &credentials, &heartbeat.raw)?;
                Ok(record_heartbeat(conn, &device.id, &Heartbeat::default())?)
            })
            .await?;
        Ok(VmqOutcome::Success(None))
    })
    .await
}

/// `/appPush`: `t`, `type`, `price` and `sign = md5(type + price + t + device secret)`, as
/// sent.
pub struct AppPush {
    signed: AppSign,
    /// 1 WeChat, 2 Alipay.
    pay_type: String,
    /// The amount received, as the app prints a double (`1.0`).
    price: String,
    /// The request as received.
    raw: web::Bytes,
}

impl From<Fields> for AppPush {
    fn from(fields: Fields) -> AppPush {
        AppPush {
            signed: AppSign::read(&fields),
            pay_type: fields.text("type").to_string(),
            price: fields.text("price").to_string(),
            raw: fields.raw.into(),
        }
    }
}

impl AppPush {
    fn credentials(&self, window: Duration) -> Credentials {
        let signed_text = format!("{}{}{}", self.pay_type, self.price, self.signed.t());
        self.signed.credentials(signed_text, window)
    }

    /// The payment notification the push reports, read like `POST /notify`'s.
    fn notification(&self) -> Result<Notification, RuleError> {
        let (t, pay_type, price) = (self.signed.t(), &self.pay_type, &self.price);
        let channel = channel_of_vmq_type(pay_type)
            .ok_or_else(|| RuleError::InvalidRequest("type must be 1 or 2".into()))?;
        let amount = parse_vmq_price(price, Amount::storage_limit())?;
        if t.is_empty() || t.starts_with('0') || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RuleError::InvalidRequest(
                "t must be the time in milliseconds, digits only".into(),
            ));
        }
        // The same push again (the app retries with the same t and sign) is the same payment.
        // The sign covers type + price + t glued together, so the fields could be re-split
        // (price=10.0&t=0<t> for price=10.00&t=<t>) under the same sign: `t` in plain digits
        // rules that out (moving a digit into or out of it leaves the window).
        let notification_id = format!("vmq_{t}_{pay_type}_{price}");
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
    }
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
    serve(&state, &req, payload, async |push: AppPush| {
        let credentials = push.credentials(state.settings.compat_window);
        let raw = push.raw.clone();
        // Recorded like any notification; its native answer is not V免签's.
        receive(
            &state,
            &req,
            NotificationSource::Vmq,
            credentials,
            raw,
            move |_| push.notification(),
        )
        .await?;
        Ok(VmqOutcome::Success(None))
    })
    .await
}
