//! The payment page the old protocols send payers to (`/pay/{id}`): the QR code, the exact amount
//! to pay, a countdown, and a long-poll of the order that sends the payer back to the shop once
//! paid (`/pay/{id}/return`). Small and self-contained: the QR code is drawn on the server as
//! inline SVG; no script, style or font is fetched from anywhere.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, LOCATION};
use actix_web::{HttpResponse, get, web};

use crate::core::compat::return_location;
use crate::core::merchants::order_merchant;
use crate::core::orders::{self as order_rules, Order};
use crate::core::platform_keys::epay_v2_key;
use crate::domain::{OrderProtocol, OrderStatus};
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::html::{FormTarget, Nonce, escape, page, qr_svg};
use crate::money::Amount;

pub(crate) const STYLE: &str = "body{font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;\
background:#f4f5f7;margin:0;display:flex;justify-content:center}main{background:#fff;margin:24px 12px;\
padding:24px;border-radius:12px;max-width:360px;width:100%;text-align:center;box-shadow:0 1px 4px #0002}\
h1{font-size:18px;margin:0 0 8px}.amount{font-size:40px;margin:8px 0;color:#111}.hint{color:#b45309;\
font-size:14px}.qr svg{width:240px;height:240px}.status{font-size:15px;color:#555}.done{color:#15803d}\
.gone{color:#b91c1c}";

/// A page with a title and a message (errors of the browser-facing protocols).
fn message_page(title: &str, message: &str, nonce: &Nonce) -> String {
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style nonce=\"{nonce}\">{STYLE}</style></head><body><main><h1>{title}</h1>\
         <p class=\"status gone\">{message}</p></main></body></html>",
        title = escape(title),
        message = escape(message),
        nonce = nonce.as_str(),
    )
}

fn payment_page(order: &Order, nonce: &Nonce) -> String {
    let amount = Amount::from_stored(order.payable_amount).to_string();
    let title = order.subject.as_deref().unwrap_or("订单支付");
    let channel = match order.channel {
        crate::domain::Channel::Wechat => "微信",
        crate::domain::Channel::Alipay => "支付宝",
    };
    let hint = if order.qr_fixed_amount {
        format!("请用{channel}扫码支付")
    } else {
        format!(
            "请用{channel}扫码，并输入 <strong>{amount}</strong> 元。金额必须完全一致，否则无法自动到账。"
        )
    };
    let (status_class, status_text) = match order.status {
        OrderStatus::Pending => ("status", "等待支付…"),
        OrderStatus::Paid => ("status done", "支付成功"),
        OrderStatus::Expired | OrderStatus::Closed => ("status gone", "订单已过期"),
    };
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>支付 ¥{amount}</title><style nonce=\"{nonce}\">{STYLE}</style></head><body><main>\
         <h1>{title}</h1><p class=\"amount\">¥{amount}</p><p class=\"hint\">{hint}</p>\
         <div class=\"qr\">{qr}</div><p id=\"status\" class=\"{status_class}\">{status_text}</p>\
         <p id=\"countdown\" class=\"status\"></p></main><script nonce=\"{nonce}\">\
         const id={id},expires=Date.parse({expires}),st=document.getElementById('status'),\
         cd=document.getElementById('countdown');let over=false;\
         function show(c,t){{st.className='status '+c;st.textContent=t;over=true;cd.textContent='';}}\
         function tick(){{if(over)return;const s=Math.max(0,Math.round((expires-Date.now())/1000));\
         cd.textContent='剩余 '+Math.floor(s/60)+' 分 '+(s%60)+' 秒';if(s>0)setTimeout(tick,1000);}}\
         async function poll(){{while(!over){{try{{const r=await fetch('/orders/'+id+'?wait=25',\
         {{cache:'no-store'}});if(!r.ok){{await new Promise(q=>setTimeout(q,2000));continue;}}const o=await r.json();if(o.status==='paid'){{show('done','支付成功，正在返回商户…');\
         setTimeout(()=>location.href='/pay/'+id+'/return',800);return;}}if(o.status!=='pending'){{\
         show('gone','订单已过期，请返回商户重新下单');return;}}}}catch(e){{await new Promise(r=>setTimeout(r,2000));}}}}}}\
         if({pending}){{tick();poll();}}</script></body></html>",
        title = escape(title),
        hint = hint,
        qr = qr_svg(&order.qr_code, 240),
        id = serde_json::Value::String(order.id.clone()),
        expires = serde_json::Value::String(order.expires_at.to_rfc3339()),
        pending = order.status == OrderStatus::Pending,
        nonce = nonce.as_str(),
    )
}

/// A page of the old protocols' payers, which post no form.
pub(crate) fn page_response(body: String, nonce: &Nonce) -> HttpResponse {
    page(StatusCode::OK, body, nonce, FormTarget::None)
}

/// A page saying why a browser's request was refused, with `status`.
pub fn refusal_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let nonce = Nonce::new();
    page(
        status,
        message_page(title, message, &nonce),
        &nonce,
        FormTarget::None,
    )
}

/// The payment page of an order (public: the order id is unguessable).
#[utoipa::path(
    tag = "orders",
    params(("id" = String, Path, description = "The order id (`ord_…`)")),
    responses(
        (status = 200, description = "The page", content_type = "text/html"),
        (status = 404, description = "`not_found`"),
    )
)]
#[get("/pay/{id}")]
pub async fn pay_page(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let order = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            order_rules::read_order(conn, &id)?.ok_or_else(|| ApiError::not_found("order"))
        })
        .await?;
    let nonce = Nonce::new();
    Ok(page_response(payment_page(&order, &nonce), &nonce))
}

/// Back to the shop once paid: the order's return URL, with the old protocols' signed fields.
#[utoipa::path(
    tag = "orders",
    params(("id" = String, Path, description = "The order id (`ord_…`)")),
    responses(
        (status = 302, description = "To the shop's return URL"),
        (status = 200, description = "A page saying the order is paid (no return URL) or not yet", content_type = "text/html"),
        (status = 404, description = "`not_found`"),
    )
)]
#[get("/pay/{id}/return")]
pub async fn pay_return(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let (order, location) = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let order =
                order_rules::read_order(conn, &id)?.ok_or_else(|| ApiError::not_found("order"))?;
            let merchant = order_merchant(conn, &order)?;
            let platform_key = match order.protocol {
                OrderProtocol::Epay2 => Some(epay_v2_key(conn)?),
                _ => None,
            };
            let now = chrono::Utc::now().timestamp();
            let location = return_location(&order, &merchant, platform_key.as_deref(), now);
            Ok((order, location))
        })
        .await?;
    let nonce = Nonce::new();
    // A return URL that cannot be a header (stored before URLs were checked for line breaks)
    // is not followed: the payer is told the order is paid.
    let location = location.and_then(|location| HeaderValue::try_from(location).ok());
    Ok(match (order.status, location) {
        (OrderStatus::Paid, Some(location)) => HttpResponse::Found()
            .insert_header((LOCATION, location))
            .finish(),
        (OrderStatus::Paid, None) => page_response(
            message_page("支付成功", "订单已支付，可以关闭此页面。", &nonce),
            &nonce,
        ),
        _ => page_response(payment_page(&order, &nonce), &nonce),
    })
}
