//! Orders: created and managed by merchant backends, polled by shop pages.

use std::time::Duration;

use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::api::extract::{MerchantAuth, MerchantKey};
use crate::core::merchants;
use crate::core::orders::{self as order_rules, Creation, OrderLookup, OrderRequest};
use crate::domain::{Channel, MerchantOrderId, OrderProtocol, OrderStatus};
use crate::domain::{MerchantId, OrderId};
use crate::error::ApiError;
use crate::http::{AppState, check_text, check_url, parse_json, parse_query};
use crate::money::AmountInput;
use crate::views::{Order, PublicOrder};

/// The body of `POST /orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    /// The merchant's own order number: 1–64 characters of `[A-Za-z0-9._:-]`, unique per merchant.
    #[schema(example = "A1001")]
    pub merchant_order_id: String,
    #[schema(value_type = AmountInput)]
    pub amount: AmountInput,
    pub channel: Channel,
    /// What the payer buys (at most 256 characters).
    #[schema(example = "VIP, 1 month")]
    pub subject: Option<String>,
    /// Where webhooks about this order go; defaults to the merchant's.
    #[schema(example = "https://shop.example/pay/hook")]
    pub notify_url: Option<String>,
    /// Where the shop page sends the payer afterwards.
    #[schema(example = "https://shop.example/orders/A1001")]
    pub return_url: Option<String>,
    /// Seconds until the order expires, 60–3600 (default from settings, 300).
    #[schema(minimum = 60, maximum = 3600, example = 300)]
    pub expires_in: Option<u32>,
    /// Any JSON object of at most 4 KiB, echoed back.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

const MAX_METADATA_BYTES: usize = 4096;

impl CreateOrderRequest {
    fn validate(self, state: &AppState) -> Result<OrderRequest, ApiError> {
        let merchant_order_id =
            MerchantOrderId::parse(&self.merchant_order_id, OrderProtocol::Native)?;
        let amount = self.amount.parse(state.settings.max_amount)?;
        if let Some(subject) = &self.subject {
            check_text("subject", subject, 256)?;
        }
        if let Some(url) = &self.notify_url {
            check_url("notify_url", url)?;
        }
        if let Some(url) = &self.return_url {
            check_url("return_url", url)?;
        }
        if let Some(secs) = self.expires_in
            && !(60..=3600).contains(&secs)
        {
            return Err(ApiError::InvalidRequest(
                "expires_in must be from 60 to 3600 seconds".into(),
            ));
        }
        let metadata = match self.metadata {
            None | Some(serde_json::Value::Null) => None,
            Some(value @ serde_json::Value::Object(_)) => {
                if value.to_string().len() > MAX_METADATA_BYTES {
                    return Err(ApiError::InvalidRequest(
                        "metadata must be at most 4 KiB".into(),
                    ));
                }
                Some(value)
            }
            Some(_) => {
                return Err(ApiError::InvalidRequest(
                    "metadata must be a JSON object".into(),
                ));
            }
        };
        Ok(OrderRequest {
            merchant_order_id,
            amount,
            channel: self.channel,
            subject: self.subject,
            notify_url: self.notify_url,
            return_url: self.return_url,
            expires_in: self.expires_in,
            metadata,
            protocol: OrderProtocol::Native,
            compat: None,
        })
    }
}

/// Create an order with a unique payable amount.
///
/// Repeating the same request (same `merchant_order_id`, same parameters) returns the same order
/// with `200` and creates nothing; the same `merchant_order_id` with different parameters is
/// `409 idempotency_conflict`.
#[utoipa::path(
    tag = "orders",
    request_body = CreateOrderRequest,
    security(("merchant_api_key" = [])),
    responses(
        (status = 201, description = "Created", body = Order),
        (status = 200, description = "The same request was made before: its order", body = Order),
        (status = 400, description = "`invalid_request` or `invalid_amount`"),
        (status = 401, description = "`unauthorized`"),
        (status = 409, description = "`idempotency_conflict`"),
        (status = 413, description = "`payload_too_large`"),
        (status = 503, description = "`no_payee_available` or `amounts_exhausted`"),
    )
)]
#[post("/orders")]
pub async fn create_order(
    state: web::Data<AppState>,
    key: MerchantKey,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request = match parse_json::<CreateOrderRequest>(payload)
        .await
        .and_then(|request| request.validate(&state))
    {
        Ok(request) => request,
        Err(invalid) => {
            // A wrong key is answered before a bad body, as on every merchant endpoint.
            state
                .db
                .run(move |conn| merchants::authenticate(conn, key.creator()))
                .await?;
            return Err(invalid);
        }
    };
    let rules = state.rules.clone();
    // The key is checked by the statement that creates the order.
    let creation = state
        .db
        .run_allocating(Some(request.channel), move |conn| -> Result<_, ApiError> {
            Ok(order_rules::create_order(
                conn,
                key.creator(),
                &request,
                &rules,
            )?)
        })
        .await?;
    Ok(match creation {
        Creation::Created(order) => HttpResponse::Created()
            .insert_header((LOCATION, format!("/orders/{}", order.id)))
            .json(Order::from(&order)),
        Creation::Repeated(order) => HttpResponse::Ok().json(Order::from(&order)),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct WaitQuery {
    /// Wait up to this many seconds (1–30) for the order to leave `pending`.
    #[param(minimum = 1, maximum = 30)]
    pub wait: Option<u64>,
}

/// Read an order's status (public: a shop page needs only the order id).
///
/// With `?wait=N` the answer comes as soon as the order is no longer `pending` (whichever
/// instance of the service changed it), or after N seconds with the current state.
#[utoipa::path(
    tag = "orders",
    params(("id" = String, Path, description = "The order id (`ord_…`)"), WaitQuery),
    responses(
        (status = 200, description = "The order", body = PublicOrder),
        (status = 400, description = "`invalid_request` (bad `wait`)"),
        (status = 404, description = "`not_found`"),
    )
)]
#[get("/orders/{id}")]
pub async fn get_order(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<WaitQuery>,
) -> Result<web::Json<PublicOrder>, ApiError> {
    let id = id.into_inner();
    let wait = match query.wait {
        None => Duration::ZERO,
        Some(secs @ 1..=30) => Duration::from_secs(secs),
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "wait must be from 1 to 30 seconds".into(),
            ));
        }
    };
    let order = wait_for_change(&state, id, wait).await?;
    Ok(web::Json(PublicOrder::from(&order)))
}

/// Reads the order, and while it is pending waits (up to `wait`) for a change notification,
/// its expiry, or the instance shutting down, reading again after each.
async fn wait_for_change(
    state: &AppState,
    id: String,
    wait: Duration,
) -> Result<crate::db::orders::Order, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let subscription = state.watch.subscribe(&id);
    let mut shutdown = state.shutdown.clone();
    loop {
        let notified = subscription.notified();
        tokio::pin!(notified);
        // Registered before the read: a change committed after the read still wakes us.
        notified.as_mut().enable();

        let read_id = id.clone();
        let order = state
            .db
            .run(move |conn| order_rules::read_order(conn, &read_id))
            .await?
            .ok_or_else(|| ApiError::not_found("order"))?;
        let now = tokio::time::Instant::now();
        if order.status != OrderStatus::Pending || now >= deadline || *shutdown.borrow() {
            return Ok(order);
        }
        // Wake at the expiry to report it (the read expires the order). While changes are heard
        // (LISTEN, checked by a ping, and every waiter is woken when it reconnects) nothing else
        // needs a read; while they cannot be, read again every second.
        let until_expiry = (order.expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default()
            .max(Duration::from_millis(200));
        let fallback = if state.watch.is_listening() {
            wait
        } else {
            Duration::from_secs(1)
        };
        let slice = (deadline - now).min(until_expiry).min(fallback);
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(slice) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FindQuery {
    /// The merchant's own order number.
    pub merchant_order_id: String,
}

/// Find one of the merchant's orders by its `merchant_order_id`.
#[utoipa::path(
    tag = "orders",
    params(FindQuery),
    security(("merchant_api_key" = [])),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[get("/orders")]
pub async fn find_order(
    state: web::Data<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    req: HttpRequest,
) -> Result<web::Json<Order>, ApiError> {
    // Read after the key checked out: a wrong key is 401 whatever the query says.
    let merchant_order_id = parse_query::<FindQuery>(&req)?.merchant_order_id;
    let order = state
        .db
        .run(move |conn| {
            let lookup = OrderLookup::ByMerchantOrderId(&merchant_order_id);
            order_rules::read_merchant_order(conn, MerchantId(&merchant.id), lookup)
        })
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    Ok(web::Json(Order::from(&order)))
}

/// Close a pending order: its amount can no longer pay it.
///
/// Closing a closed order returns it unchanged; a paid or expired order is `409 invalid_state`.
/// A payment of a closed order's amount within the grace is kept as unmatched.
#[utoipa::path(
    tag = "orders",
    params(("id" = String, Path, description = "The order id (`ord_…`)")),
    security(("merchant_api_key" = [])),
    responses(
        (status = 200, description = "The closed order", body = Order),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found` (also another merchant's order)"),
        (status = 409, description = "`invalid_state`: the order is paid or expired"),
    )
)]
#[post("/orders/{id}/close")]
pub async fn close_order(
    state: web::Data<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    id: web::Path<String>,
) -> Result<web::Json<Order>, ApiError> {
    let id = id.into_inner();
    let grace = state.rules.late_payment_grace;
    let order = state
        .db
        .run(move |conn| {
            order_rules::close_order(conn, MerchantId(&merchant.id), OrderId(&id), grace)
        })
        .await?;
    Ok(web::Json(Order::from(&order)))
}
