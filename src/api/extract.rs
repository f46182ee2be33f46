//! Authentication extractors: a merchant by API key, an operator by token, a listener device's
//! signed-request headers.

use std::future::{Future, Ready, ready};
use std::pin::Pin;

use crate::core::merchants::Creator;
use crate::core::notifications::Credentials;
use crate::core::{merchants, operators};
use crate::db::merchants::Merchant;
use crate::domain::Operator;
use crate::error::ApiError;
use crate::http::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use actix_web::{FromRequest, HttpRequest, web};

/// The merchant whose `Authorization: Bearer <api key>` the request carries.
pub struct MerchantAuth(pub Merchant);

/// A merchant's `Authorization: Bearer <api key>`, read but not checked yet: for a hot path that
/// checks it in the same database call as its work (the order-creating statement), which saves
/// a trip through the pool. A missing or malformed header is refused at once.
pub struct MerchantKey {
    digest: Vec<u8>,
}

impl MerchantKey {
    /// Who the key says the caller is, for [`merchants::authenticate`] or the statement that
    /// checks it.
    pub fn creator(&self) -> Creator<'_> {
        Creator::ApiKeyHash(&self.digest)
    }
}

impl FromRequest for MerchantKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(bearer(req.headers()).map(|key| MerchantKey {
            digest: merchants::api_key_digest(&key),
        }))
    }
}

/// The operator whose `Authorization: Bearer <token>` the request carries.
pub struct OperatorAuth {
    pub name: String,
}

impl OperatorAuth {
    /// The operator, as the rules record who acted.
    pub fn operator(&self) -> Operator<'_> {
        Operator(&self.name)
    }
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
        let key = MerchantKey::from_request(req, &mut Payload::None).into_inner();
        let state = state(req);
        Box::pin(async move {
            let (key, state) = (key?, state?);
            let merchant = state
                .db
                .run(move |conn| merchants::authenticate(conn, key.creator()))
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
