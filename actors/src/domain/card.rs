//! Card input: Luhn check, brand, last4 and a keyed fingerprint. The full number only ever
//! travels to the gateway inside `PaymentSource`, whose `Debug` hides it; it is never stored.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{DomainError, FieldError, TenantId};

/// What is kept about a card: never the full number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardSummary {
    #[serde(rename = "type")]
    pub kind: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
    pub fingerprint: String,
}

/// `paymentMethod` as a client sends it: a raw card or a gateway token.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentMethodInput {
    #[serde(rename = "type")]
    pub kind: String,
    pub number: Option<String>,
    pub exp_month: Option<u32>,
    pub exp_year: Option<u32>,
    pub cvc: Option<String>,
    pub token: Option<String>,
}

impl std::fmt::Debug for PaymentMethodInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentMethodInput")
            .field("kind", &self.kind)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// What the gateway is charged with. The card number lives only in memory, on its way there.
#[derive(Clone, PartialEq, Eq)]
pub enum PaymentSource {
    Card {
        number: String,
        exp_month: u32,
        exp_year: u32,
        cvc: String,
    },
    Token(String),
}

impl std::fmt::Debug for PaymentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Card { .. } => f.write_str("Card(<redacted>)"),
            Self::Token(token) => write!(f, "Token({token})"),
        }
    }
}

/// Test tokens the gateway understands, with the card each stands for.
const KNOWN_TOKENS: [(&str, &str, &str); 4] = [
    ("tok_visa", "visa", "4242"),
    ("tok_chargeDeclined", "visa", "0002"),
    ("tok_insufficientFunds", "visa", "9995"),
    ("tok_lateFailure", "visa", "0259"),
];

/// Validates a payment method against `today` (year, month) and derives its summary.
pub fn parse_payment_method(
    input: &PaymentMethodInput,
    fingerprint_key: &[u8],
    today: (u32, u32),
) -> Result<(CardSummary, PaymentSource), DomainError> {
    if input.kind != "card" {
        return Err(DomainError::validation(
            "paymentMethod.type",
            "must be \"card\"",
        ));
    }
    if let Some(token) = &input.token {
        if input.number.is_some() {
            return Err(DomainError::validation(
                "paymentMethod",
                "give either a token or a card number, not both",
            ));
        }
        let (_, brand, last4) = KNOWN_TOKENS
            .iter()
            .find(|(t, _, _)| t == token)
            .ok_or_else(|| DomainError::validation("paymentMethod.token", "unknown token"))?;
        let summary = CardSummary {
            kind: "card".into(),
            brand: (*brand).into(),
            last4: (*last4).into(),
            exp_month: 12,
            exp_year: today.0 + 5,
            fingerprint: fingerprint(fingerprint_key, token),
        };
        return Ok((summary, PaymentSource::Token(token.clone())));
    }
    let mut errors = Vec::new();
    let number = input.number.as_deref().unwrap_or_default();
    if number.is_empty() {
        errors.push(field("paymentMethod.number", "is required"));
    } else if !(12..=19).contains(&number.len())
        || !number.bytes().all(|b| b.is_ascii_digit())
        || !luhn_valid(number)
    {
        errors.push(field("paymentMethod.number", "is not a valid card number"));
    }
    let exp_month = input.exp_month.unwrap_or(0);
    let exp_year = input.exp_year.unwrap_or(0);
    if !(1..=12).contains(&exp_month) {
        errors.push(field("paymentMethod.expMonth", "must be 1-12"));
    }
    if !(2000..=2100).contains(&exp_year) {
        errors.push(field("paymentMethod.expYear", "must be a 4-digit year"));
    } else if (exp_year, exp_month) < today {
        errors.push(field("paymentMethod.expYear", "card has expired"));
    }
    let cvc = input.cvc.clone().unwrap_or_default();
    if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(field("paymentMethod.cvc", "must be 3 or 4 digits"));
    }
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors));
    }
    let summary = CardSummary {
        kind: "card".into(),
        brand: brand_of(number).into(),
        last4: number[number.len() - 4..].into(),
        exp_month,
        exp_year,
        fingerprint: fingerprint(fingerprint_key, number),
    };
    let source = PaymentSource::Card {
        number: number.to_owned(),
        exp_month,
        exp_year,
        cvc,
    };
    Ok((summary, source))
}

fn field(name: &str, message: &str) -> FieldError {
    FieldError {
        field: name.into(),
        message: message.into(),
    }
}

/// The Luhn (mod 10) checksum over ASCII digits.
pub fn luhn_valid(number: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in number.bytes().rev().enumerate() {
        let mut d = u32::from(b.wrapping_sub(b'0'));
        if d > 9 {
            return false;
        }
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

fn brand_of(number: &str) -> &'static str {
    let prefix2: u32 = number.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let prefix4: u32 = number.get(..4).and_then(|p| p.parse().ok()).unwrap_or(0);
    match (number.as_bytes()[0], prefix2, prefix4) {
        (b'4', _, _) => "visa",
        (_, 51..=55, _) | (_, _, 2221..=2720) => "mastercard",
        (_, 34 | 37, _) => "amex",
        (_, 65, _) | (_, _, 6011) => "discover",
        _ => "unknown",
    }
}

/// The fingerprint key of one tenant, derived from the deployment's: a card's fingerprint is
/// stable within a tenant and says nothing about the same card at another tenant.
pub fn tenant_fingerprint_key(deployment_key: &[u8], tenant: TenantId) -> Vec<u8> {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(deployment_key) else {
        return Vec::new();
    };
    mac.update(b"tenant card fingerprint\0");
    mac.update(tenant.to_string().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A keyed fingerprint: the same card gives the same value per key, and it cannot be reversed.
pub fn fingerprint(key: &[u8], number: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(number.as_bytes());
    let digest = mac.finalize().into_bytes();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: &str) -> PaymentMethodInput {
        PaymentMethodInput {
            kind: "card".into(),
            number: Some(number.into()),
            exp_month: Some(12),
            exp_year: Some(2030),
            cvc: Some("123".into()),
            token: None,
        }
    }

    #[test]
    fn accepts_test_cards_and_keeps_only_a_summary() {
        let (summary, source) =
            parse_payment_method(&card("4242424242424242"), b"k", (2026, 11)).unwrap();
        assert_eq!(summary.brand, "visa");
        assert_eq!(summary.last4, "4242");
        assert_eq!(summary.fingerprint.len(), 16);
        let json = serde_json::to_string(&summary).unwrap();
        assert!(!json.contains("4242424242424242"));
        assert!(!format!("{source:?}").contains("4242424242424242"));
        let (mc, _) = parse_payment_method(&card("5555555555554444"), b"k", (2026, 11)).unwrap();
        assert_eq!(mc.brand, "mastercard");
    }

    #[test]
    fn rejects_bad_luhn_expired_and_bad_cvc() {
        assert!(parse_payment_method(&card("4242424242424241"), b"k", (2026, 11)).is_err());
        let mut expired = card("4242424242424242");
        expired.exp_year = Some(2026);
        expired.exp_month = Some(10);
        assert!(parse_payment_method(&expired, b"k", (2026, 11)).is_err());
        let mut cvc = card("4242424242424242");
        cvc.cvc = Some("12a".into());
        assert!(parse_payment_method(&cvc, b"k", (2026, 11)).is_err());
    }

    #[test]
    fn tokens_map_to_known_cards() {
        let input = PaymentMethodInput {
            kind: "card".into(),
            number: None,
            exp_month: None,
            exp_year: None,
            cvc: None,
            token: Some("tok_visa".into()),
        };
        let (summary, source) = parse_payment_method(&input, b"k", (2026, 11)).unwrap();
        assert_eq!(summary.last4, "4242");
        assert_eq!(source, PaymentSource::Token("tok_visa".into()));
        let mut unknown = input.clone();
        unknown.token = Some("tok_nope".into());
        assert!(parse_payment_method(&unknown, b"k", (2026, 11)).is_err());
    }
}
