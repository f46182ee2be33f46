//! HTML answers that browsers see (the operator console, the payment and cashier pages): locked down by their headers (a strict
//! Content-Security-Policy whose per-page nonce is the only way a style or script runs, no
//! framing, no sniffing), and QR codes drawn on the server.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};

/// The one-time value that lets one page's own inline style (and script) run, and nothing else.
pub struct Nonce(String);

impl Nonce {
    pub fn new() -> Nonce {
        use base64::Engine;
        let bytes: [u8; 16] = rand::random();
        Nonce(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Nonce {
    fn default() -> Self {
        Nonce::new()
    }
}

/// Where a page's forms may post: nowhere, or back to this service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormTarget {
    None,
    ThisService,
}

/// A page with `status`: nothing but its own nonce'd style and script runs, images only inline,
/// forms post where `forms` says, it fetches only from this service, and it cannot be framed,
/// sniffed or kept in a cache.
pub fn page(status: StatusCode, body: String, nonce: &Nonce, forms: FormTarget) -> HttpResponse {
    let form_action = match forms {
        FormTarget::None => "'none'",
        FormTarget::ThisService => "'self'",
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((
            CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
                 img-src data:; connect-src 'self'; base-uri 'none'; \
                 form-action {form_action}; frame-ancestors 'none'",
                nonce = nonce.0
            ),
        ))
        .insert_header((X_FRAME_OPTIONS, "DENY"))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((REFERRER_POLICY, "same-origin"))
        .body(body)
}

/// Text made safe to place in HTML (element content and quoted attributes), for the pages
/// written without templates.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The QR code of `text` as an inline SVG element (empty when the text cannot be one).
pub fn qr_svg(text: &str, size: u32) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(size, size)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

/// The QR code of `text` as a PNG of about `size` pixels a side.
pub fn qr_png(text: &str, size: u32) -> Result<Vec<u8>, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| e.to_string())?;
    let image = code
        .render::<image::Luma<u8>>()
        .min_dimensions(size, size)
        .quiet_zone(true)
        .build();
    let mut png = Vec::new();
    image::DynamicImage::ImageLuma8(image)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(png)
}

/// The widest and tallest picture [`read_qr_codes`] decodes (a phone's photo is about 4,000).
const MAX_SIDE: u32 = 8_000;
/// The most memory decoding one picture may take.
const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;

/// The texts of the QR codes in an image (a photo or a screenshot of one or more codes).
pub fn read_qr_codes(bytes: &[u8]) -> Result<Vec<String>, String> {
    // A small file may declare a huge picture: its size is bounded before it is decoded.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| "not an image solopay can read (PNG or JPEG)".to_string())?;
    reader.limits(limits);
    let image = reader.decode().map_err(|error| match error {
        image::ImageError::Limits(limit)
            if limit.kind() == image::error::LimitErrorKind::DimensionError =>
        {
            format!("the image is larger than {MAX_SIDE} × {MAX_SIDE} pixels")
        }
        image::ImageError::Limits(_) => {
            "the image takes too much memory to decode: send a smaller one".to_string()
        }
        _ => "not an image solopay can read (PNG or JPEG)".to_string(),
    })?;
    // Large photos are shrunk first: the codes stay readable, decoding stays fast.
    let image = if image.width().max(image.height()) > 1600 {
        image.thumbnail(1600, 1600)
    } else {
        image
    };
    let mut prepared = rqrr::PreparedImage::prepare(image.to_luma8());
    let mut texts = Vec::new();
    for grid in prepared.detect_grids() {
        if let Ok((_, text)) = grid.decode()
            && !texts.contains(&text)
        {
            texts.push(text);
        }
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_drawn_code_reads_back_and_a_blank_image_has_none() {
        let png = qr_png("wxp://f2f0abcdef", 240).unwrap();
        assert_eq!(read_qr_codes(&png).unwrap(), ["wxp://f2f0abcdef"]);
        let mut blank = Vec::new();
        image::DynamicImage::new_luma8(100, 100)
            .write_to(
                &mut std::io::Cursor::new(&mut blank),
                image::ImageFormat::Png,
            )
            .unwrap();
        assert!(read_qr_codes(&blank).unwrap().is_empty());
        assert!(read_qr_codes(b"not an image").is_err());
    }

    #[test]
    fn a_picture_wider_than_the_limit_is_refused_before_it_is_decoded() {
        let mut wide = Vec::new();
        image::DynamicImage::new_luma8(MAX_SIDE + 1, 1)
            .write_to(
                &mut std::io::Cursor::new(&mut wide),
                image::ImageFormat::Png,
            )
            .unwrap();
        let refused = read_qr_codes(&wide).unwrap_err();
        assert!(refused.contains("larger than 8000"), "{refused}");
    }
}
