//! The cashier page (`/pay/checkout/{id}`): where the payer of a 易支付 order sent without a
//! `type` picks the channel, among those with an online listener. Choosing posts back here;
//! the order (with its unique payable amount on a payee of that channel) is created then, once,
//! and the payer is sent to its payment page.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, get, post, web};

use crate::compat::page::{STYLE, refusal_page};
use crate::core::checkouts::{Checkout, choose_channel, find_checkout, online_channels};
use crate::core::error::RuleError;
use crate::domain::Channel;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::html::{FormTarget, Nonce, escape, page};
use crate::money::Amount;

fn channel_label(channel: Channel) -> &'static str {
    match channel {
        Channel::Wechat => "微信支付",
        Channel::Alipay => "支付宝",
    }
}

fn cashier_page(checkout: &Checkout, channels: &[Channel], nonce: &Nonce) -> String {
    let amount = Amount::from_stored(checkout.amount).to_string();
    let title = checkout.subject.as_deref().unwrap_or("订单支付");
    let buttons: String = if channels.is_empty() {
        "<p class=\"status gone\">暂无可用的支付方式，请稍后再试。</p>".to_string()
    } else {
        channels
            .iter()
            .map(|channel| {
                format!(
                    "<p><button name=\"channel\" value=\"{}\">{}</button></p>",
                    channel.as_str(),
                    channel_label(*channel)
                )
            })
            .collect()
    };
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>选择支付方式</title><style nonce=\"{nonce}\">{STYLE}\
         button{{font-size:17px;padding:10px 24px;min-width:200px;border-radius:8px;\
         border:1px solid #ccc;background:#fff}}</style></head><body><main><h1>{title}</h1>\
         <p class=\"amount\">¥{amount}</p><p class=\"hint\">请选择支付方式（实付金额可能多几分钱，\
         以区分订单）</p><form method=\"post\" action=\"/pay/checkout/{id}\">{buttons}</form>\
         </main></body></html>",
        nonce = nonce.as_str(),
        title = escape(title),
        id = escape(&checkout.id),
    )
}

/// The cashier page of a checkout: a button per channel with an online listener. Once the payer
/// chose, the page sends to the order's payment page.
#[utoipa::path(
    tag = "orders",
    params(("id" = String, Path, description = "The checkout id (`chk_…`)")),
    responses(
        (status = 200, description = "The page", content_type = "text/html"),
        (status = 303, description = "The payer chose already: to the payment page"),
        (status = 404, description = "`not_found`"),
    )
)]
#[get("/pay/checkout/{id}")]
pub async fn cashier(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let rules = state.rules.clone();
    let (checkout, expired, channels) = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let (checkout, expired) =
                find_checkout(conn, &id)?.ok_or_else(|| ApiError::not_found("checkout"))?;
            let channels = online_channels(conn, &rules)?;
            Ok((checkout, expired, channels))
        })
        .await?;
    if let Some(order_id) = &checkout.order_id {
        return Ok(HttpResponse::SeeOther()
            .insert_header((LOCATION, format!("/pay/{order_id}")))
            .finish());
    }
    if expired {
        return Ok(refusal_page(
            StatusCode::GONE,
            "订单已过期",
            "订单已过期，请返回商户重新下单。",
        ));
    }
    let nonce = Nonce::new();
    Ok(page(
        StatusCode::OK,
        cashier_page(&checkout, &channels, &nonce),
        &nonce,
        FormTarget::ThisService,
    ))
}

/// The payer's choice (`channel=wechat|alipay`, a form): creates the order on that channel, once
/// (a second choice finds the first), and sends to its payment page.
#[utoipa::path(
    tag = "orders",
    params(("id" = String, Path, description = "The checkout id (`chk_…`)")),
    responses(
        (status = 303, description = "To the payment page of the order"),
        (status = 400, description = "A page saying why no order was created", content_type = "text/html"),
        (status = 404, description = "`not_found`"),
    )
)]
#[post("/pay/checkout/{id}")]
pub async fn choose(
    state: web::Data<AppState>,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = crate::http::read_body(payload).await?;
    let choice = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "channel")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let Ok(channel) = choice.parse::<Channel>() else {
        return Ok(refusal_page(
            StatusCode::BAD_REQUEST,
            "无法创建订单",
            "请选择微信支付或支付宝。",
        ));
    };
    let (id, rules) = (id.into_inner(), state.rules.clone());
    let chosen = state
        .db
        .run_allocating(Some(channel), move |conn| {
            choose_channel(conn, &id, channel, &rules)
        })
        .await;
    Ok(match chosen {
        Ok(order) => HttpResponse::SeeOther()
            .insert_header((LOCATION, format!("/pay/{}", order.id)))
            .finish(),
        Err(RuleError::NotFound(_)) => return Err(ApiError::not_found("checkout")),
        Err(error) => {
            let message = match error {
                RuleError::InvalidState(_) => "订单已过期，请返回商户重新下单。".to_string(),
                RuleError::NoPayeeAvailable => "该支付方式暂不可用，请选择其他方式。".to_string(),
                RuleError::AmountsExhausted => "订单超出负荷，请稍后重试。".to_string(),
                other => ApiError::from(other).to_string(),
            };
            refusal_page(StatusCode::BAD_REQUEST, "无法创建订单", &message)
        }
    })
}
