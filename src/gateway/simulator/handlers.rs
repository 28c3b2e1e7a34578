//! The simulator's HTTP API (`/v1/accounts`, `/v1/charges`, `/v1/refunds`). Bodies are parsed by
//! hand so a parse error can never echo a card number back or into a log.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::model::{
    card_number_valid, new_id, script_for_card, script_for_token, ChargeRecord, EventData,
    GatewayEvent, RefundRecord, Script, LATE_FAILURE_CODE, LATE_FAILURE_MESSAGE, PAYMENT_FAILED,
    PAYMENT_PROCESSING, PAYMENT_SUCCEEDED, REFUND_FAILED, REFUND_SUCCEEDED,
};
use super::state::{bump, lock, Account, Scheduled, Shared};
use super::SimulatorState;

/// Longest idempotency key accepted (docs/api.md: 1–255 printable ASCII).
const IDEMPOTENCY_KEY_MAX_CHARS: usize = 255;
/// Accounts (tenants) the simulator keeps; registrations beyond it are refused.
const MAX_ACCOUNTS: usize = 100_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccountInput {
    account: String,
    webhook_url: String,
    webhook_secret: String,
}

/// No `Debug`: it holds a card number.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CardInput {
    number: String,
    exp_month: u32,
    exp_year: u32,
    cvc: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChargeInput {
    account: String,
    payment_id: String,
    amount: i64,
    currency: String,
    card: Option<CardInput>,
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RefundInput {
    account: String,
    payment_id: String,
    refund_id: String,
    amount: i64,
}

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"code": code, "message": message}))
}

fn bad_request(message: &str) -> HttpResponse {
    error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

fn overloaded() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header(("Retry-After", "1"))
        .json(json!({"code": "overloaded", "message": "webhook schedule is full"}))
}

/// A refused request, small enough to pass around in a `Result`.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
}

impl Refusal {
    fn bad_request(message: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message,
        }
    }
}

impl From<Refusal> for HttpResponse {
    fn from(refusal: Refusal) -> Self {
        error(refusal.status, refusal.code, refusal.message)
    }
}

/// Parses a JSON body without ever putting serde's message (which may quote values) anywhere.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|_| Refusal::bad_request("malformed JSON body"))
}

fn idempotency_key(request: &HttpRequest, fallback: &str) -> Result<String, Refusal> {
    let Some(value) = request.headers().get("Idempotency-Key") else {
        return Ok(fallback.to_owned());
    };
    match value.to_str() {
        Ok(key)
            if !key.is_empty()
                && key.len() <= IDEMPOTENCY_KEY_MAX_CHARS
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(key.to_owned())
        }
        _ => Err(Refusal::bad_request(
            "Idempotency-Key must be 1-255 printable ASCII characters",
        )),
    }
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

pub async fn register_account(state: web::Data<SimulatorState>, body: web::Bytes) -> HttpResponse {
    let input: AccountInput = match parse(&body) {
        Ok(input) => input,
        Err(refusal) => return refusal.into(),
    };
    let url = url::Url::parse(&input.webhook_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    let webhook_url = match url {
        Some(url) if !input.account.is_empty() && !input.webhook_secret.is_empty() => url,
        _ => return bad_request("account, an http(s) webhookUrl and a webhookSecret are required"),
    };
    let shared = state.shared();
    let mut accounts = lock(&shared.accounts);
    if accounts.len() >= MAX_ACCOUNTS && !accounts.contains_key(&input.account) {
        return error(
            StatusCode::INSUFFICIENT_STORAGE,
            "too_many_accounts",
            "account limit reached",
        );
    }
    accounts.insert(
        input.account.clone(),
        Arc::new(Account {
            webhook_url,
            webhook_secret: input.webhook_secret,
        }),
    );
    drop(accounts);
    tracing::info!(account = %input.account, "gateway simulator: account registered");
    HttpResponse::Ok().json(json!({"account": input.account}))
}

/// The card's script and last4, or a 400.
fn charge_script(input: &ChargeInput) -> Result<(Script, String), Refusal> {
    match (&input.card, &input.token) {
        (Some(card), None) => {
            let expiry_ok = (1..=12).contains(&card.exp_month) && card.exp_year >= 2000;
            let cvc_ok =
                (3..=4).contains(&card.cvc.len()) && card.cvc.bytes().all(|b| b.is_ascii_digit());
            if !card_number_valid(&card.number) || !expiry_ok || !cvc_ok {
                return Err(Refusal {
                    status: StatusCode::BAD_REQUEST,
                    code: "invalid_card",
                    message: "invalid card details",
                });
            }
            let last4 = card.number[card.number.len() - 4..].to_owned();
            Ok((script_for_card(&card.number), last4))
        }
        (None, Some(token)) => script_for_token(token)
            .map(|(script, last4)| (script, last4.to_owned()))
            .ok_or(Refusal {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_token",
                message: "unknown token",
            }),
        _ => Err(Refusal::bad_request("give exactly one of card or token")),
    }
}

fn payment_event(kind: &'static str, account: &str, charge: &ChargeRecord) -> GatewayEvent {
    GatewayEvent {
        id: new_id("evt_gw"),
        kind,
        account: account.to_owned(),
        created: now_unix(),
        data: EventData {
            payment_id: charge.payment_id.clone(),
            refund_id: None,
            gateway_reference: charge.reference.clone(),
            amount: charge.amount,
            currency: Some(charge.currency.clone()),
            failure_code: None,
            failure_message: None,
        },
    }
}

fn failed(mut event: GatewayEvent, code: &str, message: &str) -> GatewayEvent {
    event.data.failure_code = Some(code.to_owned());
    event.data.failure_message = Some(message.to_owned());
    event
}

/// Schedules `payment.processing`, then the scripted outcome (and its stale follow-up).
fn schedule_charge(shared: &Shared, account: &str, charge: &ChargeRecord) -> bool {
    let processing_due = Instant::now() + shared.draw_delay();
    let outcome_due = processing_due + shared.draw_delay();
    let late_delay = std::time::Duration::from_millis(shared.config.late_failure_delay_ms);
    let (outcome, follow_up) = match charge.script {
        Script::Succeed => (payment_event(PAYMENT_SUCCEEDED, account, charge), None),
        Script::Fail { code, message } => (
            failed(
                payment_event(PAYMENT_FAILED, account, charge),
                code,
                message,
            ),
            None,
        ),
        Script::SucceedThenLateFail => {
            let stale = payment_event(PAYMENT_FAILED, account, charge);
            let stale = failed(stale, LATE_FAILURE_CODE, LATE_FAILURE_MESSAGE);
            (
                payment_event(PAYMENT_SUCCEEDED, account, charge),
                Some((stale, late_delay)),
            )
        }
    };
    let processing = Scheduled {
        due: processing_due,
        event: payment_event(PAYMENT_PROCESSING, account, charge),
        follow_up: None,
    };
    let outcome = Scheduled {
        due: outcome_due,
        event: outcome,
        follow_up,
    };
    shared.schedule(processing) && shared.schedule(outcome)
}

pub async fn create_charge(
    state: web::Data<SimulatorState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let shared = state.shared();
    bump(&shared.counters.charges_received, 1);
    let input: ChargeInput = match parse(&body) {
        Ok(input) => input,
        Err(refusal) => return refusal.into(),
    };
    let key = match idempotency_key(&request, &input.payment_id) {
        Ok(key) => key,
        Err(refusal) => return refusal.into(),
    };
    if input.amount <= 0 || input.currency.len() != 3 || input.payment_id.is_empty() {
        return bad_request("amount must be positive, currency a 3-letter code");
    }
    if shared.account(&input.account).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_account",
            "account is not registered",
        );
    }
    let mut ledger = lock(&shared.ledger);
    if let Some(existing) = ledger.charges.get(&(input.account.clone(), key.clone())) {
        let same = existing.payment_id == input.payment_id
            && existing.amount == input.amount
            && existing.currency == input.currency;
        if !same {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "key already used for a different charge",
            );
        }
        return HttpResponse::Accepted().json(json!({"reference": existing.reference}));
    }
    if input.card.is_none() && input.token.is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_charge",
            "no charge under this key",
        );
    }
    let (script, last4) = match charge_script(&input) {
        Ok(found) => found,
        Err(refusal) => return refusal.into(),
    };
    let events = if script == Script::SucceedThenLateFail {
        3
    } else {
        2
    };
    if !shared.reserve(events) {
        return overloaded();
    }
    let charge = ChargeRecord {
        reference: new_id("ch"),
        payment_id: input.payment_id.clone(),
        amount: input.amount,
        currency: input.currency.clone(),
        last4,
        script,
        refunded: 0,
    };
    if !schedule_charge(shared, &input.account, &charge) {
        return overloaded();
    }
    let reference = charge.reference.clone();
    tracing::debug!(account = %input.account, payment = %charge.payment_id, last4 = %charge.last4, %reference, "gateway simulator: charge created");
    ledger.insert_charge(&input.account, &key, charge, shared.config.max_records);
    bump(&shared.counters.charges_created, 1);
    HttpResponse::Accepted().json(json!({"reference": reference}))
}

pub async fn create_refund(
    state: web::Data<SimulatorState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let shared = state.shared();
    bump(&shared.counters.refunds_received, 1);
    let input: RefundInput = match parse(&body) {
        Ok(input) => input,
        Err(refusal) => return refusal.into(),
    };
    let key = match idempotency_key(&request, &input.refund_id) {
        Ok(key) => key,
        Err(refusal) => return refusal.into(),
    };
    if input.amount <= 0 {
        return bad_request("amount must be positive");
    }
    let mut ledger = lock(&shared.ledger);
    if let Some(existing) = ledger.refunds.get(&(input.account.clone(), key.clone())) {
        if existing.payment_id != input.payment_id || existing.amount != input.amount {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "key already used for a different refund",
            );
        }
        return HttpResponse::Accepted().json(json!({"reference": existing.reference}));
    }
    let Some(charge) = ledger.charge_of_payment(&input.account, &input.payment_id) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_charge",
            "no charge for this payment",
        );
    };
    if !shared.reserve(1) {
        return overloaded();
    }
    let reference = new_id("rf");
    let refundable = if charge.captured() {
        charge.amount - charge.refunded
    } else {
        0
    };
    let mut event = payment_event(REFUND_SUCCEEDED, &input.account, charge);
    event.data.refund_id = Some(input.refund_id.clone());
    event.data.gateway_reference = reference.clone();
    event.data.amount = input.amount;
    if input.amount > refundable {
        event.kind = REFUND_FAILED;
        event = failed(
            event,
            "amount_exceeds_captured",
            "refund exceeds the captured amount",
        );
    } else {
        charge.refunded += input.amount;
    }
    let scheduled = Scheduled {
        due: Instant::now() + shared.draw_delay(),
        event,
        follow_up: None,
    };
    if !shared.schedule(scheduled) {
        return overloaded();
    }
    let record = RefundRecord {
        reference: reference.clone(),
        payment_id: input.payment_id,
        amount: input.amount,
    };
    ledger.insert_refund(&input.account, &key, record, shared.config.max_records);
    bump(&shared.counters.refunds_created, 1);
    HttpResponse::Accepted().json(json!({"reference": reference}))
}
