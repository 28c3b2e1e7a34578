//! `HttpGateway`: the engine's `Gateway` port over HTTP (reqwest). Every call has a timeout and a
//! bounded number of retries with exponential backoff and jitter on transport errors, 5xx, 408 and
//! 429; other 4xx answers are final. Charges and refunds carry an `Idempotency-Key`, so a retry (or a
//! re-send from durable state) never creates a second charge. Card numbers are never logged.
//! `https://` gateways are reached over TLS (rustls) with the public roots plus, optionally, a
//! private CA from a PEM file; a plain `http://` gateway that is not on loopback is warned about,
//! since card numbers would cross the network in the clear.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use payrail_actors::domain::PaymentSource;
use payrail_actors::ports::{
    AccountRegistration, ChargeRequest, Gateway, GatewayError, RefundRequest,
};
use rand::Rng;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

/// Per-request timeout unless configured otherwise.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Retries after the first attempt, on transport errors, 5xx, 408 and 429.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// First retry waits about this long; each further retry doubles it, up to the max.
pub const DEFAULT_BACKOFF_BASE_MS: u64 = 100;
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 2_000;
/// Error bodies are cut to this length before they go into an error message.
const ERROR_MESSAGE_MAX_CHARS: usize = 200;

/// How `HttpGateway` talks to the gateway.
#[derive(Debug, Clone)]
pub struct HttpGatewayConfig {
    /// e.g. `http://127.0.0.1:8081` (no trailing `/v1`).
    pub base_url: String,
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A PEM file of CA certificates trusted beside the public roots (a private gateway's CA).
    pub ca_file: Option<PathBuf>,
}

impl HttpGatewayConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
            max_retries: DEFAULT_MAX_RETRIES,
            backoff_base: Duration::from_millis(DEFAULT_BACKOFF_BASE_MS),
            backoff_max: Duration::from_millis(DEFAULT_BACKOFF_MAX_MS),
            ca_file: None,
        }
    }

    /// Also trusts the CA certificates in `ca_file`, if given.
    pub fn trusting(mut self, ca_file: Option<impl Into<PathBuf>>) -> Self {
        self.ca_file = ca_file.map(Into::into);
        self
    }
}

/// Whether `url` would send requests unencrypted to another machine: `http://` to a host that
/// is not a loopback name or address.
fn plaintext_to_remote(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    url.scheme() == "http" && !loopback
}

/// The gateway port over HTTP.
#[derive(Debug, Clone)]
pub struct HttpGateway {
    client: reqwest::Client,
    config: HttpGatewayConfig,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountBody<'a> {
    account: String,
    webhook_url: &'a str,
    webhook_secret: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CardBody<'a> {
    number: &'a str,
    exp_month: u32,
    exp_year: u32,
    cvc: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChargeBody<'a> {
    account: String,
    payment_id: String,
    amount: i64,
    currency: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    card: Option<CardBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RefundBody {
    account: String,
    payment_id: String,
    refund_id: String,
    amount: i64,
}

#[derive(Deserialize)]
struct ReferenceBody {
    reference: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// One attempt's result: done (with the response body), worth retrying, or final.
enum Attempt {
    Done(String),
    Retry(String),
    Fail(GatewayError),
}

impl HttpGateway {
    /// A client with the default timeout and retry policy.
    pub fn new(base_url: impl Into<String>) -> Result<Self, GatewayError> {
        Self::with_config(HttpGatewayConfig::new(base_url))
    }

    pub fn with_config(mut config: HttpGatewayConfig) -> Result<Self, GatewayError> {
        while config.base_url.ends_with('/') {
            config.base_url.pop();
        }
        if plaintext_to_remote(&config.base_url) {
            tracing::warn!(
                url = %config.base_url,
                "the gateway is reached over plain HTTP: card numbers cross the network unencrypted; use https://"
            );
        }
        // A redirect is not followed: it would send the charge, card number included, to
        // wherever the answer points.
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &config.ca_file {
            let unreadable = |e: &dyn std::fmt::Display| {
                GatewayError::Unavailable(format!("gateway CA file {}: {e}", path.display()))
            };
            let pem = std::fs::read(path).map_err(|e| unreadable(&e))?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unreadable(&e))?;
            if certificates.is_empty() {
                return Err(unreadable(&"no certificate in it"));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
            .build()
            .map_err(|e| GatewayError::Unavailable(format!("building HTTP client: {e}")))?;
        Ok(Self { client, config })
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    fn backoff(&self, retry: u32) -> Duration {
        let exponential = self
            .config
            .backoff_base
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.config.backoff_max);
        // "Equal jitter": half fixed, half random, so retries of many callers spread out.
        let half = exponential / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// POSTs `body` to `path`, retrying per the policy. `what` names the call in logs (never the
    /// body: it may hold a card number).
    async fn post<B: Serialize>(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        body: &B,
        what: &str,
        source_less_charge: bool,
    ) -> Result<String, GatewayError> {
        // Returns the 2xx body.
        let url = format!("{}{path}", self.config.base_url);
        let mut last_error = String::new();
        for retry in 0..=self.config.max_retries {
            if retry > 0 {
                tokio::time::sleep(self.backoff(retry - 1)).await;
            }
            let mut request = self.client.post(&url).json(body);
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            let outcome = match request.send().await {
                Ok(response) => classify(response, source_less_charge).await,
                Err(e) => Attempt::Retry(format!("transport: {}", e.without_url())),
            };
            match outcome {
                Attempt::Done(reference) => return Ok(reference),
                Attempt::Fail(error) => {
                    tracing::warn!(call = what, key = idempotency_key, %error, "gateway refused");
                    return Err(error);
                }
                Attempt::Retry(reason) => {
                    tracing::warn!(call = what, key = idempotency_key, attempt = retry + 1, %reason, "gateway call failed");
                    last_error = reason;
                }
            }
        }
        Err(GatewayError::Unavailable(last_error))
    }
}

/// The `reference` of a 2xx answer. Without one the outcome is unknown to us, so it counts as
/// unavailable: a re-send with the same key is safe and answers with the reference.
fn reference_of(text: &str) -> Result<String, GatewayError> {
    serde_json::from_str::<ReferenceBody>(text)
        .map(|body| body.reference)
        .map_err(|_| GatewayError::Unavailable("2xx answer without a reference".into()))
}

async fn classify(response: reqwest::Response, source_less_charge: bool) -> Attempt {
    let status = response.status();
    let text = match response.text().await {
        Ok(text) => text,
        Err(e) => return Attempt::Retry(format!("reading body: {}", e.without_url())),
    };
    if status.is_success() {
        return Attempt::Done(text);
    }
    // 408: the gateway gave up waiting for the request and did not act on it.
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        return Attempt::Retry(format!("status {status}"));
    }
    let error: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
    if status == StatusCode::NOT_FOUND
        && source_less_charge
        && error.code.as_deref() == Some("unknown_charge")
    {
        return Attempt::Fail(GatewayError::UnknownCharge);
    }
    if status == StatusCode::NOT_FOUND && error.code.as_deref() == Some("unknown_account") {
        return Attempt::Fail(GatewayError::UnknownAccount);
    }
    let mut message = match (error.code, error.message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        (None, Some(message)) => message,
        (None, None) => text,
    };
    if let Some((cut, _)) = message.char_indices().nth(ERROR_MESSAGE_MAX_CHARS) {
        message.truncate(cut);
    }
    Attempt::Fail(GatewayError::Rejected {
        status: status.as_u16(),
        message,
    })
}

#[async_trait]
impl Gateway for HttpGateway {
    async fn register_account(
        &self,
        registration: &AccountRegistration,
    ) -> Result<(), GatewayError> {
        let body = AccountBody {
            account: registration.account.to_string(),
            webhook_url: &registration.webhook_url,
            webhook_secret: &registration.webhook_secret,
        };
        self.post("/v1/accounts", None, &body, "register_account", false)
            .await
            .map(|_| ())
    }

    async fn create_charge(&self, request: &ChargeRequest) -> Result<String, GatewayError> {
        let (card, token) = match &request.source {
            Some(PaymentSource::Card {
                number,
                exp_month,
                exp_year,
                cvc,
            }) => (
                Some(CardBody {
                    number,
                    exp_month: *exp_month,
                    exp_year: *exp_year,
                    cvc,
                }),
                None,
            ),
            Some(PaymentSource::Token(token)) => (None, Some(token.as_str())),
            None => (None, None),
        };
        let key = request.payment_id.to_string();
        let body = ChargeBody {
            account: request.account.to_string(),
            payment_id: key.clone(),
            amount: request.amount,
            currency: request.currency.as_str(),
            card,
            token,
        };
        let source_less = request.source.is_none();
        let text = self
            .post(
                "/v1/charges",
                Some(&key),
                &body,
                "create_charge",
                source_less,
            )
            .await?;
        reference_of(&text)
    }

    async fn create_refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        let key = request.refund_id.to_string();
        let body = RefundBody {
            account: request.account.to_string(),
            payment_id: request.payment_id.to_string(),
            refund_id: key.clone(),
            amount: request.amount,
        };
        let text = self
            .post("/v1/refunds", Some(&key), &body, "create_refund", false)
            .await?;
        reference_of(&text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
