//! The operator console at `/console`: server-rendered pages (maud templates, no external
//! assets, no script needed) over the same core calls the operator API makes, for one owner.
//! Signed in with an operator token, a session lives on the server ([`crate::core::console`]);
//! the cookie is `HttpOnly`, `SameSite=Strict` and `Secure` when `SOLOPAY_PUBLIC_URL` is https;
//! every form carries the session's CSRF token; every change is audited under the token's name,
//! as the API's are. `SOLOPAY_CONSOLE=false` switches it off.
//!
//! The pages: the overview and orders and payments ([`pages`]), and the set-up of devices,
//! payees, merchants and webhooks ([`setup`]).

pub mod i18n;
pub mod pages;
pub mod setup;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{ACCEPT_LANGUAGE, LOCATION};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::core::console::{self as console_rules, SignInRefusal};
use crate::core::error::RuleError;
use crate::core::secrets::constant_time_eq;
use crate::http::AppState;
use crate::http::html::{FormTarget, Nonce, page};
pub use i18n::Lang;

const SESSION_COOKIE: &str = "solopay_session";
const LANG_COOKIE: &str = "solopay_lang";
const SIGN_IN_COOKIE: &str = "solopay_sign_in";

/// The console's routes (registered only when the console is on).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/console")
            .guard(actix_web::guard::fn_guard(|ctx| {
                ctx.app_data::<web::Data<AppState>>()
                    .is_some_and(|state| state.settings.console)
            }))
            .app_data(web::FormConfig::default().limit(64 * 1024))
            .route("", web::get().to(pages::overview))
            .route("/", web::get().to(pages::overview))
            .route("/sign-in", web::get().to(sign_in_page))
            .route("/sign-in", web::post().to(sign_in))
            .route("/sign-out", web::post().to(sign_out))
            .route("/lang", web::get().to(switch_language))
            .configure(pages::configure)
            .configure(setup::configure)
            .default_service(web::to(not_found)),
    );
}

/// The language of a request: the `lang` cookie, else `Accept-Language`.
pub fn lang_of(req: &HttpRequest) -> Lang {
    req.cookie(LANG_COOKIE)
        .and_then(|cookie| Lang::from_cookie(cookie.value()))
        .unwrap_or_else(|| {
            req.headers()
                .get(ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .map_or(Lang::En, Lang::from_accept_language)
        })
}

/// A signed-in operator: who, the session's CSRF token, the language.
pub struct Signed {
    pub operator: String,
    pub csrf: String,
    pub lang: Lang,
}

impl Signed {
    /// The operator as the rules record who acted.
    pub fn operator(&self) -> crate::domain::Operator<'_> {
        crate::domain::Operator(&self.operator)
    }

    /// The refusal of a form whose CSRF token is not the session's; `None` when it is.
    pub fn check_form(&self, presented: &str) -> Option<HttpResponse> {
        (!constant_time_eq(self.csrf.as_bytes(), presented.as_bytes()))
            .then(|| message(self.lang, StatusCode::FORBIDDEN, "refused", "bad_form"))
    }

    /// The hidden field every form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// The page of a refusal, for this operator.
    pub fn refuse(&self, error: impl Into<crate::error::ApiError>) -> HttpResponse {
        failed(self.lang, Some(self), error)
    }

    /// Runs `work` as this operator on a pooled connection; a refusal (of the rules or the
    /// database) comes back as its page, ready to answer.
    pub async fn run<T, F>(&self, state: &AppState, work: F) -> Result<T, HttpResponse>
    where
        T: Send + 'static,
        F: FnOnce(&mut diesel::PgConnection, crate::domain::Operator<'_>) -> Result<T, RuleError>
            + Send
            + 'static,
    {
        let operator = self.operator.clone();
        state
            .db
            .run(move |conn| work(conn, crate::domain::Operator(&operator)))
            .await
            .map_err(|error| self.refuse(error))
    }

    /// A form's change: its CSRF token checked, `work` run as this operator, then back to `to`
    /// (303, so a reload does not repeat it), or the page of the refusal.
    pub async fn change<T, F>(
        &self,
        state: &AppState,
        csrf: &str,
        to: &str,
        work: F,
    ) -> HttpResponse
    where
        T: Send + 'static,
        F: FnOnce(&mut diesel::PgConnection, crate::domain::Operator<'_>) -> Result<T, RuleError>
            + Send
            + 'static,
    {
        if let Some(refused) = self.check_form(csrf) {
            return refused;
        }
        match self.run(state, work).await {
            Ok(_) => see_other(to),
            Err(refused) => refused,
        }
    }
}

impl FromRequest for Signed {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let lang = lang_of(req);
        let token = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string());
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let to_sign_in = || {
                actix_web::error::InternalError::from_response(
                    "not signed in",
                    HttpResponse::SeeOther()
                        .insert_header((LOCATION, "/console/sign-in"))
                        .finish(),
                )
                .into()
            };
            let (Some(token), Some(state)) = (token, state) else {
                return Err(to_sign_in());
            };
            let configured = configured_token(&state);
            let session = state
                .db
                .run(move |conn| console_rules::session(conn, configured.as_deref(), &token))
                .await
                .map_err(|e| {
                    actix_web::error::InternalError::from_response("storage", failed(lang, None, e))
                })?;
            match session {
                Some(session) => Ok(Signed {
                    operator: session.operator,
                    csrf: session.csrf_token,
                    lang,
                }),
                None => Err(to_sign_in()),
            }
        })
    }
}

/// The style every page carries (with the page's nonce).
const STYLE: &str = "body{font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei',\
sans-serif;margin:0;background:#f4f5f7;color:#111}header{background:#1f2937;color:#fff;padding:8px \
16px;display:flex;gap:14px;align-items:center;flex-wrap:wrap}header a{color:#e5e7eb;\
text-decoration:none}header a.here{color:#fff;font-weight:600}header form{margin-left:auto}\
main{padding:16px;max-width:1100px;margin:auto}table{border-collapse:collapse;width:100%;\
background:#fff;margin:8px 0 18px}td,th{border-bottom:1px solid #e5e7eb;padding:6px 8px;\
text-align:left;font-size:14px;vertical-align:top}th{background:#f9fafb}section{background:#fff;\
padding:12px 16px;border-radius:8px;margin-bottom:16px}.num{text-align:right;\
font-variant-numeric:tabular-nums}.ok{color:#15803d}.bad{color:#b91c1c}.muted{color:#6b7280}\
form.inline{display:inline}input,select,button{font-size:14px;padding:4px 6px;margin:2px}\
.secret{font-family:monospace;background:#fef3c7;padding:2px 4px;word-break:break-all}\
.qr svg{width:220px;height:220px}.notice{background:#ecfdf5;border:1px solid #a7f3d0;\
padding:8px 12px;border-radius:6px}.error{background:#fef2f2;border:1px solid #fecaca;\
padding:8px 12px;border-radius:6px}";

/// The sections of the navigation bar: (path, text key).
const NAV: &[(&str, &str)] = &[
    ("/console", "overview"),
    ("/console/orders", "orders"),
    ("/console/payments", "payments"),
    ("/console/devices", "devices"),
    ("/console/payees", "payees"),
    ("/console/merchants", "merchants"),
    ("/console/webhooks", "webhooks"),
];

/// A whole page: the navigation (for a signed-in operator), the title and `body`.
pub fn layout(
    lang: Lang,
    signed: Option<&Signed>,
    here: &str,
    title: &str,
    body: Markup,
) -> HttpResponse {
    layout_with_status(StatusCode::OK, lang, signed, here, title, body)
}

pub fn layout_with_status(
    status: StatusCode,
    lang: Lang,
    signed: Option<&Signed>,
    here: &str,
    title: &str,
    body: Markup,
) -> HttpResponse {
    let nonce = Nonce::new();
    let other = lang.other();
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " · " (lang.t("title")) }
                style nonce=(nonce.as_str()) { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "solopay" }
                    @if let Some(me) = signed {
                        @for (path, key) in NAV {
                            a href=(path) class=[(*path == here).then_some("here")] { (lang.t(key)) }
                        }
                        form class="inline" method="post" action="/console/sign-out" {
                            (me.csrf_field())
                            span class="muted" { (me.operator) " " }
                            button type="submit" { (lang.t("sign_out")) }
                        }
                    }
                    a href=(format!("/console/lang?to={}", match other { Lang::En => "en", Lang::Zh => "zh" })) {
                        (lang.t("switch_lang"))
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    page(
        status,
        markup.into_string(),
        &nonce,
        FormTarget::ThisService,
    )
}

/// A page with one message (a refusal, a confirmation).
pub fn message(
    lang: Lang,
    status: StatusCode,
    title_key: &'static str,
    text_key: &'static str,
) -> HttpResponse {
    layout_with_status(
        status,
        lang,
        None,
        "",
        lang.t(title_key),
        html! { p class=(if status.is_success() { "notice" } else { "error" }) { (lang.t(text_key)) } },
    )
}

/// A refusal (of the rules, or the database failing), on a page with its status and words.
pub fn failed(
    lang: Lang,
    signed: Option<&Signed>,
    error: impl Into<crate::error::ApiError>,
) -> HttpResponse {
    use actix_web::ResponseError;
    let error: crate::error::ApiError = error.into();
    let status = error.status_code();
    let problem = error.problem();
    if status.is_server_error() {
        tracing::warn!(%error, "console request failed");
    }
    layout_with_status(
        status,
        lang,
        signed,
        "",
        lang.t("refused"),
        html! { p class="error" { (problem.detail) } },
    )
}

/// After a change, back to a page (a POST answered with 303, so a reload does not repeat it).
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, to.to_string()))
        .finish()
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    message(lang_of(&req), StatusCode::NOT_FOUND, "refused", "none")
}

async fn sign_in_page(req: HttpRequest) -> HttpResponse {
    sign_in_form(lang_of(&req), StatusCode::OK, None)
}

/// The sign-in form, with a CSRF token of its own (no session exists yet): the same random value
/// in a cookie and in the form, which a page of another site can neither read nor set.
fn sign_in_form(lang: Lang, status: StatusCode, problem: Option<&'static str>) -> HttpResponse {
    let token = hex::encode(rand::random::<[u8; 16]>());
    let mut response = sign_in_markup(lang, status, problem, &token);
    let cookie = Cookie::build(SIGN_IN_COOKIE, token)
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    let _ = response.add_cookie(&cookie);
    response
}

fn sign_in_markup(
    lang: Lang,
    status: StatusCode,
    problem: Option<&'static str>,
    token: &str,
) -> HttpResponse {
    layout_with_status(
        status,
        lang,
        None,
        "",
        lang.t("sign_in"),
        html! {
            @if let Some(problem) = problem {
                p class="error" { (lang.t(problem)) }
            }
            section {
                form method="post" action="/console/sign-in" {
                    input type="hidden" name="csrf" value=(token);
                    label { (lang.t("token")) " " input type="password" name="token" autocomplete="current-password" required; }
                    button type="submit" { (lang.t("sign_in")) }
                }
                p class="muted" { (lang.t("sign_in_hint")) }
            }
        },
    )
}

#[derive(serde::Deserialize)]
struct SignInForm {
    token: String,
    #[serde(default)]
    csrf: String,
}

/// Whether the session cookie must be `Secure` (the service is reached over https).
fn secure_cookies(state: &AppState) -> bool {
    state
        .settings
        .public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"))
}

/// `SOLOPAY_ADMIN_TOKEN`, when set.
fn configured_token(state: &AppState) -> Option<String> {
    state
        .settings
        .admin_token
        .as_ref()
        .map(|t| t.expose().clone())
}

async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignInForm>,
) -> HttpResponse {
    let lang = lang_of(&req);
    let expected = req.cookie(SIGN_IN_COOKIE).map(|c| c.value().to_string());
    if !expected.is_some_and(|expected| {
        !form.csrf.is_empty() && constant_time_eq(expected.as_bytes(), form.csrf.as_bytes())
    }) {
        return message(lang, StatusCode::FORBIDDEN, "refused", "bad_form");
    }
    let address = crate::http::limits::client_address(
        req.headers(),
        req.peer_addr(),
        state.settings.trust_forwarded_for,
    )
    .map(|ip| ip.to_string())
    .unwrap_or_default();
    let configured = configured_token(&state);
    let token = form.into_inner().token;
    let outcome = state
        .db
        .run(move |conn| {
            console_rules::sign_in(conn, configured.as_deref(), token.trim(), &address)
        })
        .await;
    match outcome {
        Ok(Ok(opened)) => {
            tracing::info!(operator = %opened.operator, "console sign-in");
            let cookie = Cookie::build(SESSION_COOKIE, opened.token)
                .path("/console")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(secure_cookies(&state))
                .finish();
            HttpResponse::SeeOther()
                .cookie(cookie)
                .insert_header((LOCATION, "/console"))
                .finish()
        }
        Ok(Err(SignInRefusal::WrongToken)) => {
            sign_in_form(lang, StatusCode::UNAUTHORIZED, Some("wrong_token"))
        }
        Ok(Err(SignInRefusal::LockedOut)) => {
            sign_in_form(lang, StatusCode::TOO_MANY_REQUESTS, Some("locked_out"))
        }
        Err(error) => failed(lang, None, error),
    }
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    signed: Signed,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    if let Some(refused) = signed.check_form(&form.csrf) {
        return refused;
    }
    if let Some(token) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()) {
        let ended = state
            .db
            .run(move |conn| console_rules::sign_out(conn, &token))
            .await;
        if let Err(error) = ended {
            return signed.refuse(error);
        }
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "")
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    gone.make_removal();
    HttpResponse::SeeOther()
        .cookie(gone)
        .insert_header((LOCATION, "/console/sign-in"))
        .finish()
}

#[derive(serde::Deserialize)]
struct LangQuery {
    to: String,
}

async fn switch_language(req: HttpRequest, query: web::Query<LangQuery>) -> HttpResponse {
    let lang = Lang::from_cookie(&query.to).unwrap_or_else(|| lang_of(&req));
    let cookie = Cookie::build(LANG_COOKIE, if lang == Lang::Zh { "zh" } else { "en" })
        .path("/console")
        .same_site(SameSite::Strict)
        .finish();
    // Back where the operator was (only a console page: no open redirect).
    let back = req
        .headers()
        .get(actix_web::http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|referer| url::Url::parse(referer).ok())
        .map(|url| url.path().to_string())
        .filter(|path| path.starts_with("/console"))
        .unwrap_or_else(|| "/console".into());
    HttpResponse::SeeOther()
        .cookie(cookie)
        .insert_header((LOCATION, back))
        .finish()
}
