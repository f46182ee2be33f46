//! QR code images for headless shops: an order's code as SVG or PNG (public, like the order's
//! status: its id is unguessable), and V免签's `/enQrcode?url=` (the image its pages and
//! third-party front ends ask for). The code never changes for an order, so images are cached.

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::core::orders::read_order;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::html::{qr_png, qr_svg};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QrQuery {
    /// The side in pixels, 64–1024 (default 256).
    pub size: Option<u32>,
}

fn size_of(query: &QrQuery) -> Result<u32, ApiError> {
    match query.size {
        None => Ok(256),
        Some(size @ 64..=1024) => Ok(size),
        Some(_) => Err(ApiError::InvalidRequest(
            "size must be from 64 to 1024 pixels".into(),
        )),
    }
}

async fn qr_text(state: &AppState, id: String) -> Result<String, ApiError> {
    state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            Ok(read_order(conn, &id)?
                .ok_or_else(|| ApiError::not_found("order"))?
                .qr_code)
        })
        .await
}

/// The order's QR code (`qr_code`) as an SVG image.
#[utoipa::path(
    tag = "orders",
    params(("id" = String, Path, description = "The order id (`ord_…`)"), QrQuery),
    responses(
        (status = 200, description = "The QR code", content_type = "image/svg+xml", body = String),
        (status = 400, description = "`invalid_request`: size out of range"),
        (status = 404, description = "`not_found`"),
    )
)]
#[get("/orders/{id}/qr.svg")]
pub async fn order_qr_svg(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<QrQuery>,
) -> Result<HttpResponse, ApiError> {
    let size = size_of(&query)?;
    let text = qr_text(&state, id.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .body(qr_svg(&text, size)))
}

/// The order's QR code (`qr_code`) as a PNG image.
#[utoipa::path(
    tag = "orders",
    params(("id" = String, Path, description = "The order id (`ord_…`)"), QrQuery),
    responses(
        (status = 200, description = "The QR code", content_type = "image/png", body = Vec<u8>),
        (status = 400, description = "`invalid_request`: size out of range"),
        (status = 404, description = "`not_found`"),
    )
)]
#[get("/orders/{id}/qr.png")]
pub async fn order_qr_png(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<QrQuery>,
) -> Result<HttpResponse, ApiError> {
    let size = size_of(&query)?;
    let text = qr_text(&state, id.into_inner()).await?;
    let png = qr_png(&text, size).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .body(png))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnQrcodeQuery {
    /// The text to draw (at most 1024 characters).
    pub url: String,
}

/// V免签's QR image of any text (`/enQrcode?url=`): a PNG.
#[utoipa::path(
    tag = "compat: V免签",
    params(EnQrcodeQuery),
    responses(
        (status = 200, description = "The QR code", content_type = "image/png", body = Vec<u8>),
        (status = 400, description = "`invalid_request`: no text, or too long"),
    )
)]
#[get("/enQrcode")]
pub async fn en_qrcode(query: web::Query<EnQrcodeQuery>) -> Result<HttpResponse, ApiError> {
    let text = query.into_inner().url;
    if text.is_empty() || text.chars().count() > 1024 {
        return Err(ApiError::InvalidRequest(
            "url must be 1 to 1024 characters".into(),
        ));
    }
    let png = qr_png(&text, 256).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .body(png))
}
