//! One delivery attempt: `POST <url>` with the event as `GET /api/events` shows it, the
//! Standard Webhooks headers, a total time limit, no redirects, and the first 1 KiB of the
//! answer kept for the attempts log.

use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};

use super::signing::Signer;
use super::ssrf::{self, forbidden_class, NoAllowedAddress};
use super::OutboundSettings;
use crate::store::RESPONSE_BODY_KEPT_BYTES;

/// The delivery client: the guarded resolver, no redirects, keep-alive pooling, HTTP/1.1 and
/// HTTP/2 (negotiated by ALPN over TLS). No proxy, whatever the environment says: a proxy
/// would resolve the target's name itself, past the guarded resolver. As many idle
/// connections are kept per host as attempts may be in flight: many endpoints on one host
/// would otherwise open and close connections all the time.
pub fn client(settings: &OutboundSettings) -> anyhow::Result<Client> {
    Ok(Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .dns_resolver(ssrf::resolver(settings.policy()))
        .timeout(Duration::from_millis(settings.timeout_ms.max(1)))
        .pool_max_idle_per_host(settings.concurrency_total.max(1))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("Payrail-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP answer: its status and the start of its body.
    Status(u16, String),
    /// No answer: timeout, refused connection, refused target.
    NoAnswer(String),
}

impl Answer {
    pub fn succeeded(&self) -> bool {
        matches!(self, Self::Status(s, _) if (200..300).contains(s))
    }

    pub fn gone(&self) -> bool {
        matches!(self, Self::Status(410, _))
    }

    /// The attempts-log label of a transport failure, or the status class.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status(s, _) if (200..300).contains(s) => "2xx",
            Self::Status(s, _) if *s < 400 => "3xx",
            Self::Status(s, _) if *s < 500 => "4xx",
            Self::Status(..) => "5xx",
            Self::NoAnswer(e) if e == "timeout" => "timeout",
            Self::NoAnswer(_) => "error",
        }
    }
}

/// Where an endpoint's deliveries go: its URL, parsed once, and whether the policy refuses
/// it outright (a literal address never reaches the guarded resolver, so it is checked here).
#[derive(Debug, Clone)]
pub struct Target {
    url: Result<url::Url, String>,
    refused: Option<String>,
}

impl Target {
    pub fn new(url: &str, settings: &OutboundSettings) -> Self {
        let parsed = url::Url::parse(url);
        let literal: Option<std::net::IpAddr> = match parsed.as_ref().ok().and_then(|u| u.host()) {
            Some(url::Host::Ipv4(ip)) => Some(ip.into()),
            Some(url::Host::Ipv6(ip)) => Some(ip.into()),
            _ => None,
        };
        let refused = literal
            .and_then(forbidden_class)
            .filter(|_| !settings.allow_private_targets)
            .map(|class| format!("refused target: {class} address"));
        Self {
            url: parsed.map_err(|_| "request failed".to_owned()),
            refused,
        }
    }
}

/// One signed request to the endpoint.
pub struct Request<'a> {
    pub target: &'a Target,
    pub webhook_id: &'a str,
    pub timestamp: i64,
    pub body: &'a [u8],
    pub signer: &'a Signer,
}

/// Sends one attempt; answers what came back and how long it took.
pub async fn send(client: &Client, req: Request<'_>) -> (Answer, Duration) {
    let started = Instant::now();
    let answer = attempt(client, &req).await;
    (answer, started.elapsed())
}

async fn attempt(client: &Client, req: &Request<'_>) -> Answer {
    if let Some(refused) = &req.target.refused {
        return Answer::NoAnswer(refused.clone());
    }
    let url = match &req.target.url {
        Ok(url) => url.clone(),
        Err(e) => return Answer::NoAnswer(e.clone()),
    };
    let signature = req.signer.header(req.webhook_id, req.timestamp, req.body);
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", req.webhook_id)
        .header("webhook-timestamp", req.timestamp)
        .header("webhook-signature", signature)
        .body(req.body.to_vec())
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => return Answer::NoAnswer(describe(&e)),
    };
    let status = response.status();
    let mut kept = Vec::new();
    // Only the start of the body is kept; the rest is not waited for.
    while kept.len() < RESPONSE_BODY_KEPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            Ok(None) => break,
            // A body cut off or too slow: a success still needs its whole status line only,
            // but a slow body past the time limit is a timeout.
            Err(e) if e.is_timeout() => return Answer::NoAnswer("timeout".into()),
            Err(_) => break,
        }
    }
    kept.truncate(RESPONSE_BODY_KEPT_BYTES);
    Answer::Status(
        status_code(status),
        String::from_utf8_lossy(&kept).into_owned(),
    )
}

fn status_code(status: StatusCode) -> u16 {
    status.as_u16()
}

/// A transport failure in a few words, without the URL (it may carry a token). A host the
/// guarded resolver refused says so: it is the same refusal as a literal address's.
fn describe(e: &reqwest::Error) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<NoAllowedAddress>() {
            return format!("refused target: {NoAllowedAddress}");
        }
        cause = c.source();
    }
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}
