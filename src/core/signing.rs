//! Signatures of listener requests: `X-Solopay-Signature: v1=<hex HMAC-SHA256(device secret,
//! "<timestamp>.<raw body>")>`, checked in constant time, within a window around the database clock.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from the server's clock, either way.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA256 keyed with `key`.
#[allow(clippy::unreachable)] // HMAC takes keys of any length: new_from_slice cannot fail
fn hmac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

fn device_mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = hmac(secret.as_bytes());
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header value a listener sends for `body` at `timestamp`.
pub fn sign_device_request(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(device_mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `header` (`v1=<hex>`) is the signature of `body` at `timestamp` under `secret`.
pub fn verify_device_signature(secret: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_signature) = header.trim().strip_prefix("v1=") else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_signature) else {
        return false;
    };
    device_mac(secret, timestamp, body)
        .verify_slice(&signature)
        .is_ok()
}

/// Whether a `X-Solopay-Timestamp` value (unix seconds) lies within the window around `now`.
pub fn timestamp_within_window(timestamp: &str, now_unix: i64) -> bool {
    timestamp
        .parse::<i64>()
        .is_ok_and(|ts| now_unix.abs_diff(ts) <= SIGNATURE_WINDOW_SECS.unsigned_abs())
}

/// A DingTalk robot's sign, which generic forwarders (SmsForwarder) use too: the URL-encoded
/// base64 of HMAC-SHA256(secret, "<timestamp>\n<secret>"). It covers only the timestamp, never
/// the message.
pub fn dingtalk_sign(secret: &str, timestamp: &str) -> String {
    forwarder_sign(secret, timestamp)
}

/// A Feishu (Lark) custom bot's sign: base64 of HMAC-SHA256 keyed with "<timestamp>\n<secret>"
/// over nothing (Feishu's own scheme, not DingTalk's: the key and the message are swapped).
pub fn feishu_sign(secret: &str, timestamp: &str) -> String {
    let mac = hmac(format!("{timestamp}\n{secret}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// A generic forwarder's sign (SmsForwarder's "DingTalk" scheme): the URL-encoded base64 of
/// HMAC-SHA256(secret, "<timestamp>\n<secret>"). It covers only the timestamp, never the message.
pub fn forwarder_sign(secret: &str, timestamp: &str) -> String {
    let mut mac = hmac(secret.as_bytes());
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    let encoded = BASE64.encode(mac.finalize().into_bytes());
    url::form_urlencoded::byte_serialize(encoded.as_bytes()).collect()
}

/// Whether `sign` is the forwarder sign of `timestamp` under `secret`, checked in constant time.
/// Accepts the value still URL-encoded or already decoded, and a `+` a form decoder turned into
/// a space (also first or last: only tabs and line breaks around it are trimmed).
pub fn verify_forwarder_sign(secret: &str, timestamp: &str, sign: &str) -> bool {
    let sign = sign
        .trim_matches(|c: char| c.is_whitespace() && c != ' ')
        .replace(' ', "+");
    let decoded: String = if sign.contains('%') {
        // Decode %XX only: a literal '+' is base64, not a space.
        url::form_urlencoded::parse(format!("v={}", sign.replace('+', "%2B")).as_bytes())
            .map(|(_, value)| value.into_owned())
            .next()
            .unwrap_or_default()
    } else {
        sign
    };
    let Ok(signature) = BASE64.decode(decoded.as_bytes()) else {
        return false;
    };
    let mut mac = hmac(secret.as_bytes());
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    mac.verify_slice(&signature).is_ok()
}

/// Lowercase hex MD5 of `text`: the digest the old protocols sign with.
pub fn md5_hex(text: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(text.as_bytes()))
}

/// Whether `sign` is `md5_hex(message + key)`, compared in constant time (V免签's scheme: the
/// fields concatenated as sent, then the key).
pub fn verify_md5_sign(message: &str, key: &str, sign: &str) -> bool {
    let expected = md5_hex(&format!("{message}{key}"));
    crate::core::secrets::constant_time_eq(
        expected.as_bytes(),
        sign.trim().to_ascii_lowercase().as_bytes(),
    )
}

/// Which fields a 易支付-style sign leaves out of its text, besides `sign` and `sign_type`: the
/// plugins disagree, and a request is signed over its fields as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignSpelling {
    /// Empty values (彩虹易支付's SDK, go-epay, dujiaoka).
    SkipEmpty,
    /// Values PHP reads as false: empty and `"0"` (card-system's `if (!$val)`).
    SkipFalsy,
    /// None: empty values are signed as `k=` (v2board's and Xboard's `http_build_query`).
    KeepEmpty,
    /// Values that are empty once trimmed (易支付 V2's SDK).
    SkipBlank,
}

impl SignSpelling {
    fn signs(self, name: &str, value: &str) -> bool {
        name != "sign"
            && name != "sign_type"
            && match self {
                SignSpelling::SkipEmpty => !value.is_empty(),
                SignSpelling::SkipFalsy => !value.is_empty() && value != "0",
                SignSpelling::KeepEmpty => true,
                SignSpelling::SkipBlank => !value.trim().is_empty(),
            }
    }
}

/// A value as it may stand in signed `k=v&k=v` text that is joined without encoding: `&` and
/// `=` in their full-width forms (`＆`, `＝`), so that the text cannot be cut into other fields
/// (`name=x&out_trade_no=<another order>`). For labels and messages; a value whose `&` and `=`
/// mean something (a URL's query) must not be shown this way, and is refused where it is taken in
/// ([`crate::compat::check_joined_value`]).
pub fn joinable(text: &str) -> String {
    text.replace('&', "＆").replace('=', "＝")
}

/// The text a 易支付-style sign covers: the fields `spelling` keeps, sorted by name (byte
/// order), joined as `k=v&k=v` without URL-encoding.
pub fn sorted_fields_text<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    spelling: SignSpelling,
) -> String {
    let mut signed: Vec<(&str, &str)> = fields
        .into_iter()
        .filter(|(name, value)| spelling.signs(name, value))
        .collect();
    signed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let joined: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    joined.join("&")
}

/// 易支付's sign: every field but `sign`, `sign_type` and empty ones, sorted by name (byte
/// order), joined as `k=v&k=v` without URL-encoding, the key appended, MD5 in lowercase hex.
pub fn epay_sign<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>, key: &str) -> String {
    epay_sign_spelled(fields, key, SignSpelling::SkipEmpty)
}

/// 易支付's sign over the fields `spelling` keeps.
pub fn epay_sign_spelled<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    key: &str,
    spelling: SignSpelling,
) -> String {
    md5_hex(&format!("{}{key}", sorted_fields_text(fields, spelling)))
}

/// epusdt's `signature`: the non-empty fields but `signature` as `k=v`, sorted as those texts
/// (its server sorts the joined pairs, not the names), joined with `&`, the API token appended,
/// MD5 in lowercase hex.
pub fn epusdt_sign<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    token: &str,
) -> String {
    let mut pairs: Vec<String> = fields
        .into_iter()
        .filter(|(name, value)| *name != "signature" && !value.is_empty())
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    pairs.sort();
    md5_hex(&format!("{}{token}", pairs.join("&")))
}

/// VPay's sign: every field but `sign` (empty ones too), sorted by name, joined as `k=v&k=v`,
/// then `&key=<key>`, SHA-256 in upper-case hex.
pub fn vpay_sign<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>, key: &str) -> String {
    use sha2::Digest;
    let text = sorted_fields_text(
        fields.into_iter().filter(|(name, _)| *name != "sign_type"),
        SignSpelling::KeepEmpty,
    );
    hex::encode_upper(Sha256::digest(format!("{text}&key={key}").as_bytes()))
}

/// Whether `given` is `expected`, ignoring case, in constant time.
pub fn sign_matches(expected: &str, given: &str) -> bool {
    crate::core::secrets::constant_time_eq(
        expected.to_ascii_lowercase().as_bytes(),
        given.trim().to_ascii_lowercase().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_secret_timestamp_and_body() {
        let header = sign_device_request("s3cret", "1732560000", b"{\"a\":1}");
        assert!(header.starts_with("v1=") && header.len() == 3 + 64);
        assert!(verify_device_signature(
            "s3cret",
            "1732560000",
            b"{\"a\":1}",
            &header
        ));
        assert!(!verify_device_signature(
            "other",
            "1732560000",
            b"{\"a\":1}",
            &header
        ));
        assert!(!verify_device_signature(
            "s3cret",
            "1732560001",
            b"{\"a\":1}",
            &header
        ));
        assert!(!verify_device_signature(
            "s3cret",
            "1732560000",
            b"{\"a\":2}",
            &header
        ));
        assert!(!verify_device_signature(
            "s3cret",
            "1732560000",
            b"{\"a\":1}",
            &header[3..]
        ));
        assert!(!verify_device_signature(
            "s3cret",
            "1732560000",
            b"{\"a\":1}",
            "v1=zz"
        ));
        assert!(!verify_device_signature(
            "s3cret",
            "1732560000",
            b"{\"a\":1}",
            ""
        ));
    }

    #[test]
    fn the_window_is_300_seconds_either_way() {
        assert!(timestamp_within_window("1000", 1300));
        assert!(timestamp_within_window("1300", 1000));
        assert!(!timestamp_within_window("999", 1300));
        assert!(!timestamp_within_window("1301", 1000));
        assert!(!timestamp_within_window("1e3", 1000));
        assert!(!timestamp_within_window("", 1000));
        assert!(!timestamp_within_window(&i64::MIN.to_string(), i64::MAX));
    }

    #[test]
    fn the_old_protocols_sign_with_md5_as_documented() {
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert!(verify_md5_sign("1", "key", &md5_hex("1key")));
        assert!(verify_md5_sign("1", "key", &md5_hex("1key").to_uppercase()));
        assert!(!verify_md5_sign("1", "key", &md5_hex("2key")));
        // Sorted by name, empty values and sign/sign_type dropped, no URL-encoding, key appended.
        let sign = epay_sign(
            [
                ("pid", "1001"),
                ("type", "alipay"),
                ("name", "a b&c"),
                ("param", ""),
                ("sign", "x"),
                ("sign_type", "MD5"),
                ("money", "1.00"),
            ],
            "KEY",
        );
        assert_eq!(
            sign,
            md5_hex("money=1.00&name=a b&c&pid=1001&type=alipayKEY")
        );
        let fields = [("b", "0"), ("a", ""), ("c", " "), ("sign", "x")];
        for (spelling, text) in [
            (SignSpelling::SkipEmpty, "b=0&c= "),
            (SignSpelling::SkipFalsy, "c= "),
            (SignSpelling::KeepEmpty, "a=&b=0&c= "),
            (SignSpelling::SkipBlank, "b=0"),
        ] {
            assert_eq!(sorted_fields_text(fields, spelling), text, "{spelling:?}");
        }
    }

    #[test]
    fn epusdt_and_vpay_sign_as_their_servers_do() {
        // epusdt's API document: amount=42&notify_url=…&order_id=…&redirect_url=… + token.
        assert_eq!(
            epusdt_sign(
                [
                    ("order_id", "20220201030210321"),
                    ("amount", "42"),
                    ("notify_url", "http://example.com/notify"),
                    ("redirect_url", "http://example.com/redirect"),
                    ("signature", "x"),
                    ("empty", ""),
                ],
                "epusdt_password_xasddawqe"
            ),
            md5_hex(
                "amount=42&notify_url=http://example.com/notify&order_id=20220201030210321\
                 &redirect_url=http://example.com/redirectepusdt_password_xasddawqe"
            )
        );
        let expected = {
            use sha2::Digest;
            hex::encode_upper(Sha256::digest(b"param=&payId=A1&price=10&key=K"))
        };
        assert_eq!(
            vpay_sign(
                [
                    ("payId", "A1"),
                    ("price", "10"),
                    ("param", ""),
                    ("sign", "x")
                ],
                "K"
            ),
            expected
        );
        assert!(sign_matches(&expected, &expected.to_lowercase()));
    }

    #[test]
    fn a_forwarder_sign_verifies_encoded_or_decoded_and_only_for_its_secret_and_time() {
        let encoded = forwarder_sign("s3cret", "1732560000123");
        assert!(verify_forwarder_sign("s3cret", "1732560000123", &encoded));
        let decoded: String = url::form_urlencoded::parse(format!("v={encoded}").as_bytes())
            .map(|(_, v)| v.into_owned())
            .next()
            .unwrap_or_default();
        assert!(verify_forwarder_sign("s3cret", "1732560000123", &decoded));
        // A form decoder turns an unencoded '+' into a space.
        assert!(verify_forwarder_sign(
            "s3cret",
            "1732560000123",
            &decoded.replace('+', " ")
        ));
        // Also when the '+' turned space is the first character (not trimmed away).
        let (timestamp, leading_plus) = (1_732_560_000_000u64..)
            .map(|t| {
                let base64 = url::form_urlencoded::parse(
                    format!("v={}", forwarder_sign("s3cret", &t.to_string())).as_bytes(),
                )
                .map(|(_, v)| v.into_owned())
                .next()
                .unwrap_or_default();
                (t.to_string(), base64)
            })
            .find(|(_, base64)| base64.starts_with('+'))
            .unwrap_or_default();
        let spaced = leading_plus.replace('+', " ");
        assert!(verify_forwarder_sign("s3cret", &timestamp, &spaced));
        assert!(verify_forwarder_sign(
            "s3cret",
            &timestamp,
            &format!("{spaced}\n")
        ));
        assert!(!verify_forwarder_sign("other", "1732560000123", &encoded));
        assert!(!verify_forwarder_sign("s3cret", "1732560000124", &encoded));
        assert!(!verify_forwarder_sign(
            "s3cret",
            "1732560000123",
            "not base64!"
        ));
    }

    proptest::proptest! {
        #[test]
        fn verifying_any_header_never_panics_and_never_accepts_a_wrong_one(
            header in "\\PC*", timestamp in "\\PC*", sign in "\\PC*", body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let right = sign_device_request("secret", &timestamp, &body);
            proptest::prop_assert_eq!(verify_device_signature("secret", &timestamp, &body, &header), header.trim() == right);
            let _ = verify_forwarder_sign("secret", &timestamp, &sign);
            let _ = verify_md5_sign(&timestamp, "key", &sign);
            let _ = timestamp_within_window(&timestamp, 0);
            let _ = epay_sign([("a", header.as_str()), ("b", sign.as_str())], "key");
        }
    }
}
