//! Per-IP rate limiting of what anyone can call without a bearer token: the public order status
//! and payment pages, the listener and forwarder endpoints, and the old protocols' endpoints.
//! Over the limit, `429 rate_limited` with `Retry-After`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::Method;

/// How many distinct addresses are tracked before idle ones are forgotten.
const PRUNE_AT: usize = 10_000;

/// A generic cell rate limiter per IP address: on average `per_second` requests a second, and
/// up to `burst` at once.
pub struct RateLimiter {
    interval: Duration,
    /// How far ahead of now an address's theoretical arrival time may run.
    tolerance: Duration,
    arrivals: Mutex<Arrivals>,
}

struct Arrivals {
    by_client: HashMap<IpAddr, Instant>,
    /// The size at which idle clients are forgotten next: doubles while every tracked client
    /// is active, so that the forgetting costs O(1) a request on average.
    prune_at: usize,
}

impl RateLimiter {
    /// `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<RateLimiter> {
        if per_second == 0 {
            return None;
        }
        let interval = Duration::from_secs(1) / per_second;
        Some(RateLimiter {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            arrivals: Mutex::new(Arrivals {
                by_client: HashMap::new(),
                prune_at: PRUNE_AT,
            }),
        })
    }

    /// Admits a request from `ip` at `now`, or says how long to wait. An IPv6 client is counted
    /// by its /64 (what one subscriber usually gets).
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let client = client_of(ip);
        let mut arrivals = self.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        if arrivals.by_client.len() >= arrivals.prune_at {
            arrivals.by_client.retain(|_, arrival| *arrival > now);
            arrivals.prune_at = PRUNE_AT.max(arrivals.by_client.len() * 2);
            // After a flood, give the memory back.
            let keep = arrivals.prune_at;
            arrivals.by_client.shrink_to(keep);
        }
        let arrival = arrivals
            .by_client
            .get(&client)
            .copied()
            .unwrap_or(now)
            .max(now);
        if arrival - now > self.tolerance {
            return Err(arrival - now - self.tolerance);
        }
        arrivals.by_client.insert(client, arrival + self.interval);
        Ok(())
    }
}

/// The unit a client is counted by: an IPv4 address (also when mapped into IPv6), or an IPv6 /64.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// The client's address when a trusted proxy stands in front: the last address of the last
/// `X-Forwarded-For` header, which is the one the proxy itself appended (what comes before it
/// is whatever the client sent, in any bytes). `None` when there is none or it is not an address.
pub fn forwarded_client(forwarded_for: Option<&[u8]>) -> Option<IpAddr> {
    let last = forwarded_for?.rsplit(|b| *b == b',').next()?;
    let last = std::str::from_utf8(last).ok()?.trim();
    if let Ok(ip) = last.parse::<IpAddr>() {
        return Some(ip);
    }
    // `192.0.2.1:4711` or `[2001:db8::1]:4711`.
    last.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// Which requests the per-address limit applies to, read from the routes' own declarations:
/// every route except those whose operation takes a bearer token (a merchant's API key or the
/// operator token: who holds one is no anonymous flood), and the few that touch neither the
/// database nor a body ([`UNMETERED`]). A route added later is limited unless its declaration
/// says it takes a bearer token; so is a path no route serves.
pub struct LimitedRoutes {
    exempt: Vec<(Method, Vec<Segment>)>,
}

/// Served without the database or a body, whoever asks: not limited.
pub const UNMETERED: &[&str] = &["/healthz", "/openapi.json", "/docs"];

/// The security schemes whose holders are not limited per address.
pub const BEARER_SCHEMES: &[&str] = &["merchant_api_key", "operator_token"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter,
}

impl LimitedRoutes {
    /// The policy of the routes an OpenAPI document describes.
    pub fn from_openapi(document: &utoipa::openapi::OpenApi) -> LimitedRoutes {
        let mut exempt = Vec::new();
        for (path, item) in &document.paths.paths {
            for (method, operation) in operations(item) {
                if takes_a_bearer_token(operation) {
                    exempt.push((method, template(path)));
                }
            }
        }
        LimitedRoutes { exempt }
    }

    /// Whether a request is limited. `path` as received: it is percent-decoded here as the
    /// router decodes it, so `/%6Eotify` is `/notify` for the limit too.
    pub fn is_limited(&self, method: &Method, path: &str) -> bool {
        let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        let path = path.as_ref();
        if UNMETERED
            .iter()
            .any(|free| path == *free || path.starts_with(&format!("{free}/")))
        {
            return false;
        }
        let segments: Vec<&str> = path.split('/').collect();
        !self
            .exempt
            .iter()
            .any(|(exempt, template)| exempt == method && matches(template, &segments))
    }
}

/// Whether an operation's declaration asks for a merchant's or the operator's bearer token.
pub fn takes_a_bearer_token(operation: &utoipa::openapi::path::Operation) -> bool {
    let Some(requirements) = &operation.security else {
        return false;
    };
    let json = serde_json::to_value(requirements).unwrap_or_default();
    json.as_array().is_some_and(|all| {
        !all.is_empty()
            && all.iter().all(|requirement| {
                requirement.as_object().is_some_and(|schemes| {
                    !schemes.is_empty()
                        && schemes
                            .keys()
                            .all(|scheme| BEARER_SCHEMES.contains(&scheme.as_str()))
                })
            })
    })
}

/// The operations of a path item, with their methods.
pub fn operations(
    item: &utoipa::openapi::path::PathItem,
) -> Vec<(Method, &utoipa::openapi::path::Operation)> {
    [
        (Method::GET, &item.get),
        (Method::POST, &item.post),
        (Method::PATCH, &item.patch),
        (Method::PUT, &item.put),
        (Method::DELETE, &item.delete),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_ref().map(|o| (method, o)))
    .collect()
}

fn template(path: &str) -> Vec<Segment> {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                Segment::Parameter
            } else {
                Segment::Literal(segment.to_string())
            }
        })
        .collect()
}

fn matches(template: &[Segment], segments: &[&str]) -> bool {
    template.len() == segments.len()
        && template
            .iter()
            .zip(segments)
            .all(|(part, segment)| match part {
                Segment::Literal(literal) => literal == segment,
                Segment::Parameter => !segment.is_empty(),
            })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_address() {
        let limiter = RateLimiter::new(10, 3).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(a, start).is_ok());
        }
        let wait = limiter.check(a, start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another address has its own allowance.
        assert!(limiter.check(b, start).is_ok());
        // After one interval, one more request passes.
        assert!(limiter.check(a, start + Duration::from_millis(100)).is_ok());
        assert!(
            limiter
                .check(a, start + Duration::from_millis(100))
                .is_err()
        );
        assert!(RateLimiter::new(0, 10).is_none());
    }

    #[test]
    fn only_public_and_unauthenticated_routes_are_limited() {
        let routes = LimitedRoutes::from_openapi(&crate::routes::openapi());
        let is_limited = |method: &Method, path: &str| routes.is_limited(method, path);
        assert!(is_limited(&Method::GET, "/orders/ord_1"));
        assert!(!is_limited(&Method::POST, "/orders"));
        assert!(!is_limited(&Method::GET, "/orders"));
        assert!(is_limited(&Method::POST, "/notify"));
        assert!(is_limited(&Method::POST, "/forward/dev_1"));
        assert!(is_limited(&Method::GET, "/pay/ord_1"));
        assert!(is_limited(&Method::GET, "/appPush"));
        assert!(!is_limited(&Method::GET, "/admin/orders"));
        assert!(!is_limited(&Method::GET, "/healthz"));
        assert!(is_limited(&Method::GET, "/readyz"));
        // Encoded as the router would decode them: limited all the same.
        assert!(is_limited(&Method::POST, "/%6Eotify"));
        assert!(is_limited(&Method::GET, "/%6Frders/ord_1"));
        assert!(is_limited(&Method::GET, "/%72eadyz"));
        // The operator's routes are exempt by their declaration, a path no route serves is not.
        assert!(!is_limited(&Method::POST, "/admin/payments/pay_1/assign"));
        assert!(!is_limited(&Method::PATCH, "/admin/payees/pye_1"));
        assert!(is_limited(&Method::POST, "/admin"));
        assert!(is_limited(&Method::GET, "/no/such/route"));
        assert!(!is_limited(&Method::GET, "/docs/index.html"));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limiter = RateLimiter::new(10, 1).unwrap();
        let start = Instant::now();
        let (a, b): (IpAddr, IpAddr) = (
            "2001:db8:1:2::1".parse().unwrap(),
            "2001:db8:1:2:ffff::9".parse().unwrap(),
        );
        assert!(limiter.check(a, start).is_ok());
        assert!(limiter.check(b, start).is_err(), "same /64");
        assert!(
            limiter
                .check("2001:db8:1:3::1".parse().unwrap(), start)
                .is_ok()
        );
        assert!(limiter.check("192.0.2.7".parse().unwrap(), start).is_ok());
        assert!(
            limiter
                .check("::ffff:192.0.2.7".parse().unwrap(), start)
                .is_err()
        );
    }

    #[test]
    fn the_forwarded_client_is_the_address_the_proxy_appended() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(forwarded_client(Some(b"198.51.100.9")), ip("198.51.100.9"));
        // What the client wrote itself comes first and is ignored.
        assert_eq!(
            forwarded_client(Some(b"1.2.3.4, 198.51.100.9")),
            ip("198.51.100.9")
        );
        assert_eq!(
            forwarded_client(Some(b"[2001:db8::1]:4711")),
            ip("2001:db8::1")
        );
        assert_eq!(
            forwarded_client(Some(b"198.51.100.9:4711")),
            ip("198.51.100.9")
        );
        assert_eq!(forwarded_client(Some(b"unknown")), None);
        assert_eq!(forwarded_client(None), None);
        // Whatever bytes the client put first do not spoil the proxy's entry.
        assert_eq!(
            forwarded_client(Some("é, 198.51.100.9".as_bytes())),
            ip("198.51.100.9")
        );
        assert_eq!(
            forwarded_client(Some(b"\xff\xfe, 198.51.100.9")),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn forgetting_idle_clients_keeps_the_active_ones() {
        let limiter = RateLimiter::new(1, 1).unwrap();
        let start = Instant::now();
        let busy: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limiter.check(busy, start).is_ok());
        for n in 0..(u32::try_from(PRUNE_AT).unwrap() + 10) {
            let other = IpAddr::V4(std::net::Ipv4Addr::from_bits(0x0a00_0000 + n));
            assert!(limiter.check(other, start).is_ok());
        }
        // Still within its interval: still limited after the map was pruned and grew.
        assert!(
            limiter
                .check(busy, start + Duration::from_millis(500))
                .is_err()
        );
        assert!(limiter.check(busy, start + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn idle_clients_are_forgotten() {
        let limiter = RateLimiter::new(1, 1).unwrap();
        let start = Instant::now();
        for n in 0..u32::try_from(PRUNE_AT).unwrap() {
            let client = IpAddr::V4(std::net::Ipv4Addr::from_bits(0x0a00_0000 + n));
            assert!(limiter.check(client, start).is_ok());
        }
        let tracked = |limiter: &RateLimiter| limiter.arrivals.lock().unwrap().by_client.len();
        assert_eq!(tracked(&limiter), PRUNE_AT);
        // Two seconds later all of them are idle: the next request forgets them.
        let later: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limiter.check(later, start + Duration::from_secs(2)).is_ok());
        assert_eq!(tracked(&limiter), 1);
    }
}
