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
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};

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
#[derive(Clone)]
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

impl OperatorAuth {
    /// Authenticates the operator token a request carries; [`require_operator`] calls it for
    /// every request to the operator's routes before anything else is read.
    async fn authenticate(req: &HttpRequest) -> Result<OperatorAuth, ApiError> {
        let (token, state) = (bearer(req.headers())?, state(req)?);
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
    }
}

/// The operator routes' guard (`routes.rs` wraps the `/admin` scope in it): the token is checked
/// before the query, the path or the body is read, so a wrong token is always `401`, whatever
/// else is wrong with the request. The handlers then read who acted with [`OperatorAuth`].
pub async fn require_operator(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match OperatorAuth::authenticate(req.request()).await {
        Ok(operator) => {
            req.extensions_mut().insert(operator);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(refused) => {
            let response = refused.error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

impl FromRequest for OperatorAuth {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions_mut()
                .remove::<OperatorAuth>()
                .ok_or_else(|| ApiError::internal("an operator route outside the /admin guard")),
        )
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
