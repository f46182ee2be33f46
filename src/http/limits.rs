//! Per-IP rate limiting of what anyone can call without a bearer token: the public order status
//! and payment pages, the listener and forwarder endpoints, and the old protocols' endpoints
//! (the routes [`crate::routes`] declares public, wrapped in
//! [`crate::http::middleware::limit_per_address`]). Over the limit, `429 rate_limited` with
//! `Retry-After`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// The address a request counts as coming from: the one a trusted proxy appended to
/// `X-Forwarded-For` when `trust_forwarded_for`, else (or without a usable one) the peer's:
/// never no address at all.
pub fn client_address(
    headers: &actix_web::http::header::HeaderMap,
    peer: Option<std::net::SocketAddr>,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    let forwarded = || {
        let header = headers.get_all("x-forwarded-for").last()?;
        forwarded_client(Some(header.as_bytes()))
    };
    trust_forwarded_for
        .then(forwarded)
        .flatten()
        .or_else(|| peer.map(|a| a.ip()))
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
