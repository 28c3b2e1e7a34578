//! Gateway webhooks: verify the signature once per request, parse once, hand every event to
//! the engine (payments in parallel, one group commit for the lot) and answer with counts only
//! after everything applied is durable.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use actix_web::http::header::HeaderName;
use actix_web::{post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payrail_actors::domain::{Currency, GatewayOutcome, PaymentId, RefundId, TenantId};
use payrail_actors::engine::GatewayEvent;
use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::errors::ApiError;
use super::idempotency::parse;
use super::openapi::{BadRequest, Internal, PayloadTooLarge, SignatureRefused, Unavailable};
use super::schemas::WebhookSummarySchema;
use super::{detached, AppState};
use crate::gateway::signature::{self, SignatureError};
use crate::ttl_cache::TtlCache;

/// [`signature::SIGNATURE_HEADER`] as header maps key it: looked up by a `&str`, actix-web
/// would build (and allocate) this name on every request.
static SIGNATURE_HEADER_NAME: HeaderName = HeaderName::from_static("payrail-signature");

/// Events per webhook request, at most.
pub const BATCH_MAX_EVENTS: usize = 500;
/// How long verified secrets are cached; rotation on this node clears the entry at once.
const SECRET_CACHE_TTL: Duration = Duration::from_secs(5);
const SECRET_CACHE_MAX_ENTRIES: usize = 100_000;

/// `(current, previous-until)` webhook secrets per tenant, briefly cached. An unknown account
/// is cached too (as `None`), so a flood of forged requests naming it costs no database read.
pub struct SecretCache {
    entries: TtlCache<TenantId, Option<Secrets>>,
    /// What an unknown account's signatures are checked against: the refusal then costs the
    /// same work as a known account's.
    decoy: String,
}

type Secrets = (SecretString, Option<(SecretString, DateTime<Utc>)>);

impl Default for SecretCache {
    fn default() -> Self {
        Self {
            entries: TtlCache::new(SECRET_CACHE_TTL, SECRET_CACHE_MAX_ENTRIES),
            decoy: super::auth::random_secret("whsec_"),
        }
    }
}

impl SecretCache {
    fn get(&self, tenant: TenantId) -> Option<Option<Secrets>> {
        self.entries.get(&tenant)
    }

    fn put(&self, tenant: TenantId, secrets: Option<Secrets>) {
        self.entries.put(tenant, secrets);
    }

    /// Drops what is cached for `tenant` (its secrets changed, or it was just created).
    pub fn forget(&self, tenant: TenantId) {
        self.entries.remove(&tenant);
    }
}

/// All that is read of a body before its signature verifies: the account it names.
#[derive(Deserialize)]
struct Envelope {
    account: Option<String>,
}

/// One gateway event. Types: `payment.processing`, `payment.succeeded`, `payment.failed`,
/// `refund.succeeded`, `refund.failed`. Its type and ids are read straight into what they name,
/// without a copy of their text; what does not parse is kept as unreadable, and the event is
/// then rejected (not the request).
#[derive(Deserialize)]
pub struct RawEvent {
    /// The gateway's event id; a repeat is counted as a duplicate.
    id: String,
    #[serde(rename = "type")]
    kind: Parsed<Kind>,
    /// The tenant id (`ten_…`); required on a single event.
    account: Option<String>,
    #[serde(default)]
    data: RawData,
}

#[derive(Clone, Copy)]
enum Kind {
    PaymentProcessing,
    PaymentSucceeded,
    PaymentFailed,
    RefundSucceeded,
    RefundFailed,
}

impl FromStr for Kind {
    type Err = ();

    fn from_str(kind: &str) -> Result<Self, ()> {
        Ok(match kind {
            "payment.processing" => Self::PaymentProcessing,
            "payment.succeeded" => Self::PaymentSucceeded,
            "payment.failed" => Self::PaymentFailed,
            "refund.succeeded" => Self::RefundSucceeded,
            "refund.failed" => Self::RefundFailed,
            _ => return Err(()),
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawData {
    payment_id: Option<Parsed<PaymentId>>,
    refund_id: Option<Parsed<RefundId>>,
    gateway_reference: Option<String>,
    amount: Option<i64>,
    currency: Option<Parsed<Currency>>,
    failure_code: Option<String>,
    failure_message: Option<String>,
}

/// A JSON string parsed as `T` where it is read; `None` when it does not parse. Anything but a
/// string is a type error, as it would be for text.
struct Parsed<T>(Option<T>);

impl<'de, T: FromStr> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text<T>(PhantomData<T>);
        impl<T: FromStr> Visitor<'_> for Text<T> {
            type Value = Parsed<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Parsed<T>, E> {
                Ok(Parsed(text.parse().ok()))
            }
        }
        deserializer.deserialize_str(Text(PhantomData))
    }
}

/// A webhook body as one typed pass reads it: a batch (`account` and `events`), or, when it is
/// not one, a single event, read again as such (a few hundred bytes). Any other field is
/// ignored, so a body that is both a batch and an event is read as the batch.
#[derive(Deserialize)]
struct Incoming {
    account: Option<String>,
    events: Option<Vec<RawEvent>>,
}

/// A webhook body as read before its signature is checked: the account it names, and its
/// events or why they cannot be read, which is told only to a caller whose signature holds.
pub struct ReadBody {
    pub account: String,
    pub events: Result<Events, ApiError>,
}

/// What a readable webhook body holds.
pub enum Events {
    Batch(Vec<RawEvent>),
    Single(Box<RawEvent>),
}

impl Events {
    pub fn into_vec(self) -> Vec<RawEvent> {
        match self {
            Self::Batch(events) => events,
            Self::Single(event) => vec![*event],
        }
    }
}

/// Reads a webhook body: a batch in one typed pass, else one event. Only a body that is not
/// JSON, or whose `account` is not text, is refused before the signature is checked.
pub fn read_body(body: &[u8]) -> Result<ReadBody, ApiError> {
    // A body with no `events` key is one event or nothing: read as the event first, it takes
    // one pass. The account is the same field either way.
    if !may_have_events(body) {
        if let Ok(event) = parse::<RawEvent>(body) {
            return Ok(ReadBody {
                account: event.account.clone().unwrap_or_default(),
                events: Ok(Events::Single(Box::new(event))),
            });
        }
    }
    let one_event = || parse::<RawEvent>(body).map(|event| Events::Single(Box::new(event)));
    Ok(match parse::<Incoming>(body) {
        Ok(Incoming { account, events }) => ReadBody {
            account: account.unwrap_or_default(),
            events: events.map_or_else(one_event, |events| Ok(Events::Batch(events))),
        },
        // Not a batch, though it has `events`: it may still be one event with an extra field.
        Err(not_a_batch) => ReadBody {
            account: parse::<Envelope>(body)?.account.unwrap_or_default(),
            events: one_event().map_err(|_| not_a_batch),
        },
    })
}

/// Whether a body may have a key `events`: it holds `"events"` as written, or a `\u` escape,
/// the only other way a key's letters can be written.
fn may_have_events(body: &[u8]) -> bool {
    memchr::memmem::find(body, br#""events""#).is_some()
        || memchr::memmem::find(body, br"\u").is_some()
}

/// Converts one event; `None` means rejected (another account, unknown shape or ids).
pub fn convert(account: &str, raw: RawEvent) -> Option<GatewayEvent> {
    if raw.account.as_deref().is_some_and(|a| a != account)
        || raw.id.is_empty()
        || raw.id.len() > 255
    {
        return None;
    }
    let d = raw.data;
    let payment_id = d.payment_id?.0?;
    let currency = match d.currency {
        Some(Parsed(currency)) => Some(currency?),
        None => None,
    };
    let refund_id = d.refund_id.and_then(|Parsed(id)| id);
    let outcome = match raw.kind.0? {
        Kind::PaymentProcessing => GatewayOutcome::Processing {
            reference: d.gateway_reference?,
        },
        Kind::PaymentSucceeded => GatewayOutcome::Succeeded {
            reference: d.gateway_reference,
            amount: d.amount,
            currency,
        },
        Kind::PaymentFailed => GatewayOutcome::Failed {
            code: d.failure_code.unwrap_or_else(|| "card_declined".into()),
            message: d.failure_message.unwrap_or_default(),
            amount: d.amount,
            currency,
        },
        Kind::RefundSucceeded => GatewayOutcome::RefundSucceeded {
            refund_id: refund_id?,
        },
        Kind::RefundFailed => GatewayOutcome::RefundFailed {
            refund_id: refund_id?,
            code: d.failure_code.unwrap_or_else(|| "refund_failed".into()),
        },
    };
    Some(GatewayEvent {
        id: raw.id,
        payment_id,
        outcome,
    })
}

/// The account's secrets, or `None` for an account that does not exist (or is no tenant id).
async fn secrets_for(
    state: &web::Data<AppState>,
    account: &str,
) -> Result<Option<Secrets>, ApiError> {
    let Ok(tenant) = account.parse::<TenantId>() else {
        return Ok(None);
    };
    if let Some(secrets) = state.secrets.get(tenant) {
        return Ok(secrets);
    }
    let db = state.db.clone();
    let secrets = detached(async move { Ok(db.webhook_secrets(tenant).await?) }).await?;
    state.secrets.put(tenant, secrets.clone());
    Ok(secrets)
}

/// Checks the signature against the account's secrets (a decoy for an unknown account). Every
/// refusal that depends on the account reads the same, so a caller cannot tell whether a
/// tenant exists.
fn verify(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
    secrets: Option<&Secrets>,
) -> Result<(), ApiError> {
    let header = req
        .headers()
        .get(&SIGNATURE_HEADER_NAME)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = state.clock.now();
    let mut valid = Vec::with_capacity(2);
    match secrets {
        Some((current, previous)) => {
            valid.push(current.expose_secret());
            if let Some((old, until)) = previous {
                if *until > now {
                    valid.push(old.expose_secret());
                }
            }
        }
        None => valid.push(state.secrets.decoy.as_str()),
    }
    let checked = signature::verify(
        header,
        body,
        &valid,
        now.timestamp(),
        state.settings.signature_tolerance_secs,
    )
    .and(match secrets {
        Some(_) => Ok(()),
        None => Err(SignatureError::Invalid),
    });
    checked.map_err(|e| match e {
        SignatureError::Stale => ApiError::StaleSignature,
        other => ApiError::InvalidSignature(other.to_string()),
    })
}

/// Gateway outcomes, signed with the tenant's webhook secret
/// (`Payrail-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`). Answers
/// once everything applied is durable.
#[utoipa::path(
    operation_id = "receiveGatewayWebhook",
    tag = "webhooks",
    security(()),
    params(("Payrail-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex>`; several `v1=` allowed")),
    request_body = super::webhook_schemas::GatewayWebhookSchema,
    responses(
        (status = 200, description = "Outcome counts", body = WebhookSummarySchema),
        BadRequest, SignatureRefused, PayloadTooLarge, Internal, Unavailable,
    )
)]
#[post("/api/webhooks/payments")]
pub async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let ReadBody { account, events } = read_body(&body)?;
    let secrets = secrets_for(&state, &account).await?;
    verify(&state, &req, &body, secrets.as_ref())?;
    let tenant: TenantId = account
        .parse()
        .map_err(|_| ApiError::InvalidSignature(SignatureError::Invalid.to_string()))?;
    let events = events?.into_vec();
    if events.len() > BATCH_MAX_EVENTS {
        return Err(ApiError::InvalidRequest(format!(
            "at most {BATCH_MAX_EVENTS} events per request"
        )));
    }
    let received = events.len();
    let converted: Vec<GatewayEvent> = events
        .into_iter()
        .filter_map(|e| convert(&account, e))
        .collect();
    let rejected_early = received - converted.len();
    let mut summary = state.engine.apply_gateway_events(tenant, converted).await?;
    summary.received = received;
    summary.rejected += rejected_early;
    state.intake.record(tenant, &summary, state.clock.now());
    Ok(HttpResponse::Ok().json(summary))
}

#[cfg(test)]
mod tests {
    use payrail_actors::domain::{PaymentId, TenantId};

    use super::{read_body, signature, Events, HeaderName, SecretCache, SIGNATURE_HEADER_NAME};

    /// The signature header is found under its documented name, however a client cases it.
    #[test]
    fn the_signature_header_name_is_the_documented_one() {
        let documented: HeaderName = signature::SIGNATURE_HEADER.parse().unwrap();
        assert_eq!(SIGNATURE_HEADER_NAME, documented);
        let mut req = actix_web::test::TestRequest::default()
            .insert_header(("PAYRAIL-SIGNATURE", "t=1,v1=00"))
            .to_http_request();
        assert!(req.headers().get(&SIGNATURE_HEADER_NAME).is_some());
        req = actix_web::test::TestRequest::default().to_http_request();
        assert!(req.headers().get(&SIGNATURE_HEADER_NAME).is_none());
    }

    /// A body that is one event reads as that event; one that is also a batch reads as the
    /// batch, its `events` key written with escapes or not.
    #[test]
    fn a_body_with_events_is_a_batch_however_its_key_is_written() {
        let (tenant, payment) = (TenantId::new(), PaymentId::new());
        let event = format!(
            r#""id":"evt_1","type":"payment.failed","account":"{tenant}","data":{{"paymentId":"{payment}"}}"#
        );
        let single = read_body(format!("{{{event}}}").as_bytes()).unwrap();
        assert_eq!(single.account, tenant.to_string());
        assert!(matches!(single.events, Ok(Events::Single(_))));
        for key in ["events", "\\u0065vents", "ev\\u0065nts"] {
            let both = format!(r#"{{{event},"{key}":[{{{event}}},{{{event}}}]}}"#);
            let read = read_body(both.as_bytes()).unwrap();
            assert_eq!(read.account, tenant.to_string(), "{both}");
            assert!(
                matches!(&read.events, Ok(Events::Batch(events)) if events.len() == 2),
                "{both}"
            );
        }
    }

    /// An account found unknown is remembered as unknown: a flood of requests naming it is
    /// answered from memory, not with a database read each.
    #[test]
    fn unknown_accounts_are_cached_and_forgotten_on_demand() {
        let cache = SecretCache::default();
        let tenant = TenantId::new();
        assert!(cache.get(tenant).is_none(), "nothing known yet");
        cache.put(tenant, None);
        assert!(matches!(cache.get(tenant), Some(None)), "cached as unknown");
        cache.forget(tenant);
        assert!(cache.get(tenant).is_none());
    }
}
