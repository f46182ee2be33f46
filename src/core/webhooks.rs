//! The rules of merchant webhooks: the payload, Standard Webhooks signatures, when to retry, and
//! which destination addresses are never called.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::domain::{DeliveryKind, EventType};
use crate::views;

/// The body of a webhook: `{"id", "type", "created_at", "data"}`.
#[derive(Debug, Serialize)]
pub struct Payload {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub created_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

impl Payload {
    /// The bytes sent (and signed) for an event; the same on every attempt.
    pub fn body(
        id: &str,
        event_type: EventType,
        created_at: DateTime<Utc>,
        data: &serde_json::Value,
    ) -> Vec<u8> {
        // Stored as jsonb, the order's keys come back reordered: print them in the API's order.
        let data = serde_json::from_value::<views::Order>(data.clone())
            .ok()
            .and_then(|order| serde_json::to_value(order).ok())
            .unwrap_or_else(|| data.clone());
        serde_json::to_vec(&Payload {
            id: id.to_string(),
            event_type,
            created_at,
            data,
        })
        .unwrap_or_default()
    }
}

/// Why a `whsec_` secret cannot sign.
#[derive(Debug, thiserror::Error)]
#[error("a webhook secret must be `whsec_` followed by base64")]
pub struct BadSecret;

/// One Standard Webhooks signature: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`,
/// where the key is the base64-decoded part of `whsec_<base64>`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, BadSecret> {
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").ok_or(BadSecret)?)
        .map_err(|_| BadSecret)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|_| BadSecret)?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header: one signature per secret, space-separated (the current
/// secret first; during a rotation the previous one too).
pub fn signature_header(
    secrets: &[&str],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, BadSecret> {
    let signatures = secrets
        .iter()
        .map(|secret| sign(secret, id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

/// Whether a receiver accepted a delivery: any 2xx for Standard Webhooks; the old protocols'
/// merchants answer a body instead (V免签: exactly `success` once whitespace and a UTF-8 BOM are
/// trimmed; 易支付 and V2: `success` anywhere, in any case; epusdt: `ok`, trimmed the same way;
/// VPay: a JSON object whose `state` is the number 0).
pub fn accepted(kind: DeliveryKind, status: Option<u16>, body: Option<&str>) -> bool {
    let Some(status) = status else {
        return false;
    };
    let body = body.unwrap_or_default();
    match kind {
        DeliveryKind::Standard => (200..300).contains(&status),
        DeliveryKind::Vmq => trimmed(body) == "success",
        DeliveryKind::Epay | DeliveryKind::Epay2 => body.to_ascii_lowercase().contains("success"),
        DeliveryKind::Epusdt => trimmed(body) == "ok",
        DeliveryKind::Vpay => serde_json::from_str::<serde_json::Value>(trimmed(body))
            .is_ok_and(|answer| answer.get("state").and_then(serde_json::Value::as_i64) == Some(0)),
    }
}

/// A body without the whitespace and UTF-8 BOM around it.
fn trimmed(body: &str) -> &str {
    body.trim().trim_start_matches('\u{feff}').trim()
}

/// What an attempt's answer means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Done,
    RetryAfter(Duration),
    GiveUp,
}

/// The longest wait a `Retry-After` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// After a failed attempt, the `failures_before`-th failure since the delivery (re)started:
/// wait the schedule's next step with ±10 % jitter (`jitter` in -1.0..=1.0), or longer when the
/// receiver asked so with `Retry-After`; give up when the schedule is exhausted.
pub fn after_failure(
    failures_before: usize,
    schedule: &[Duration],
    retry_after: Option<Duration>,
    jitter: f64,
) -> Next {
    let Some(step) = schedule.get(failures_before) else {
        return Next::GiveUp;
    };
    let jittered = step.mul_f64(1.0 + 0.1 * jitter.clamp(-1.0, 1.0));
    let wait = match retry_after {
        Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
        None => jittered,
    };
    Next::RetryAfter(wait)
}

/// Reads a `Retry-After` value: delay seconds, or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&Utc) - now).to_std().ok()
}

/// Whether a webhook must never be sent to this address: loopback, private, link-local (cloud
/// metadata lives there), shared, unspecified, multicast, reserved, and the IPv6 forms that embed
/// such an IPv4 address.
pub fn is_forbidden_destination(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_forbidden_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || (first == 0x2001 && v6.segments()[1] == 0) // Teredo 2001::/32 (tunnels)
                || (first == 0x64 && v6.segments()[1] == 0xff9b && v6.segments()[2] == 1) // local NAT64 64:ff9b:1::/48
        }
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space 100.64.0.0/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18.0.0/15
        || a >= 240 // reserved
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible, NAT64
/// (`64:ff9b::/96`) or 6to4 (`2002::/16`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(tail);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, b"").is_err());
        assert!(sign("whsec_%%%", "m", 1, b"").is_err());
    }

    #[test]
    fn a_rotation_signs_with_both_secrets() {
        let header = signature_header(
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAAA"],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(parts[1].starts_with("v1,"));
    }

    #[test]
    fn each_kind_of_receiver_accepts_in_its_own_way() {
        use DeliveryKind::*;
        assert!(accepted(Standard, Some(204), None));
        assert!(!accepted(Standard, Some(302), Some("success")));
        assert!(!accepted(Standard, None, None));
        assert!(accepted(Vmq, Some(200), Some("\u{feff} success\r\n")));
        assert!(!accepted(Vmq, Some(200), Some("success!")));
        assert!(!accepted(Vmq, Some(200), Some("fail")));
        assert!(accepted(Epay, Some(200), Some("<html>SUCCESS</html>")));
        assert!(!accepted(Epay, Some(200), Some("fail")));
        assert!(accepted(Epay2, Some(200), Some("success")));
        assert!(accepted(Epusdt, Some(200), Some("ok\n")));
        assert!(!accepted(Epusdt, Some(200), Some("okay")));
        assert!(accepted(
            Vpay,
            Some(200),
            Some(r#"{"state":0,"msg":"okok"}"#)
        ));
        assert!(!accepted(Vpay, Some(200), Some(r#"{"state":"0"}"#)));
        assert!(!accepted(
            Vpay,
            Some(200),
            Some(r#"{"state":-1,"msg":"sign error"}"#)
        ));
    }

    #[test]
    fn retries_follow_the_schedule_with_jitter_and_honour_retry_after() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(300)];
        assert_eq!(
            after_failure(0, &schedule, None, 0.0),
            Next::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(
            after_failure(0, &schedule, None, 1.0),
            Next::RetryAfter(Duration::from_millis(5500))
        );
        assert_eq!(
            after_failure(1, &schedule, None, -1.0),
            Next::RetryAfter(Duration::from_secs(270))
        );
        assert_eq!(after_failure(2, &schedule, None, 0.0), Next::GiveUp);
        // Retry-After is honoured when longer, never shortens the schedule, and is capped.
        assert_eq!(
            after_failure(0, &schedule, Some(Duration::from_secs(60)), 0.0),
            Next::RetryAfter(Duration::from_secs(60))
        );
        assert_eq!(
            after_failure(1, &schedule, Some(Duration::from_secs(1)), 0.0),
            Next::RetryAfter(Duration::from_secs(300))
        );
        assert_eq!(
            after_failure(0, &schedule, Some(Duration::from_secs(10 * 86_400)), 0.0),
            Next::RetryAfter(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 12:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn private_and_special_addresses_are_forbidden_public_ones_are_not() {
        for forbidden in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "ff02::1",
            "2001:db8::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b:1::a00:1",
        ] {
            assert!(
                is_forbidden_destination(forbidden.parse().unwrap()),
                "{forbidden}"
            );
        }
        for allowed in [
            "8.8.8.8",
            "1.1.1.1",
            "203.0.114.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(
                !is_forbidden_destination(allowed.parse().unwrap()),
                "{allowed}"
            );
        }
    }
}
