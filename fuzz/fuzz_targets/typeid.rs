//! TypeID parsing (`<prefix>_<26 base32 chars>`) for every id type, and stream ids.
//!
//! - Any text: no panic; text that parses is the id's one canonical spelling (format gives the
//!   same text back), parses again to the same id, survives JSON, and is no id of another type.
//! - Any 128-bit value: formats as prefix, `_`, 26 characters of the lower-case Crockford
//!   alphabet (first one `0`-`7`), and parses back to the same UUID.

#![no_main]

use std::fmt::{Debug, Display};
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use payrail_actors::domain::{
    ApiKeyId, AttemptId, EndpointId, EventId, InvoiceId, PaymentId, RefundId, StreamId, TenantId,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

const ALPHABET: &str = "0123456789abcdefghjkmnpqrstvwxyz";

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let accepted = [
            text_round_trip::<TenantId>(text),
            text_round_trip::<ApiKeyId>(text),
            text_round_trip::<InvoiceId>(text),
            text_round_trip::<PaymentId>(text),
            text_round_trip::<RefundId>(text),
            text_round_trip::<EventId>(text),
            text_round_trip::<EndpointId>(text),
            text_round_trip::<AttemptId>(text),
        ];
        assert!(
            accepted.iter().filter(|ok| **ok).count() <= 1,
            "{text:?} is an id of several types"
        );
        if let Ok(stream) = text.parse::<StreamId>() {
            assert_eq!(stream.to_string(), text);
            assert!(accepted[1] || accepted[2] || accepted[3]);
        }
        // JSON strings of arbitrary text go through the same parser.
        let json = serde_json::to_string(text).unwrap();
        assert_eq!(
            serde_json::from_str::<InvoiceId>(&json).is_ok(),
            accepted[2]
        );
    }
    if let Some(bytes) = data.get(..16) {
        let uuid = Uuid::from_bytes(bytes.try_into().unwrap());
        uuid_round_trip(TenantId::from_uuid(uuid), TenantId::PREFIX);
        uuid_round_trip(ApiKeyId::from_uuid(uuid), ApiKeyId::PREFIX);
        uuid_round_trip(InvoiceId::from_uuid(uuid), InvoiceId::PREFIX);
        uuid_round_trip(PaymentId::from_uuid(uuid), PaymentId::PREFIX);
        uuid_round_trip(RefundId::from_uuid(uuid), RefundId::PREFIX);
        uuid_round_trip(EventId::from_uuid(uuid), EventId::PREFIX);
        uuid_round_trip(EndpointId::from_uuid(uuid), EndpointId::PREFIX);
        uuid_round_trip(AttemptId::from_uuid(uuid), AttemptId::PREFIX);
        let stream = StreamId::Payment(PaymentId::from_uuid(uuid));
        assert_eq!(stream.to_string().parse::<StreamId>().unwrap(), stream);
    }
});

/// Whether `text` parses as a `T`; if it does, parse → format → parse holds exactly.
fn text_round_trip<T>(text: &str) -> bool
where
    T: FromStr + Display + Debug + PartialEq + Copy + Serialize + DeserializeOwned,
{
    let Ok(id) = text.parse::<T>() else {
        return false;
    };
    let formatted = id.to_string();
    assert_eq!(formatted, text, "accepted a non-canonical spelling");
    assert!(formatted.parse::<T>().ok() == Some(id), "{formatted}");
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, format!("\"{text}\""));
    assert!(serde_json::from_str::<T>(&json).ok().as_ref() == text.parse::<T>().ok().as_ref());
    true
}

fn uuid_round_trip<T>(id: T, prefix: &str)
where
    T: FromStr + Display + Debug + PartialEq,
{
    let text = id.to_string();
    let suffix = text
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .unwrap_or_else(|| panic!("{text} lacks its prefix {prefix}_"));
    assert_eq!(suffix.len(), 26, "{text}");
    assert!(suffix.chars().all(|c| ALPHABET.contains(c)), "{text}");
    assert!(suffix.as_bytes()[0] <= b'7', "{text}");
    assert!(
        text.parse::<T>().ok() == Some(id),
        "{text} does not parse back"
    );
}
