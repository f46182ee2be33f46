//! The older protocols existing clients speak, each a translation to the same core calls (orders,
//! allocation, matching, the webhook outbox) and back: V免签 ([`vmq`]), 易支付 ([`epay`]),
//! generic notification forwarders ([`forwarder`]), and the payment page ([`page`]) the first two
//! send payers to. Each protocol can be switched off with `SOLOPAY_COMPAT`; a protocol that is
//! off answers 404.
//!
//! Every endpoint works the same way: its [`Fields`] are read into a typed request as sent
//! ([`read_request`]; signs cover the strings exactly as sent), the request is converted into
//! the native core request (`OrderRequest`, `OrderLookup`, a `Notification`), the same core
//! function as the native API's is called, and the outcome is shaped in the protocol's words.

pub mod cashier;
pub mod epay;
pub mod epay2;
pub mod epusdt;
pub mod forwarder;
pub mod page;
pub mod vmq;
pub mod vpay;

use actix_web::HttpRequest;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::web;

use crate::config::{Protocol, Settings};
use crate::error::ApiError;
use crate::http::read_body;

/// `404` unless `protocol` is served.
pub fn require(settings: &Settings, protocol: Protocol) -> Result<(), ApiError> {
    if settings.serves(protocol) {
        Ok(())
    } else {
        Err(ApiError::NotFound("no such endpoint".into()))
    }
}

/// An old client's fields: its query string and, for a POST, its form (or JSON object) body,
/// exactly as sent; the raw text is kept for storage. Only the typed requests' `From<Fields>`
/// read them by name.
#[derive(Debug, Default)]
pub struct Fields {
    pairs: Vec<(String, String)>,
    pub raw: Vec<u8>,
}

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The field, or the empty string when absent (how these protocols sign a missing field).
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or_default()
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// An optional URL field as sent: absent or blank is `None`, otherwise an absolute http(s) URL.
pub fn optional_url(name: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    match value.map(str::trim).filter(|u| !u.is_empty()) {
        None => Ok(None),
        Some(url) => crate::http::check_url(name, url).map(|()| Some(url.to_string())),
    }
}

/// The old protocols' `param`, echoed back to the merchant: at most 1024 characters, no NUL.
pub fn check_param(param: &str) -> Result<(), ApiError> {
    if param.chars().count() > 1024 || param.contains('\0') {
        return Err(ApiError::InvalidRequest(
            "param must be at most 1024 characters".into(),
        ));
    }
    Ok(())
}

/// Refuses a value a callback signs over sorted `k=v&k=v` fields joined without encoding
/// (易支付 V1 and V2, VPay). With `&` or `=` in it, the same signed text reads as other fields:
/// a `param` of `&out_trade_no=<another order>` makes a payer's own signed callback, cut
/// differently, one for another order of the same price, which a shop that checks the sign and
/// the price would credit.
pub fn check_joined_value(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains(['&', '=']) {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must not contain & or =: the callback's sign joins its fields as k=v&k=v, \
             so with them it could be read as another order's"
        )));
    }
    Ok(())
}

/// An old protocol's request, read as sent from its fields; `404` when the protocol is not
/// served.
pub async fn read_request<R: From<Fields>>(
    settings: &Settings,
    protocol: Protocol,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<R, ApiError> {
    require(settings, protocol)?;
    Ok(R::from(read_fields(req, payload).await?))
}

async fn read_fields(req: &HttpRequest, payload: web::Payload) -> Result<Fields, ApiError> {
    let body = read_body(payload).await?;
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    parse_fields(req.query_string(), &body, is_json)
}

/// The fields of a query string and a form (or, when `is_json`, JSON object) body.
pub fn parse_fields(query: &str, body: &[u8], is_json: bool) -> Result<Fields, ApiError> {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if is_json {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))?;
        for (key, value) in value.as_object().into_iter().flatten() {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            pairs.push((key.clone(), text));
        }
    } else {
        pairs.extend(
            url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    // A field given twice with two values is dropped: which one a sign covers is not what the
    // order would use (signs skip empty values, reading takes the first), so neither is taken,
    // and the request fails its sign check in its protocol's own words.
    let mut seen = std::collections::HashMap::with_capacity(pairs.len());
    let mut conflicting = std::collections::HashSet::new();
    for (key, value) in &pairs {
        if seen
            .insert(key.as_str(), value.as_str())
            .is_some_and(|v| v != value)
        {
            conflicting.insert(key.clone());
        }
    }
    if !conflicting.is_empty() {
        pairs.retain(|(key, _)| !conflicting.contains(key));
    }
    let mut raw = query.as_bytes().to_vec();
    if !body.is_empty() {
        raw.push(b'\n');
        raw.extend_from_slice(body);
    }
    Ok(Fields { pairs, raw })
}

/// Fuzzing support: fields from arbitrary pairs, some named as the old protocols name theirs.
#[cfg(test)]
pub(crate) mod fuzz {
    use proptest::prelude::*;

    use super::Fields;

    const NAMES: &[&str] = &[
        "payId",
        "type",
        "price",
        "param",
        "isHtml",
        "notifyUrl",
        "returnUrl",
        "sign",
        "pid",
        "out_trade_no",
        "money",
        "name",
        "notify_url",
        "return_url",
        "clientip",
        "device",
        "sign_type",
    ];

    pub fn fields() -> impl Strategy<Value = Fields> {
        let name = prop_oneof![
            prop::sample::select(NAMES).prop_map(String::from),
            "\\PC{0,8}"
        ];
        let value = prop_oneof![
            "\\PC*",
            "-?[0-9]{0,12}(\\.[0-9]{0,4})?",
            "https?://[a-z.]{1,20}/\\PC{0,10}"
        ];
        prop::collection::vec((name, value), 0..12).prop_map(|pairs| Fields {
            pairs,
            raw: Vec::new(),
        })
    }
}

/// The base URL payers reach the service at: `SOLOPAY_PUBLIC_URL`, or this request's scheme and
/// host.
pub fn public_base(settings: &Settings, req: &HttpRequest) -> String {
    match &settings.public_url {
        Some(url) => url.clone(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::parse_fields;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_field_given_twice_is_dropped_unless_both_agree() {
        // The empty copy would be left out of the sign and taken by the order.
        let stripped =
            parse_fields("notify_url=&pid=1&notify_url=http%3A%2F%2Fa", b"", false).unwrap();
        assert_eq!(stripped.get("notify_url"), None);
        assert_eq!(stripped.get("pid"), Some("1"));
        assert_eq!(
            parse_fields("pid=1", b"pid=2", false).unwrap().get("pid"),
            None
        );
        let same = parse_fields("pid=1", b"pid=1", false).unwrap();
        assert_eq!(same.get("pid"), Some("1"));
    }

    proptest! {
        #[test]
        fn parsing_any_query_and_body_never_panics(
            query in "\\PC*",
            body in prop::collection::vec(any::<u8>(), 0..256),
            is_json in any::<bool>(),
        ) {
            if let Ok(fields) = parse_fields(&query, &body, is_json) {
                let _ = super::optional_url("notify_url", fields.get("notify_url"));
                prop_assert!(fields.raw.starts_with(query.as_bytes()));
            }
        }
    }
}
