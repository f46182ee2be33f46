//! Authentication extractors: a merchant by API key, an operator by token, a listener device's
//! signed-request headers.

use std::future::{Future, Ready, ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use actix_web::{FromRequest, HttpRequest, web};
use diesel::PgConnection;

use crate::core::notifications::Credentials;
use crate::core::secrets::sha256;
use crate::core::{merchants, operators};
use crate::db::merchants::Merchant;
use crate::error::ApiError;
use crate::http::AppState;

/// The merchant whose `Authorization: Bearer <api key>` the request carries.
pub struct MerchantAuth(pub Merchant);

/// A merchant's `Authorization: Bearer <api key>`, read but not checked yet: for a hot path that
/// checks it in the same database call as its work ([`MerchantKey::authenticate`] first), which
/// saves a trip through the pool. A missing or malformed header is refused at once.
pub struct MerchantKey(String);

impl MerchantKey {
    /// The merchant the key belongs to, or `401` as [`MerchantAuth`] answers.
    pub fn authenticate(&self, conn: &mut PgConnection) -> Result<Merchant, ApiError> {
        Ok(merchants::authenticate(conn, &self.0)?)
    }

    /// What the merchants table holds of the key (its SHA-256).
    pub fn hash(&self) -> Vec<u8> {
        sha256(self.0.as_bytes())
    }
}

impl FromRequest for MerchantKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(bearer(req.headers()).map(MerchantKey))
    }
}

/// The operator whose `Authorization: Bearer <token>` the request carries.
pub struct OperatorAuth {
    pub name: String,
}

fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("Authorization: Bearer <key> is required".into()))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthorized("Authorization must be `Bearer <key>`".into()))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::Unauthorized(
            "Authorization must be `Bearer <key>`".into(),
        ));
    }
    Ok(token.to_string())
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("application state is missing"))
}

impl FromRequest for MerchantAuth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let key = bearer(req.headers());
        let state = state(req);
        Box::pin(async move {
            let (key, state) = (key?, state?);
            let merchant = state
                .db
                .run(move |conn| merchants::authenticate(conn, &key))
                .await?;
            Ok(MerchantAuth(merchant))
        })
    }
}

impl FromRequest for OperatorAuth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req.headers());
        let state = state(req);
        Box::pin(async move {
            let (token, state) = (token?, state?);
            let configured = state
                .settings
                .admin_token
                .as_ref()
                .map(|t| t.expose().clone());
            let name = state
                .db
                .run(move |conn| operators::authenticate(conn, configured.as_deref(), &token))
                .await?;
            Ok(OperatorAuth { name })
        })
    }
}

/// The signed-request headers of a listener device, as received.
pub fn device_credentials(req: &HttpRequest) -> Credentials {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Credentials::Signed {
        device_id: header("x-solopay-device"),
        timestamp: header("x-solopay-timestamp"),
        signature: header("x-solopay-signature"),
    }
}
