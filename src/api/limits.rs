//! Per-IP rate limiting of what anyone can call without a bearer token: the public order status
//! and payment pages, the listener and forwarder endpoints, and the old protocols' endpoints.
//! Over the limit, `429 rate_limited` with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
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
    arrivals: Mutex<HashMap<IpAddr, Instant>>,
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
            arrivals: Mutex::new(HashMap::new()),
        })
    }

    /// Admits a request from `ip` at `now`, or says how long to wait.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut arrivals = self.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        if arrivals.len() >= PRUNE_AT {
            arrivals.retain(|_, arrival| *arrival > now);
        }
        let arrival = arrivals.get(&ip).copied().unwrap_or(now).max(now);
        if arrival - now > self.tolerance {
            return Err(arrival - now - self.tolerance);
        }
        arrivals.insert(ip, arrival + self.interval);
        Ok(())
    }
}

/// Whether a request is one of those limited per IP.
pub fn is_limited(method: &Method, path: &str) -> bool {
    const ROOTS: &[&str] = &[
        "/notify",
        "/heartbeat",
        "/appHeart",
        "/appPush",
        "/createOrder",
        "/getOrder",
        "/checkOrder",
        "/closeOrder",
        "/getState",
        "/submit.php",
        "/mapi.php",
        "/api.php",
    ];
    ROOTS.contains(&path)
        || path.starts_with("/forward/")
        || path.starts_with("/pay/")
        || (method == Method::GET && path.starts_with("/orders/"))
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
        assert!(is_limited(&Method::GET, "/orders/ord_1"));
        assert!(!is_limited(&Method::POST, "/orders"));
        assert!(!is_limited(&Method::GET, "/orders"));
        assert!(is_limited(&Method::POST, "/notify"));
        assert!(is_limited(&Method::POST, "/forward/dev_1"));
        assert!(is_limited(&Method::GET, "/pay/ord_1"));
        assert!(is_limited(&Method::GET, "/appPush"));
        assert!(!is_limited(&Method::GET, "/admin/orders"));
        assert!(!is_limited(&Method::GET, "/healthz"));
    }
}
