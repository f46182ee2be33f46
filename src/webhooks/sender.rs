//! The HTTP side of webhook delivery: one signed POST, with outbound safety (no redirects, no
//! proxies, destinations checked on the address actually connected to) and a bounded read of
//! the answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};

use crate::core::webhooks::{is_forbidden_destination, parse_retry_after};

/// The part of a response body kept with each attempt.
pub const EXCERPT_BYTES: usize = 1024;

/// What one attempt got back.
#[derive(Debug)]
pub struct Response {
    pub status: Option<u16>,
    pub excerpt: Option<String>,
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
    pub latency: Duration,
}

/// A request to send: a POST with a body, or a GET (the old protocols' callbacks).
pub struct Request {
    pub method: reqwest::Method,
    pub url: String,
    pub body: Vec<u8>,
    /// Extra headers (the Standard Webhooks ones).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

/// Resolves names, then drops every forbidden address: the check happens on what the connection
/// will use, so a name cannot pass the check and then resolve elsewhere.
struct SafeResolver {
    allow_private: bool,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "refused: {0} resolves only to loopback, private, link-local or otherwise reserved addresses"
)]
struct ForbiddenDestination(String);

impl Resolve for SafeResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = resolved
                .filter(|addr| allow_private || !is_forbidden_destination(addr.ip()))
                .collect();
            if allowed.is_empty() {
                let refused: Box<dyn std::error::Error + Send + Sync> =
                    Box::new(ForbiddenDestination(host));
                return Err(refused);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// An HTTP client builder with TLS by rustls and ring, the crypto provider solopay builds with
/// (reqwest then needs it installed as the process default before any client is built).
pub fn http_client_builder() -> reqwest::ClientBuilder {
    // Installing twice is harmless: the first provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

impl Sender {
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Sender, String> {
        let client = http_client_builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(SafeResolver { allow_private }))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Sender {
            client,
            allow_private,
        })
    }

    /// Sends one request; never fails, the outcome says what happened.
    pub async fn send(&self, request: Request) -> Response {
        let started = Instant::now();
        let refused = |error: String| Response {
            status: None,
            excerpt: None,
            error: Some(error),
            retry_after: None,
            latency: started.elapsed(),
        };
        let url = match reqwest::Url::parse(&request.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => return refused("refused: the URL is not an absolute http(s) URL".into()),
        };
        // A literal address is not resolved, so the resolver cannot check it.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && !self.allow_private
            && is_forbidden_destination(ip)
        {
            return refused(format!(
                "refused: {ip} is a loopback, private, link-local or otherwise reserved address"
            ));
        }

        let is_post = request.method == reqwest::Method::POST;
        let mut builder = self
            .client
            .request(request.method, url)
            .header(USER_AGENT, concat!("solopay/", env!("CARGO_PKG_VERSION")));
        if is_post {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        let response = match builder.body(request.body).send().await {
            Ok(response) => response,
            Err(error) => return refused(describe(error)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
            .filter(|_| status == 429 || status == 503);
        // Only the beginning of the answer is kept; the rest is never read.
        let mut response = response;
        let mut excerpt = Vec::new();
        let mut error = None;
        while excerpt.len() < EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = EXCERPT_BYTES - excerpt.len();
                    excerpt.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(describe(e));
                    break;
                }
            }
        }
        Response {
            status: Some(status),
            // Stored as text, which cannot hold U+0000.
            excerpt: Some(String::from_utf8_lossy(&excerpt).replace('\0', "\u{FFFD}")),
            error: error.map(|e| e.replace('\0', "\u{FFFD}")),
            retry_after,
            latency: started.elapsed(),
        }
    }
}

/// The error and its causes in one line (reqwest hides the useful part in the source chain),
/// without the URL: a Telegram bot's token or a robot's key travels in it, and this text is
/// stored and shown.
fn describe(error: reqwest::Error) -> String {
    use std::error::Error;
    let error = error.without_url();
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}
