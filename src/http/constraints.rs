//! The value rules the server enforces, written as JSON Schema for the OpenAPI document: TypeID
//! and currency patterns, text lengths as the handlers count them (after trimming, in
//! characters), integer ranges of the Rust types that parse them. Field annotations use these
//! through `schema_with`, so a rule is stated once; tests hold them against the parsers.

use payrail_actors::domain::events::EVENT_TYPES;
use payrail_actors::domain::invoice::{
    CUSTOMER_NAME_MAX_CHARS, DESCRIPTION_MAX_CHARS, METADATA_MAX_KEYS, METADATA_VALUE_MAX_CHARS,
    TAX_RATE_MAX_BPS,
};
use utoipa::openapi::schema::{AdditionalProperties, SchemaType};
use utoipa::openapi::schema::{Array, ArrayBuilder};
use utoipa::openapi::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};

/// What `str::trim` removes: Unicode `White_Space`, as a regex character-class body.
const WHITESPACE: &str = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// The characters of a TypeID's base32 suffix (Crockford, lower case, no i l o u).
const TYPEID_SUFFIX: &str = "[0-7][0-9a-hjkmnp-tv-z]{25}";
pub const CURRENCY_PATTERN: &str = "^[A-Z]{3}$";
/// `Idempotency-Key`: printable ASCII; a header value cannot begin or end with a space.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~](?:[ -~]*[!-~])?$";
/// A customer email: something before the first `@`, and a dot somewhere after it.
const EMAIL_PATTERN: &str = r"^[^@\u0000]+@[^\u0000]*\.[^\u0000]*$";
/// Text without U+0000, which the server refuses in any request text (no database stores it).
pub const NUL_FREE_PATTERN: &str = r"^[^\u0000]*$";
pub const EMAIL_MAX_CHARS: usize = 254;
/// An API key's name, 1-100 characters once trimmed.
pub const KEY_NAME_MAX_CHARS: usize = 100;
/// A tenant's name, 1-200 characters once trimmed.
pub const TENANT_NAME_MAX_CHARS: usize = 200;
pub const REFUND_REASON_MAX_CHARS: usize = 200;
pub const METADATA_KEY_MAX_CHARS: usize = 40;
/// Page and pageSize bounds of every offset page, limit bounds of cursor pages.
pub const PAGE_SIZE_MAX: u32 = 100;

/// The pattern of a TypeID with `prefix` (`inv`, `pay`, …).
pub fn typeid_pattern(prefix: &str) -> String {
    format!("^{prefix}_{TYPEID_SUFFIX}$")
}

/// A string that is 1 to `max` characters once leading and trailing whitespace is trimmed:
/// blanks around it are allowed and not counted. Like all request text, it holds no U+0000.
pub fn trimmed_pattern(max: usize) -> String {
    let (ws, text) = (format!("[{WHITESPACE}]"), format!("[^{WHITESPACE}\\u0000]"));
    format!(
        "^{ws}*{text}(?:[^\\u0000]{{0,{}}}{text})?{ws}*$",
        max.saturating_sub(2)
    )
}

fn nullable(kind: Type, nullable: bool) -> SchemaType {
    if nullable {
        SchemaType::from_iter([kind, Type::Null])
    } else {
        SchemaType::new(kind)
    }
}

fn text(null: bool) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(nullable(Type::String, null))
}

fn trimmed(max: usize, null: bool) -> Object {
    text(null)
        .min_length(Some(1))
        .pattern(Some(trimmed_pattern(max)))
        .description(Some(format!(
            "1-{max} characters once leading and trailing whitespace is trimmed"
        )))
        .build()
}

fn integer(null: bool, min: i64, max: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Integer, null))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
        .maximum(Some(max))
}

fn typeid(prefix: &str, null: bool) -> Object {
    text(null)
        .pattern(Some(typeid_pattern(prefix)))
        .examples([format!("{prefix}_01jd6x2c8ef9r4t7bq5n1k3h2m")])
        .build()
}

pub fn tenant_name() -> Object {
    trimmed(TENANT_NAME_MAX_CHARS, false)
}

pub fn key_name() -> Object {
    trimmed(KEY_NAME_MAX_CHARS, false)
}

pub fn customer_name() -> Object {
    trimmed(CUSTOMER_NAME_MAX_CHARS, false)
}

/// In a PATCH: `null` or absent keeps the current name.
pub fn customer_name_patch() -> Object {
    trimmed(CUSTOMER_NAME_MAX_CHARS, true)
}

pub fn line_description() -> Object {
    trimmed(DESCRIPTION_MAX_CHARS, false)
}

pub fn customer_email() -> Object {
    text(true)
        .max_length(Some(EMAIL_MAX_CHARS))
        .pattern(Some(EMAIL_PATTERN))
        .examples(["jane@example.com"])
        .build()
}

pub fn currency() -> Object {
    text(false)
        .pattern(Some(CURRENCY_PATTERN))
        .examples(["USD"])
        .description(Some("ISO 4217, upper case"))
        .build()
}

/// As a filter: absent means any.
pub fn currency_filter() -> Object {
    text(false)
        .pattern(Some(CURRENCY_PATTERN))
        .examples(["USD"])
        .build()
}

/// In a PATCH: `null` or absent leaves it alone.
pub fn currency_optional() -> Object {
    text(true)
        .pattern(Some(CURRENCY_PATTERN))
        .examples(["USD"])
        .description(Some("ISO 4217, upper case"))
        .build()
}

pub fn refund_reason() -> Object {
    text(true)
        .min_length(Some(1))
        .max_length(Some(REFUND_REASON_MAX_CHARS))
        .examples(["requested_by_customer"])
        .build()
}

/// Up to 50 string values of ≤ 500 characters under keys of 1-40 characters.
pub fn metadata() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Object, true))
        .max_properties(Some(METADATA_MAX_KEYS))
        .property_names(Some(
            text(false)
                .min_length(Some(1))
                .max_length(Some(METADATA_KEY_MAX_CHARS)),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(
            text(false)
                .max_length(Some(METADATA_VALUE_MAX_CHARS))
                .build()
                .into(),
        )))
        .description(Some(
            "Up to 50 string values of up to 500 characters, under keys of 1-40 characters",
        ))
        .build()
}

/// A positive amount in the currency's minor unit (an `i64`).
pub fn amount() -> Object {
    integer(false, 1, i64::MAX)
        .description(Some("In the currency's minor unit"))
        .build()
}

/// An optional positive amount; absent or `null` means the default.
pub fn amount_optional() -> Object {
    integer(true, 1, i64::MAX)
        .description(Some("In the currency's minor unit"))
        .build()
}

/// The version a client last read, for an edit that must not overwrite a newer one.
pub fn expected_version() -> Object {
    integer(true, 1, i64::MAX)
        .description(Some(
            "The `version` you last read; if the invoice has moved on, 409 `version_conflict`",
        ))
        .build()
}

/// A line item's quantity.
pub fn quantity() -> Object {
    integer(false, 1, i64::MAX).examples([3]).build()
}

pub fn tax_rate_bps() -> Object {
    integer(true, 0, TAX_RATE_MAX_BPS)
        .description(Some("Basis points (1000 = 10 %); default 0"))
        .build()
}

/// A filter bound on `total` (any `i64`).
pub fn total_filter() -> Object {
    integer(false, i64::MIN, i64::MAX).build()
}

/// An audit event's `sequence` (any `i64`).
pub fn sequence() -> Object {
    integer(false, i64::MIN, i64::MAX).build()
}

/// A 1-based page number (a `u32`).
pub fn page() -> Object {
    integer(false, 1, i64::from(u32::MAX)).build()
}

/// A page size or a cursor page's limit: 1-100.
pub fn page_size() -> Object {
    integer(false, 1, i64::from(PAGE_SIZE_MAX)).build()
}

/// Only `null` (or absent): a field that belongs to the other shape of a `oneOf`.
pub fn null_only() -> Object {
    ObjectBuilder::new().schema_type(Type::Null).build()
}

pub fn invoice_id() -> Object {
    typeid("inv", false)
}

/// `customer` of `GET /api/invoices`: free text, up to 200 characters.
pub fn customer_filter() -> Object {
    text(false)
        .max_length(Some(CUSTOMER_NAME_MAX_CHARS))
        .pattern(Some(NUL_FREE_PATTERN))
        .build()
}

/// A subject id to filter events by (any id; another value matches nothing).
pub fn subject_filter() -> Object {
    text(false).pattern(Some(NUL_FREE_PATTERN)).build()
}

/// As a query parameter: absent means none.
pub fn invoice_id_param() -> Object {
    typeid("inv", false)
}

pub fn tenant_id() -> Object {
    typeid("ten", false)
}

/// An optional amount as a gateway reports it: any `i64` (one that differs from the payment's
/// is counted as rejected).
pub fn signed_amount() -> Object {
    integer(true, i64::MIN, i64::MAX).build()
}

/// An audit event's type, as events show it.
pub fn event_type_name() -> Object {
    text(false)
        .enum_values(Some(EVENT_TYPES))
        .examples(["invoice.created"])
        .build()
}

/// `eventTypes` of a webhook endpoint: absent, `null` or empty means every type.
pub fn event_types_optional() -> Array {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(event_type_name())
        .build()
}

/// One of a closed set of words.
pub fn one_of(words: &[&str], null: bool) -> Object {
    text(null).enum_values(Some(words.iter().copied())).build()
}

/// `status` of a webhook endpoint, as a PATCH sets it.
pub fn endpoint_status_optional() -> Object {
    one_of(&["enabled", "disabled"], true)
}

/// `status` filter of a webhook endpoint's attempts.
pub fn attempt_status() -> Object {
    one_of(&["succeeded", "failed", "pending"], false)
}

/// `startingAfter` of a webhook endpoint's attempts: an attempt id.
pub fn attempt_id_param() -> Object {
    typeid("wa", false)
}

/// A webhook endpoint's description, up to 500 characters.
pub fn endpoint_description() -> Object {
    text(true)
        .max_length(Some(DESCRIPTION_MAX_CHARS))
        .pattern(Some(NUL_FREE_PATTERN))
        .build()
}

/// An audit event type, as `GET /api/events?type=` takes it.
pub fn event_type() -> Object {
    text(false).enum_values(Some(EVENT_TYPES)).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use payrail_actors::domain::{InvoiceId, PaymentId, TenantId};

    /// A regex engine would be one more dependency; these patterns are simple enough to check
    /// by their parts against what the parsers accept.
    #[test]
    fn typeid_pattern_describes_generated_ids() {
        let pattern = typeid_pattern("inv");
        assert_eq!(pattern, "^inv_[0-7][0-9a-hjkmnp-tv-z]{25}$");
        for id in [
            InvoiceId::new().to_string(),
            PaymentId::new().to_string(),
            TenantId::new().to_string(),
        ] {
            let (prefix, suffix) = id.split_once('_').unwrap();
            assert_eq!(suffix.len(), 26, "{id}");
            assert!(suffix.starts_with(|c: char| ('0'..='7').contains(&c)));
            assert!(suffix
                .chars()
                .all(|c| c.is_ascii_digit() || (c.is_ascii_lowercase() && !"ilou".contains(c))));
            assert!(["inv", "pay", "ten"].contains(&prefix));
        }
        // The first character carries 3 bits: `8` is out of range.
        assert!("inv_81jd6x2c8ef9r4t7bq5n1k3h2m"
            .parse::<InvoiceId>()
            .is_err());
        assert!("inv_71jd6x2c8ef9r4t7bq5n1k3h2m"
            .parse::<InvoiceId>()
            .is_ok());
        assert!("inv_7ijd6x2c8ef9r4t7bq5n1k3h2m"
            .parse::<InvoiceId>()
            .is_err());
    }

    #[test]
    fn whitespace_class_is_what_trim_removes() {
        let listed: Vec<char> = (0..=0x10ffff_u32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .collect();
        let expected: Vec<char> = [
            '\t', '\n', '\u{b}', '\u{c}', '\r', ' ', '\u{85}', '\u{a0}', '\u{1680}',
        ]
        .into_iter()
        .chain(('\u{2000}'..='\u{200a}').collect::<Vec<_>>())
        .chain(['\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}'])
        .collect();
        assert_eq!(listed, expected);
        assert_eq!(
            WHITESPACE,
            r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
        );
    }
}
