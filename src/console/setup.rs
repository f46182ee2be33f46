//! The console's set-up pages: devices (with the QR code that sets a listener up), payees
//! (created from a photo or screenshot of the collection code, fixed-amount codes in bulk),
//! merchants (keys shown once) and webhook deliveries (with attempts; redeliver).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::pages::money;
use super::{CsrfForm, Signed, layout};
use crate::core::devices::{create_device, rotate_secret, update_device};
use crate::core::error::RuleError;
use crate::core::merchants::{
    create_merchant, rotate_api_key, rotate_webhook_secret, update_merchant,
};
use crate::core::payees::{PayeeRequest, create_payee, update_payee};
use crate::db::devices::{self as device_rows, Device, DeviceChanges};
use crate::db::merchants::{self as merchant_rows, MerchantChanges};
use crate::db::payees::{self as payee_rows, PayeeChanges};
use crate::db::webhooks::{self as delivery_rows, DeliveryFilter};
use crate::domain::{Channel, DeliveryStatus};
use crate::http::AppState;
use crate::http::html::{qr_svg, read_qr_codes};
use crate::money::Amount;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/devices", web::get().to(devices))
        .route("/devices", web::post().to(add_device))
        .route("/devices/{id}/enabled", web::post().to(device_enabled))
        .route("/devices/{id}/rotate", web::post().to(new_device_secret))
        .route("/payees", web::get().to(payees))
        .route(ADD_PAYEE, web::post().to(add_payee))
        .route(ADD_FIXED_CODES, web::post().to(add_fixed_codes))
        .route("/payees/{id}/enabled", web::post().to(payee_enabled))
        .route("/merchants", web::get().to(merchants))
        .route("/merchants", web::post().to(add_merchant))
        .route("/merchants/{id}/enabled", web::post().to(merchant_enabled))
        .route(
            "/merchants/{id}/rotate-api-key",
            web::post().to(new_api_key),
        )
        .route(
            "/merchants/{id}/rotate-webhook-secret",
            web::post().to(new_webhook_secret),
        )
        .route("/webhooks", web::get().to(webhooks))
        .route("/webhooks/{id}", web::get().to(webhook))
        .route("/webhooks/{id}/redeliver", web::post().to(redeliver));
}

/// Where this service is reached: `SOLOPAY_PUBLIC_URL`, else the scheme and host of the request.
fn public_base(req: &HttpRequest, state: &AppState) -> String {
    match &state.settings.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    }
}

#[derive(Debug, Deserialize)]
struct EnabledForm {
    csrf: String,
    enabled: String,
}

async fn devices(state: web::Data<AppState>, me: Signed) -> HttpResponse {
    let offline_after = state.settings.device_offline_after;
    let rows = match me
        .run(&state, move |conn, _| {
            Ok(device_rows::list_with_online(conn, offline_after)?)
        })
        .await
    {
        Ok(rows) => rows,
        Err(refused) => return refused,
    };
    let t = |key| me.lang.t(key);
    let body = html! {
        table {
            tr { th { (t("name")) } th { "id" } th { (t("status")) } th { (t("last_seen")) } th { (t("battery")) } th { (t("app_version")) } th {} }
            @for (device, online) in &rows {
                tr {
                    td { (device.name) @if !device.enabled { " " span class="muted" { "(" (t("disabled")) ")" } } }
                    td class="muted" { (device.id) }
                    td class=(if *online { "ok" } else { "bad" }) { (if *online { t("online") } else { t("offline") }) }
                    td { (device.last_seen_at.map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()) }
                    td { (device.battery.map(|b| format!("{b} %")).unwrap_or_default()) }
                    td { (device.app_version.clone().unwrap_or_default()) }
                    td {
                        (enable_form(&me, &format!("/console/devices/{}/enabled", device.id), device.enabled))
                        form class="inline" method="post" action=(format!("/console/devices/{}/rotate", device.id)) {
                            (me.csrf_field()) button type="submit" { (t("rotate_secret")) }
                        }
                    }
                }
            }
        }
        section {
            form method="post" action="/console/devices" {
                (me.csrf_field())
                input name="name" required maxlength="128" placeholder=(t("name"));
                button type="submit" { (t("create")) }
            }
        }
    };
    layout(me.lang, Some(&me), "/console/devices", t("devices"), body)
}

fn enable_form(me: &Signed, action: &str, enabled: bool) -> Markup {
    html! {
        form class="inline" method="post" action=(action) {
            (me.csrf_field())
            input type="hidden" name="enabled" value=(if enabled { "false" } else { "true" });
            button type="submit" { (me.lang.t(if enabled { "disable" } else { "enable" })) }
        }
    }
}

/// The page that sets a listener up, with the secret shown once: the V免签 app's `host/key`
/// code (what its 扫码配置 reads) and, for other listeners, the URL, device id and secret.
fn setup_page(req: &HttpRequest, state: &AppState, me: &Signed, device: &Device) -> HttpResponse {
    let secret = device.secret.expose();
    let base = public_base(req, state);
    let host = base
        .split_once("://")
        .map_or(base.as_str(), |(_, rest)| rest)
        .to_string();
    let vmq = format!("{host}/{secret}");
    let generic =
        serde_json::json!({"url": base, "device_id": device.id, "secret": secret}).to_string();
    let t = |key| me.lang.t(key);
    let body = html! {
        p class="notice" { (t("shown_once")) }
        section {
            h2 { (t("vmq_setup")) }
            div class="qr" id="vmq-qr" { (PreEscaped(qr_svg(&vmq, 220))) }
            p { span class="secret" id="vmq-config" { (vmq) } }
        }
        section {
            h2 { (t("generic_setup")) }
            div class="qr" id="generic-qr" { (PreEscaped(qr_svg(&generic, 220))) }
            table {
                tr { th { "URL" } td { (base) "/notify, " (base) "/heartbeat" } }
                tr { th { (t("device")) } td id="device-id" { (device.id) } }
                tr { th { (t("secret")) } td { span class="secret" id="device-secret" { (secret) } } }
            }
        }
        a href="/console/devices" { "← " (t("devices")) }
    };
    layout(
        me.lang,
        Some(me),
        "/console/devices",
        &format!("{}: {}", t("setup"), device.name),
        body,
    )
}

#[derive(Debug, Deserialize)]
struct NameForm {
    csrf: String,
    name: String,
}

async fn add_device(
    req: HttpRequest,
    state: web::Data<AppState>,
    me: Signed,
    form: web::Form<NameForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(refused) = me.check_form(&form.csrf) {
        return refused;
    }
    if let Err(error) = crate::http::check_text("name", &form.name, 128) {
        return me.refuse(error);
    }
    match me
        .run(&state, move |conn, operator| {
            create_device(conn, operator, &form.name)
        })
        .await
    {
        Ok(device) => setup_page(&req, &state, &me, &device),
        Err(refused) => refused,
    }
}

async fn new_device_secret(
    req: HttpRequest,
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    if let Some(refused) = me.check_form(&form.csrf) {
        return refused;
    }
    let id = id.into_inner();
    match me
        .run(&state, move |conn, operator| {
            rotate_secret(conn, operator, &id)
        })
        .await
    {
        Ok(device) => setup_page(&req, &state, &me, &device),
        Err(refused) => refused,
    }
}

async fn device_enabled(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<EnabledForm>,
) -> HttpResponse {
    let (id, enabled) = (id.into_inner(), form.enabled == "true");
    let changes = DeviceChanges {
        enabled: Some(enabled),
        ..DeviceChanges::default()
    };
    me.change(
        &state,
        &form.csrf,
        "/console/devices",
        move |conn, operator| update_device(conn, operator, &id, &changes),
    )
    .await
}

/// A multipart form, read whole: its text fields and its files (name, bytes), in order.
pub struct Upload {
    pub fields: HashMap<String, String>,
    pub files: Vec<(String, Vec<u8>)>,
}

/// The most a console upload may hold (the body limit of the two upload forms is this too).
pub const UPLOAD_BYTES: usize = 8 * 1024 * 1024;
/// The forms that upload images (under `/console`): the only routes whose body may reach
/// [`UPLOAD_BYTES`]; every other keeps the service's limit.
const ADD_PAYEE: &str = "/payees";
const ADD_FIXED_CODES: &str = "/payees/{id}/codes";

/// Whether a request goes to an upload form (checked before routing, by the body limit).
pub fn is_upload(method: &actix_web::http::Method, path: &str) -> bool {
    static FORMS: std::sync::LazyLock<actix_web::dev::ResourceDef> =
        std::sync::LazyLock::new(|| actix_web::dev::ResourceDef::new([ADD_PAYEE, ADD_FIXED_CODES]));
    method == actix_web::http::Method::POST
        && path
            .strip_prefix("/console")
            .is_some_and(|rest| FORMS.is_match(rest))
}

async fn read_upload(mut multipart: actix_multipart::Multipart) -> Result<Upload, String> {
    let mut upload = Upload {
        fields: HashMap::new(),
        files: Vec::new(),
    };
    let mut total = 0usize;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(|e| format!("unreadable form: {e}"))?;
        let name = field.name().unwrap_or_default().to_string();
        let is_file = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .is_some();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| format!("unreadable form: {e}"))?;
            total += chunk.len();
            if total > UPLOAD_BYTES {
                return Err(format!(
                    "the upload is larger than {} MiB",
                    UPLOAD_BYTES / 1024 / 1024
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        if is_file {
            if !bytes.is_empty() {
                upload.files.push((name, bytes));
            }
        } else {
            let text = String::from_utf8(bytes).map_err(|_| format!("{name} is not text"))?;
            upload.fields.insert(name, text);
        }
    }
    Ok(upload)
}

/// The channel of a collection code's text: WeChat's `wxp://…` (and its pay-app links),
/// Alipay's `https://qr.alipay.com/…`; anything else is not a collection code.
pub fn channel_of_code(text: &str) -> Option<Channel> {
    let lower = text.trim().to_ascii_lowercase();
    if lower.starts_with("wxp://") {
        return Some(Channel::Wechat);
    }
    let url = url::Url::parse(&lower).ok()?;
    match url.host_str()? {
        "qr.alipay.com" if url.path().len() > 1 => Some(Channel::Alipay),
        "payapp.weixin.qq.com" | "payapp.wechatpay.cn" if url.path().len() > 1 => {
            Some(Channel::Wechat)
        }
        _ => None,
    }
}

/// The one collection code an image holds, and its channel; refused with the reason otherwise.
pub fn collection_code(image: &[u8]) -> Result<(Channel, String), String> {
    let codes = read_qr_codes(image)?;
    let [code] = codes.as_slice() else {
        return Err(if codes.is_empty() {
            "no QR code was found in the image".to_string()
        } else {
            format!(
                "the image holds {} QR codes: upload one collection code at a time",
                codes.len()
            )
        });
    };
    match channel_of_code(code) {
        Some(channel) => Ok((channel, code.trim().to_string())),
        None => Err(format!(
            "the QR code is not a WeChat or Alipay collection code: {code:?}"
        )),
    }
}

/// [`collection_code`] on a blocking thread: decoding a photo takes milliseconds of CPU that
/// the request workers must not wait on.
async fn read_off_thread(image: Vec<u8>) -> Result<(Channel, String), String> {
    web::block(move || collection_code(&image))
        .await
        .unwrap_or_else(|_| Err("the image could not be read".into()))
}

/// The amount of a fixed-amount code: the one its text carries (an `amount` or `money`
/// parameter of a link), or the one typed beside it. Both present and different, or neither,
/// is refused: the code is what the payer pays, so a wrong amount here would match payments
/// to the wrong orders.
pub fn fixed_amount(code: &str, typed: &str, max: Amount) -> Result<Amount, String> {
    let carried = url::Url::parse(code).ok().and_then(|url| {
        url.query_pairs()
            .find(|(key, _)| key == "amount" || key == "money")
            .map(|(_, value)| value.into_owned())
    });
    let carried = carried
        .map(|text| {
            Amount::parse(text.trim(), max).map_err(|e| format!("the amount in the code: {e}"))
        })
        .transpose()?;
    let typed = (!typed.is_empty())
        .then(|| Amount::parse(typed, max).map_err(|e| format!("the amount beside it: {e}")))
        .transpose()?;
    match (carried, typed) {
        (Some(carried), Some(typed)) if carried != typed => Err(format!(
            "the code is for ¥{carried} but ¥{typed} was typed beside it"
        )),
        (Some(amount), _) | (None, Some(amount)) => Ok(amount),
        (None, None) => Err("the code carries no amount: type it beside the image".into()),
    }
}

async fn payees(state: web::Data<AppState>, me: Signed) -> HttpResponse {
    let offline_after = state.settings.device_offline_after;
    let data = me
        .run(&state, move |conn, _| {
            Ok((
                payee_rows::list_with_codes(conn)?,
                device_rows::list_with_online(conn, offline_after)?,
            ))
        })
        .await;
    let (rows, devices) = match data {
        Ok(data) => data,
        Err(refused) => return refused,
    };
    let t = |key| me.lang.t(key);
    let body = html! {
        table {
            tr { th { (t("name")) } th { (t("channel")) } th { (t("device")) } th { "QR" } th { (t("fixed_codes")) } th {} }
            @for (payee, codes) in &rows {
                tr {
                    td { (payee.name) @if !payee.enabled { " " span class="muted" { "(" (t("disabled")) ")" } } br; span class="muted" { (payee.id) } }
                    td { (payee.channel) }
                    td class="muted" { (payee.device_id) }
                    td class="muted" { (payee.qr_code) }
                    td { @for code in codes { "¥" (money(code.amount)) " " } }
                    td {
                        (enable_form(&me, &format!("/console/payees/{}/enabled", payee.id), payee.enabled))
                        form method="post" enctype="multipart/form-data" action=(format!("/console/payees/{}/codes", payee.id)) {
                            (me.csrf_field())
                            @for n in 0..3 {
                                div {
                                    input type="file" name=(format!("code{n}")) accept="image/*";
                                    input name=(format!("amount{n}")) placeholder=(t("amount")) size="8";
                                }
                            }
                            button type="submit" { (t("add_codes")) }
                        }
                    }
                }
            }
        }
        section {
            h2 { (t("create")) }
            form method="post" enctype="multipart/form-data" action="/console/payees" {
                (me.csrf_field())
                p { input name="name" required maxlength="128" placeholder=(t("name")); }
                p {
                    select name="device_id" required {
                        @for (device, _) in &devices { option value=(device.id) { (device.name) } }
                    }
                }
                p { label { (t("upload_code")) " " input type="file" name="code" accept="image/*" required; } }
                button type="submit" { (t("create")) }
            }
        }
    };
    layout(me.lang, Some(&me), "/console/payees", t("payees"), body)
}

async fn add_payee(
    state: web::Data<AppState>,
    me: Signed,
    multipart: actix_multipart::Multipart,
) -> HttpResponse {
    let upload = match read_upload(multipart).await {
        Ok(upload) => upload,
        Err(error) => return me.refuse(RuleError::InvalidRequest(error)),
    };
    let field = |name: &str| upload.fields.get(name).cloned().unwrap_or_default();
    // Checked before the images are read, and again by the change.
    let csrf = field("csrf");
    if let Some(refused) = me.check_form(&csrf) {
        return refused;
    }
    let name = field("name");
    if let Err(error) = crate::http::check_text("name", &name, 128) {
        return me.refuse(error);
    }
    let Some((_, image)) = upload.files.iter().find(|(field, _)| field == "code") else {
        return me.refuse(RuleError::InvalidRequest(
            "upload an image of the collection code".into(),
        ));
    };
    let (channel, qr_code) = match read_off_thread(image.clone()).await {
        Ok(code) => code,
        Err(error) => return me.refuse(RuleError::InvalidRequest(error)),
    };
    let request = PayeeRequest {
        channel,
        name,
        qr_code,
        device_id: field("device_id"),
        fixed_amount_codes: Vec::new(),
        enabled: true,
    };
    me.change(&state, &csrf, "/console/payees", move |conn, operator| {
        create_payee(conn, operator, &request)
    })
    .await
}

async fn add_fixed_codes(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    multipart: actix_multipart::Multipart,
) -> HttpResponse {
    let upload = match read_upload(multipart).await {
        Ok(upload) => upload,
        Err(error) => return me.refuse(RuleError::InvalidRequest(error)),
    };
    let field = |name: &str| upload.fields.get(name).cloned().unwrap_or_default();
    // Checked before the images are read, and again by the change.
    let csrf = field("csrf");
    if let Some(refused) = me.check_form(&csrf) {
        return refused;
    }
    let mut added = Vec::new();
    for (file_field, image) in &upload.files {
        let slot = file_field.trim_start_matches("code");
        let refused =
            |why: String| me.refuse(RuleError::InvalidRequest(format!("image {slot}: {why}")));
        let (channel, code) = match read_off_thread(image.clone()).await {
            Ok(read) => read,
            Err(error) => return refused(error),
        };
        let typed = field(&format!("amount{slot}"));
        match fixed_amount(&code, typed.trim(), state.settings.max_amount) {
            Ok(amount) => added.push((channel, amount, code)),
            Err(error) => return refused(error),
        }
    }
    let id = id.into_inner();
    me.change(&state, &csrf, "/console/payees", move |conn, operator| {
        let payee = payee_rows::find(conn, &id)?.ok_or_else(|| RuleError::not_found("payee"))?;
        if let Some((channel, _, code)) = added.iter().find(|(c, _, _)| *c != payee.channel) {
            return Err(RuleError::InvalidRequest(format!(
                "{code:?} is a {channel} code and this payee collects with {}",
                payee.channel
            )));
        }
        let added: Vec<(Amount, String)> =
            added.into_iter().map(|(_, a, code)| (a, code)).collect();
        let current = payee_rows::fixed_codes(conn, &id)?;
        // The new codes join the ones there are (a new one for an amount replaces it).
        let mut codes: Vec<(Amount, String)> = current
            .into_iter()
            .map(|code| (Amount::from_stored(code.amount), code.qr_code))
            .filter(|(amount, _)| !added.iter().any(|(new, _)| new == amount))
            .collect();
        codes.extend(added);
        update_payee(conn, operator, &id, &PayeeChanges::default(), Some(&codes))
    })
    .await
}

async fn payee_enabled(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<EnabledForm>,
) -> HttpResponse {
    let (id, enabled) = (id.into_inner(), form.enabled == "true");
    let changes = PayeeChanges {
        enabled: Some(enabled),
        ..PayeeChanges::default()
    };
    me.change(
        &state,
        &form.csrf,
        "/console/payees",
        move |conn, operator| update_payee(conn, operator, &id, &changes, None),
    )
    .await
}

async fn merchants(state: web::Data<AppState>, me: Signed) -> HttpResponse {
    let rows = match me
        .run(&state, |conn, _| Ok(merchant_rows::list(conn)?))
        .await
    {
        Ok(rows) => rows,
        Err(refused) => return refused,
    };
    let t = |key| me.lang.t(key);
    let body = html! {
        table {
            tr { th { (t("name")) } th { "id" } th { "pid" } th { "notify_url" } th {} }
            @for merchant in &rows {
                tr {
                    td { (merchant.name) @if !merchant.enabled { " " span class="muted" { "(" (t("disabled")) ")" } } }
                    td class="muted" { (merchant.id) }
                    td { (merchant.pid) }
                    td class="muted" { (merchant.notify_url.clone().unwrap_or_default()) }
                    td {
                        (enable_form(&me, &format!("/console/merchants/{}/enabled", merchant.id), merchant.enabled))
                        form class="inline" method="post" action=(format!("/console/merchants/{}/rotate-api-key", merchant.id)) {
                            (me.csrf_field()) button type="submit" { (t("rotate_api_key")) }
                        }
                        form class="inline" method="post" action=(format!("/console/merchants/{}/rotate-webhook-secret", merchant.id)) {
                            (me.csrf_field()) button type="submit" { (t("rotate_webhook_secret")) }
                        }
                    }
                }
            }
        }
        section {
            form method="post" action="/console/merchants" {
                (me.csrf_field())
                input name="name" required maxlength="128" placeholder=(t("name"));
                input name="notify_url" maxlength="2048" placeholder="notify_url (https://…)" size="40";
                button type="submit" { (t("create")) }
            }
        }
    };
    layout(
        me.lang,
        Some(&me),
        "/console/merchants",
        t("merchants"),
        body,
    )
}

/// Secrets shown once, after a merchant was created or a key rotated.
fn secrets_page(me: &Signed, title: &str, secrets: &[(&'static str, &str)]) -> HttpResponse {
    let t = |key| me.lang.t(key);
    let body = html! {
        p class="notice" { (t("shown_once")) }
        table {
            @for (key, value) in secrets {
                tr { th { (t(key)) } td { span class="secret" id=(key.replace('_', "-")) { (value) } } }
            }
        }
        a href="/console/merchants" { "← " (t("merchants")) }
    };
    layout(me.lang, Some(me), "/console/merchants", title, body)
}

#[derive(Debug, Deserialize)]
struct MerchantForm {
    csrf: String,
    name: String,
    notify_url: Option<String>,
}

async fn add_merchant(
    state: web::Data<AppState>,
    me: Signed,
    form: web::Form<MerchantForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(refused) = me.check_form(&form.csrf) {
        return refused;
    }
    let notify_url = form.notify_url.filter(|u| !u.trim().is_empty());
    let checked = crate::http::check_text("name", &form.name, 128).and_then(|()| {
        notify_url
            .as_deref()
            .map_or(Ok(()), |url| crate::http::check_url("notify_url", url))
    });
    if let Err(error) = checked {
        return me.refuse(error);
    }
    match me
        .run(&state, move |conn, operator| {
            create_merchant(conn, operator, &form.name, notify_url.as_deref())
        })
        .await
    {
        Ok(created) => secrets_page(
            &me,
            &created.merchant.name,
            &[
                ("api_key", &created.api_key),
                ("webhook_secret", created.merchant.webhook_secret.expose()),
                ("md5_key", created.merchant.md5_key.expose()),
            ],
        ),
        Err(refused) => refused,
    }
}

async fn merchant_enabled(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<EnabledForm>,
) -> HttpResponse {
    let (id, enabled) = (id.into_inner(), form.enabled == "true");
    let changes = MerchantChanges {
        enabled: Some(enabled),
        ..MerchantChanges::default()
    };
    me.change(
        &state,
        &form.csrf,
        "/console/merchants",
        move |conn, operator| update_merchant(conn, operator, &id, &changes),
    )
    .await
}

async fn new_api_key(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    if let Some(refused) = me.check_form(&form.csrf) {
        return refused;
    }
    let id = id.into_inner();
    match me
        .run(&state, move |conn, operator| {
            rotate_api_key(conn, operator, &id)
        })
        .await
    {
        Ok(rotated) => secrets_page(
            &me,
            &rotated.merchant.name,
            &[("api_key", &rotated.api_key)],
        ),
        Err(refused) => refused,
    }
}

async fn new_webhook_secret(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    if let Some(refused) = me.check_form(&form.csrf) {
        return refused;
    }
    let id = id.into_inner();
    match me
        .run(&state, move |conn, operator| {
            rotate_webhook_secret(conn, operator, &id)
        })
        .await
    {
        Ok(merchant) => secrets_page(
            &me,
            &merchant.name,
            &[("webhook_secret", merchant.webhook_secret.expose())],
        ),
        Err(refused) => refused,
    }
}

#[derive(Debug, Deserialize)]
struct DeliveryQuery {
    status: Option<DeliveryStatus>,
    starting_after: Option<String>,
}

async fn webhooks(
    state: web::Data<AppState>,
    me: Signed,
    query: web::Query<DeliveryQuery>,
) -> HttpResponse {
    let query = query.into_inner();
    let filter = DeliveryFilter {
        status: query.status,
        starting_after: query.starting_after.clone(),
        limit: 51,
        ..DeliveryFilter::default()
    };
    let rows = match me
        .run(&state, move |conn, _| {
            Ok(delivery_rows::list(conn, &filter)?)
        })
        .await
    {
        Ok(rows) => rows,
        Err(refused) => return refused,
    };
    let more = rows.len() > 50;
    let t = |key| me.lang.t(key);
    let body = html! {
        form method="get" action="/console/webhooks" {
            select name="status" {
                option value="" { (t("all")) }
                @for status in DeliveryStatus::ALL {
                    option value=(status) selected[query.status == Some(*status)] { (status) }
                }
            }
            button type="submit" { (t("filter")) }
        }
        table {
            tr { th { "id" } th { (t("destination")) } th { (t("status")) } th class="num" { (t("attempts")) } th { "order" } }
            @for (delivery, event) in rows.iter().take(50) {
                tr {
                    td { a href=(format!("/console/webhooks/{}", delivery.id)) { (delivery.id) } }
                    td { (delivery.destination) }
                    td class=(match delivery.status { DeliveryStatus::Succeeded => "ok", DeliveryStatus::Failed => "bad", DeliveryStatus::Pending => "" }) { (delivery.status) " · " (event) }
                    td class="num" { (delivery.attempts) }
                    td { a href=(format!("/console/orders/{}", delivery.order_id)) { (delivery.order_id) } }
                }
            }
        }
        @if more {
            @if let Some((last, _)) = rows.get(49) {
                a href=(format!("/console/webhooks?starting_after={}", last.id)) { (t("next_page")) " →" }
            }
        }
    };
    layout(me.lang, Some(&me), "/console/webhooks", t("webhooks"), body)
}

async fn webhook(state: web::Data<AppState>, me: Signed, id: web::Path<String>) -> HttpResponse {
    let id = id.into_inner();
    let data = me
        .run(&state, move |conn, _| {
            let (delivery, event) = delivery_rows::find(conn, &id)?
                .ok_or_else(|| RuleError::not_found("webhook delivery"))?;
            let attempts = delivery_rows::attempts_of(conn, &id)?;
            Ok((delivery, event, attempts))
        })
        .await;
    let (delivery, event, attempts) = match data {
        Ok(data) => data,
        Err(refused) => return refused,
    };
    let t = |key| me.lang.t(key);
    let body = html! {
        section {
            table {
                tr { th { "URL" } td { (delivery.url) } }
                tr { th { (t("status")) } td { (delivery.status) " · " (event) } }
                tr { th { (t("attempts")) } td { (delivery.attempts) } }
                tr { th { "order" } td { a href=(format!("/console/orders/{}", delivery.order_id)) { (delivery.order_id) } } }
            }
            form method="post" action=(format!("/console/webhooks/{}/redeliver", delivery.id)) {
                (me.csrf_field()) button type="submit" { (t("redeliver")) }
            }
        }
        table {
            tr { th { "#" } th { (t("created")) } th { "HTTP" } th class="num" { "ms" } th { "" } }
            @for attempt in &attempts {
                tr {
                    td { (attempt.attempt) }
                    td { (attempt.started_at.format("%Y-%m-%d %H:%M:%S")) }
                    td { (attempt.status_code.map(|s| s.to_string()).unwrap_or_default()) }
                    td class="num" { (attempt.latency_ms) }
                    td class="muted" { (attempt.error.clone().or_else(|| attempt.response_excerpt.clone()).unwrap_or_default()) }
                }
            }
        }
    };
    layout(me.lang, Some(&me), "/console/webhooks", &delivery.id, body)
}

async fn redeliver(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let id = id.into_inner();
    let target = format!("/console/webhooks/{id}");
    me.change(&state, &form.csrf, &target, move |conn, operator| {
        crate::webhooks::redeliver(conn, operator, &id)
    })
    .await
}
