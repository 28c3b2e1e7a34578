//! What the simulator sends and keeps: webhook events (docs/api.md's JSON shape), the test cards and
//! tokens with their scripted outcomes, and the charge/refund records behind idempotency.

use serde::Serialize;

pub const PAYMENT_PROCESSING: &str = "payment.processing";
pub const PAYMENT_SUCCEEDED: &str = "payment.succeeded";
pub const PAYMENT_FAILED: &str = "payment.failed";
pub const REFUND_SUCCEEDED: &str = "refund.succeeded";
pub const REFUND_FAILED: &str = "refund.failed";

/// One webhook event, serialized exactly as docs/api.md documents it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub account: String,
    pub created: i64,
    pub data: EventData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    pub payment_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    pub gateway_reference: String,
    pub amount: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

/// A batch body: up to `batch_size` events of one account.
#[derive(Debug, Serialize)]
pub struct EventBatch<'a> {
    pub account: &'a str,
    pub events: Vec<&'a GatewayEvent>,
}

/// What a test card or token is scripted to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Succeed,
    Fail {
        code: &'static str,
        message: &'static str,
    },
    /// Succeeds, then a stale `payment.failed` follows after the late-failure delay.
    SucceedThenLateFail,
}

const DECLINED: Script = Script::Fail {
    code: "card_declined",
    message: "Your card was declined.",
};
const INSUFFICIENT: Script = Script::Fail {
    code: "insufficient_funds",
    message: "Your card has insufficient funds.",
};

/// The stale failure sent after a `SucceedThenLateFail` success.
pub const LATE_FAILURE_CODE: &str = "card_declined";
pub const LATE_FAILURE_MESSAGE: &str = "Late failure after success (simulated, stale).";

/// The scripted outcome of a card number (any other valid card succeeds).
pub fn script_for_card(number: &str) -> Script {
    match number {
        "4000000000000002" => DECLINED,
        "4000000000009995" => INSUFFICIENT,
        "4000000000000259" => Script::SucceedThenLateFail,
        _ => Script::Succeed,
    }
}

/// The scripted outcome and last4 of a test token; `None` for an unknown token.
pub fn script_for_token(token: &str) -> Option<(Script, &'static str)> {
    match token {
        "tok_visa" => Some((Script::Succeed, "4242")),
        "tok_chargeDeclined" => Some((DECLINED, "0002")),
        "tok_insufficientFunds" => Some((INSUFFICIENT, "9995")),
        "tok_lateFailure" => Some((Script::SucceedThenLateFail, "0259")),
        _ => None,
    }
}

/// Digits only, 12–19 of them, Luhn-valid.
pub fn card_number_valid(number: &str) -> bool {
    (12..=19).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
        && payrail_actors::domain::card::luhn_valid(number)
}

/// What the simulator keeps about a charge: never the card number, only its last4.
#[derive(Debug, Clone)]
pub struct ChargeRecord {
    pub reference: String,
    pub payment_id: String,
    pub amount: i64,
    pub currency: String,
    pub last4: String,
    pub script: Script,
    pub refunded: i64,
}

impl ChargeRecord {
    /// Whether the charge ended up captured (a late failure does not undo the capture).
    pub fn captured(&self) -> bool {
        !matches!(self.script, Script::Fail { .. })
    }
}

#[derive(Debug, Clone)]
pub struct RefundRecord {
    pub reference: String,
    pub payment_id: String,
    pub amount: i64,
}

/// A fresh, globally unique id with a prefix (`evt_gw`, `ch`, `rf`). Unique across restarts too:
/// the engine deduplicates event ids for days, so a restarted simulator must not reuse any.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}
