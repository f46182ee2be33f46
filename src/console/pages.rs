//! The console's money pages: the overview of today, the orders (filters, cursor pages, one
//! order with its payments, events and deliveries, paying it by hand) and the payments (by
//! result; assigning one to an order after a confirmation showing both).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Signed, layout};
use crate::core::error::RuleError;
use crate::core::orders::read_order;
use crate::core::reconciliation::{
    Assignment, assign_payment, daily_summary, differences, mark_paid, today_in,
};
use crate::db::devices as device_rows;
use crate::db::events as event_rows;
use crate::db::orders::{self as order_rows, Order, OrderFilter};
use crate::db::payments::{self as payment_rows, Payment, PaymentFilter};
use crate::db::webhooks::{self as delivery_rows, DeliveryFilter};
use crate::domain::{OrderId, OrderStatus, PaymentResult};
use crate::http::AppState;
use crate::money::Amount;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/orders", web::get().to(orders))
        .route("/orders/{id}", web::get().to(order))
        .route("/orders/{id}/mark-paid", web::post().to(pay_by_hand))
        .route("/payments", web::get().to(payments))
        .route("/payments/{id}/assign", web::get().to(confirm_assign))
        .route("/payments/{id}/assign", web::post().to(assign));
}

/// How far back the overview looks for payments waiting for a decision.
const WAITING_WITHIN: Duration = Duration::from_secs(7 * 24 * 3600);
/// The day the overview's "today" is counted in.
const TIMEZONE: &str = "Asia/Shanghai";

pub fn money(amount: rust_decimal::Decimal) -> String {
    Amount::from_stored(amount).to_string()
}

fn when(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn status_class(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Paid => "ok",
        OrderStatus::Pending => "",
        OrderStatus::Expired | OrderStatus::Closed => "muted",
    }
}

pub async fn overview(state: web::Data<AppState>, me: Signed) -> HttpResponse {
    let offline_after = state.settings.device_offline_after;
    let data = me
        .run(&state, move |conn, _| {
            let today = today_in(conn, TIMEZONE)?;
            let totals = daily_summary(conn, today, today, TIMEZONE)?;
            let waiting = payment_rows::waiting_by_result(conn, WAITING_WITHIN)?;
            let devices = device_rows::list_with_online(conn, offline_after)?;
            let failing = delivery_rows::failing(conn, 10)?;
            Ok((totals, waiting, devices, failing))
        })
        .await;
    let (totals, waiting, devices, failing) = match data {
        Ok(data) => data,
        Err(refused) => return refused,
    };
    let t = |key| me.lang.t(key);
    let body = html! {
        section {
            h2 { (t("today")) }
            table id="today" {
                tr { th { (t("channel")) } th class="num" { (t("created")) } th class="num" { (t("paid")) }
                     th class="num" { (t("expired")) } th class="num" { (t("received")) } }
                @for day in &totals {
                    tr {
                        td { (day.channel.as_deref().unwrap_or("—")) }
                        td class="num" { (day.orders_created) }
                        td class="num" { (day.orders_paid) }
                        td class="num" { (day.orders_expired) }
                        td class="num" { "¥" (money(day.amount_paid)) }
                    }
                }
                @if totals.is_empty() { tr { td colspan="5" class="muted" { (t("none")) } } }
            }
        }
        section {
            h2 { (t("waiting")) }
            @if waiting.is_empty() { p class="muted" { (t("none")) } }
            ul {
                @for (result, count) in &waiting {
                    li { a href=(format!("/console/payments?result={result}")) { (result) ": " (count) } }
                }
            }
        }
        section {
            h2 { (t("devices")) }
            table {
                tr { th { (t("name")) } th { (t("status")) } th { (t("last_seen")) } th { (t("battery")) } th { (t("app_version")) } }
                @for (device, online) in &devices {
                    tr {
                        td { (device.name) }
                        td class=(if *online { "ok" } else { "bad" }) { (if *online { t("online") } else { t("offline") }) }
                        td { (device.last_seen_at.as_ref().map(when).unwrap_or_default()) }
                        td { (device.battery.map(|b| format!("{b} %")).unwrap_or_default()) }
                        td { (device.app_version.clone().unwrap_or_default()) }
                    }
                }
            }
        }
        section {
            h2 { (t("failing_webhooks")) }
            @if failing.is_empty() { p class="muted" { (t("none")) } }
            ul {
                @for delivery in &failing {
                    li { a href=(format!("/console/webhooks/{}", delivery.id)) { (delivery.destination) } " · " (delivery.status) " · " (delivery.attempts) }
                }
            }
        }
    };
    layout(me.lang, Some(&me), "/console", me.lang.t("overview"), body)
}

#[derive(Debug, Deserialize)]
pub struct OrderQuery {
    status: Option<OrderStatus>,
    merchant_order_id: Option<String>,
    starting_after: Option<String>,
}

const PAGE: i64 = 50;

async fn orders(
    state: web::Data<AppState>,
    me: Signed,
    query: web::Query<OrderQuery>,
) -> HttpResponse {
    let query = query.into_inner();
    let filter = OrderFilter {
        status: query.status,
        merchant_order_id: query.merchant_order_id.clone().filter(|s| !s.is_empty()),
        starting_after: query.starting_after.clone(),
        limit: PAGE + 1,
        ..OrderFilter::default()
    };
    let rows = match me
        .run(&state, move |conn, _| Ok(order_rows::list(conn, &filter)?))
        .await
    {
        Ok(rows) => rows,
        Err(refused) => return refused,
    };
    let more = rows.len() > usize::try_from(PAGE).unwrap_or(usize::MAX);
    let rows: Vec<&Order> = rows.iter().take(50).collect();
    let t = |key| me.lang.t(key);
    let next = rows.last().filter(|_| more).map(|last| {
        format!(
            "/console/orders?starting_after={}{}",
            last.id,
            query
                .status
                .map(|s| format!("&status={s}"))
                .unwrap_or_default()
        )
    });
    let body = html! {
        form method="get" action="/console/orders" {
            select name="status" {
                option value="" { (t("all")) }
                @for status in OrderStatus::ALL {
                    option value=(status) selected[query.status == Some(*status)] { (status) }
                }
            }
            input name="merchant_order_id" placeholder=(t("merchant_order_id")) value=(query.merchant_order_id.clone().unwrap_or_default());
            button type="submit" { (t("filter")) }
        }
        table {
            tr { th { "id" } th { (t("merchant_order_id")) } th { (t("status")) } th class="num" { (t("amount")) } th class="num" { (t("payable")) } th { (t("created")) } }
            @for order in &rows {
                tr {
                    td { a href=(format!("/console/orders/{}", order.id)) { (order.id) } }
                    td { (order.merchant_order_id) }
                    td class=(status_class(order.status)) { (order.status) }
                    td class="num" { (money(order.amount)) }
                    td class="num" { (money(order.payable_amount)) }
                    td { (when(&order.created_at)) }
                }
            }
        }
        @if let Some(next) = next { a href=(next) { (t("next_page")) " →" } }
    };
    layout(me.lang, Some(&me), "/console/orders", t("orders"), body)
}

fn payment_rows_markup(me: &Signed, payments: &[Payment], assignable: bool) -> Markup {
    let t = |key| me.lang.t(key);
    html! {
        table {
            tr { th { "id" } th { (t("result")) } th class="num" { (t("amount")) } th { (t("reason")) } th { (t("created")) } @if assignable { th {} } }
            @for payment in payments {
                tr {
                    td { (payment.id) }
                    td class=(if payment.result == PaymentResult::Matched { "ok" } else { "bad" }) { (payment.result) }
                    td class="num" { (payment.amount.map(money).unwrap_or_default()) }
                    td class="muted" { (payment.reason.clone().unwrap_or_default()) }
                    td { (when(&payment.created_at)) }
                    @if assignable && payment.order_id.is_none() {
                        td { a href=(format!("/console/payments/{}/assign", payment.id)) { (t("assign")) } }
                    }
                }
            }
        }
    }
}

async fn order(state: web::Data<AppState>, me: Signed, id: web::Path<String>) -> HttpResponse {
    let id = id.into_inner();
    let data = me
        .run(&state, move |conn, _| {
            let order = read_order(conn, &id)?.ok_or_else(|| RuleError::not_found("order"))?;
            let payments = payment_rows::of_order(conn, &id)?;
            let unmatched =
                payment_rows::unmatched_like(conn, &order.payee_id, order.payable_amount)?;
            let events = event_rows::of_order(conn, &id)?;
            let deliveries = delivery_rows::list(
                conn,
                &DeliveryFilter {
                    order_id: Some(id.clone()),
                    limit: 100,
                    ..DeliveryFilter::default()
                },
            )?;
            Ok((order, payments, unmatched, events, deliveries))
        })
        .await;
    let (order, payments, unmatched, events, deliveries) = match data {
        Ok(data) => data,
        Err(refused) => return refused,
    };
    let t = |key| me.lang.t(key);
    let body = html! {
        section {
            table {
                tr { th { (t("merchant_order_id")) } td { (order.merchant_order_id) } }
                tr { th { (t("status")) } td class=(status_class(order.status)) { (order.status) @if order.paid_late { " (late)" } } }
                tr { th { (t("channel")) } td { (order.channel) } }
                tr { th { (t("amount")) } td { "¥" (money(order.amount)) } }
                tr { th { (t("payable")) } td { "¥" (money(order.payable_amount)) } }
                tr { th { (t("created")) } td { (when(&order.created_at)) } }
                tr { th { (t("paid")) } td { (order.paid_at.as_ref().map(when).unwrap_or_default()) } }
            }
            @if order.status != OrderStatus::Paid {
                form method="post" action=(format!("/console/orders/{}/mark-paid", order.id)) {
                    (me.csrf_field())
                    input name="note" required maxlength="500" placeholder=(t("note")) size="50";
                    button type="submit" { (t("mark_paid")) }
                }
            }
        }
        h2 { (t("payments")) }
        (payment_rows_markup(&me, &payments, false))
        @if !unmatched.is_empty() {
            h3 { (t("waiting")) }
            (payment_rows_markup(&me, &unmatched, true))
        }
        h2 { (t("events")) }
        ul { @for event in &events { li { (event.event_type) " · " (when(&event.created_at)) } } }
        h2 { (t("deliveries")) }
        ul {
            @for (delivery, _) in &deliveries {
                li { a href=(format!("/console/webhooks/{}", delivery.id)) { (delivery.destination) } " · " (delivery.status) " · " (delivery.attempts) }
            }
        }
    };
    layout(me.lang, Some(&me), "/console/orders", &order.id, body)
}

#[derive(Debug, Deserialize)]
struct NoteForm {
    csrf: String,
    note: String,
}

async fn pay_by_hand(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<NoteForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Err(error) = crate::http::check_text("note", &form.note, 500) {
        return me.refuse(error);
    }
    let (id, rules) = (id.into_inner(), state.rules.clone());
    let target = format!("/console/orders/{id}");
    me.change(&state, &form.csrf, &target, move |conn, operator| {
        mark_paid(conn, &rules, operator, OrderId(&id), &form.note)
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct PaymentQuery {
    result: Option<PaymentResult>,
    starting_after: Option<String>,
}

async fn payments(
    state: web::Data<AppState>,
    me: Signed,
    query: web::Query<PaymentQuery>,
) -> HttpResponse {
    let query = query.into_inner();
    let filter = PaymentFilter {
        result: query.result,
        starting_after: query.starting_after.clone(),
        limit: PAGE + 1,
        ..PaymentFilter::default()
    };
    let rows = match me
        .run(&state, move |conn, _| {
            Ok(payment_rows::list(conn, &filter)?)
        })
        .await
    {
        Ok(rows) => rows,
        Err(refused) => return refused,
    };
    let more = rows.len() > 50;
    let page: Vec<Payment> = rows.into_iter().take(50).collect();
    let t = |key| me.lang.t(key);
    let next = page.last().filter(|_| more).map(|last| {
        format!(
            "/console/payments?starting_after={}{}",
            last.id,
            query
                .result
                .map(|r| format!("&result={r}"))
                .unwrap_or_default()
        )
    });
    let body = html! {
        form method="get" action="/console/payments" {
            select name="result" {
                option value="" { (t("all")) }
                @for result in PaymentResult::ALL {
                    option value=(result) selected[query.result == Some(*result)] { (result) }
                }
            }
            button type="submit" { (t("filter")) }
        }
        (payment_rows_markup(&me, &page, true))
        @if let Some(next) = next { a href=(next) { (t("next_page")) " →" } }
    };
    layout(me.lang, Some(&me), "/console/payments", t("payments"), body)
}

#[derive(Debug, Deserialize)]
struct AssignQuery {
    order_id: Option<String>,
}

/// Step one: the order to assign to; step two (with `order_id`): both side by side, the
/// differences, and the confirmations they need.
async fn confirm_assign(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    query: web::Query<AssignQuery>,
) -> HttpResponse {
    let (id, order_id) = (id.into_inner(), query.into_inner().order_id);
    let data = me
        .run(&state, move |conn, _| {
            let payment =
                payment_rows::find(conn, &id)?.ok_or_else(|| RuleError::not_found("payment"))?;
            let order = match order_id.filter(|o| !o.trim().is_empty()) {
                Some(order_id) => Some(
                    read_order(conn, order_id.trim())?
                        .ok_or_else(|| RuleError::not_found("order"))?,
                ),
                None => None,
            };
            Ok((payment, order))
        })
        .await;
    let (payment, order) = match data {
        Ok(data) => data,
        Err(refused) => return refused,
    };
    let t = |key| me.lang.t(key);
    let action = format!("/console/payments/{}/assign", payment.id);
    let body = html! {
        section {
            h2 { (t("payments")) }
            (payment_rows_markup(&me, std::slice::from_ref(&payment), false))
        }
        @match &order {
            None => {
                form method="get" action=(action) {
                    input name="order_id" required placeholder=(t("order_id")) size="40";
                    button type="submit" { (t("assign")) " →" }
                }
            }
            Some(order) => {
                section {
                    h2 { (t("orders")) }
                    table {
                        tr { th { "id" } td { (order.id) } }
                        tr { th { (t("merchant_order_id")) } td { (order.merchant_order_id) } }
                        tr { th { (t("status")) } td { (order.status) } }
                        tr { th { (t("payable")) } td { "¥" (money(order.payable_amount)) } }
                        tr { th { (t("channel")) } td { (order.channel) } }
                    }
                    @let found = differences(&payment, order);
                    @if !found.is_empty() {
                        h3 { (t("differences")) }
                        ul class="error" { @for difference in &found { li { (difference) } } }
                    }
                    form method="post" action=(action) {
                        (me.csrf_field())
                        input type="hidden" name="order_id" value=(order.id);
                        p { input name="note" maxlength="500" placeholder=(t("note")) size="50"; }
                        @if payment.result == PaymentResult::Duplicate || payment.duplicate_of.is_some() {
                            p { label { input type="checkbox" name="second_payment" value="true"; " " (t("second_payment")) } }
                        }
                        @if !found.is_empty() {
                            p { label { input type="checkbox" name="accept_differences" value="true"; " " (t("accept_differences")) } }
                        }
                        button type="submit" { (t("confirm_assign")) }
                    }
                }
            }
        }
    };
    layout(me.lang, Some(&me), "/console/payments", t("assign"), body)
}

#[derive(Debug, Deserialize)]
struct AssignForm {
    csrf: String,
    order_id: String,
    note: Option<String>,
    second_payment: Option<String>,
    accept_differences: Option<String>,
}

async fn assign(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<AssignForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let note = form.note.filter(|n| !n.trim().is_empty());
    if let Some(note) = &note
        && let Err(error) = crate::http::check_text("note", note, 500)
    {
        return me.refuse(error);
    }
    let (id, rules) = (id.into_inner(), state.rules.clone());
    let target = format!("/console/orders/{}", form.order_id);
    me.change(&state, &form.csrf, &target, move |conn, operator| {
        assign_payment(
            conn,
            &rules,
            operator,
            &Assignment {
                payment_id: &id,
                order_id: &form.order_id,
                note: note.as_deref(),
                second_payment: form.second_payment.as_deref() == Some("true"),
                accept_differences: form.accept_differences.as_deref() == Some("true"),
            },
        )
    })
    .await
}
