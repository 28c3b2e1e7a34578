//! Typed, prefixed identifiers (TypeIDs): `<prefix>_<26 Crockford base32 chars>` around a UUIDv7.
//! A payment id can never be passed where an invoice id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// TypeID's base32 alphabet (Crockford, lower case, no i l o u).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// 128 bits in 26 base32 characters: the first character carries only the top 2 bits.
const ENCODED_LEN: usize = 26;

/// Maps and sets keyed by the engine's own ids (or tuples of them), hashed with foldhash
/// rather than the standard library's SipHash: the hot paths look ids up several times per
/// event (a tenant's live actors, a batch's streams), and SipHash alone took ~1.5% of the
/// engine's CPU under batched webhooks. The ids are random, not chosen by clients; keys taken
/// from requests (gateway event ids, idempotency keys) stay in the standard maps.
pub type IdMap<K, V> = foldhash::HashMap<K, V>;
pub type IdSet<K> = foldhash::HashSet<K>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {expected} id")]
pub struct IdParseError {
    pub expected: &'static str,
}

/// The 26 characters of `uuid`, most significant first, on the stack: ids are formatted many
/// times per write (rows, keys, events), so formatting one allocates nothing.
fn encode(uuid: Uuid) -> [u8; ENCODED_LEN] {
    let value = uuid.as_u128();
    let mut out = [0u8; ENCODED_LEN];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (ENCODED_LEN - 1 - i);
        *slot = ALPHABET[((value >> shift) & 0x1f) as usize];
    }
    out
}

/// The longest prefix of any id kind.
const PREFIX_MAX: usize = 3;

/// An id's text, `<prefix>_<26 characters>`, built on the stack and handed to a formatter or
/// a serializer in one piece.
struct Text {
    bytes: [u8; PREFIX_MAX + 1 + ENCODED_LEN],
    len: usize,
}

impl Text {
    fn new(prefix: &str, uuid: Uuid) -> Text {
        let mut bytes = [0u8; PREFIX_MAX + 1 + ENCODED_LEN];
        let p = prefix.len().min(PREFIX_MAX);
        bytes[..p].copy_from_slice(&prefix.as_bytes()[..p]);
        bytes[p] = b'_';
        bytes[p + 1..p + 1 + ENCODED_LEN].copy_from_slice(&encode(uuid));
        Text {
            bytes,
            len: p + 1 + ENCODED_LEN,
        }
    }

    /// Prefixes and `ALPHABET` are ASCII, so the bytes are always UTF-8.
    fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.bytes[..self.len])
    }
}

/// Each byte's value in `ALPHABET`, or `INVALID`.
const INVALID: u8 = 0xff;
const DIGITS: [u8; 256] = {
    let mut digits = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        digits[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    digits
};

fn decode(text: &str) -> Option<Uuid> {
    let bytes = text.as_bytes();
    if bytes.len() != ENCODED_LEN || bytes[0] > b'7' {
        return None;
    }
    let mut value: u128 = 0;
    for &b in bytes {
        let digit = DIGITS[b as usize];
        if digit == INVALID {
            return None;
        }
        value = (value << 5) | u128::from(digit);
    }
    Some(Uuid::from_u128(value))
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id around a UUIDv7 (time-ordered).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn uuid(&self) -> Uuid {
                self.0
            }
        }

        const _: () = assert!($prefix.len() <= PREFIX_MAX, "an id prefix longer than PREFIX_MAX");

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let text = Text::new($prefix, self.0);
                f.write_str(text.as_str().map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = IdParseError { expected: $prefix };
                let rest = s
                    .strip_prefix($prefix)
                    .and_then(|r| r.strip_prefix('_'))
                    .ok_or(err.clone())?;
                decode(rest).map(Self).ok_or(err)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let text = Text::new($prefix, self.0);
                serializer.serialize_str(text.as_str().map_err(serde::ser::Error::custom)?)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// A tenant (company) using Payrail.
    TenantId,
    "ten"
);
typed_id!(
    /// A tenant API key.
    ApiKeyId,
    "key"
);
typed_id!(
    /// An invoice.
    InvoiceId,
    "inv"
);
typed_id!(
    /// A card payment against an invoice.
    PaymentId,
    "pay"
);
typed_id!(
    /// A refund of (part of) a payment.
    RefundId,
    "re"
);
typed_id!(
    /// An audit event.
    EventId,
    "evt"
);
typed_id!(
    /// A tenant's outbound webhook endpoint.
    EndpointId,
    "we"
);
typed_id!(
    /// One delivery attempt of an event to an outbound webhook endpoint.
    AttemptId,
    "wa"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_typeid_spec() {
        // Example from the TypeID specification.
        let uuid = Uuid::parse_str("01889c89-df6b-7f1c-a388-91396ec314bc").unwrap();
        let id = InvoiceId::from_uuid(uuid);
        assert_eq!(id.to_string(), "inv_01h2e8kqvbfwea724h75qc655w");
        assert_eq!(
            "inv_01h2e8kqvbfwea724h75qc655w"
                .parse::<InvoiceId>()
                .unwrap(),
            id
        );
        let fresh = PaymentId::new();
        assert_eq!(fresh.to_string().parse::<PaymentId>().unwrap(), fresh);
        assert_eq!(fresh.uuid().get_version_num(), 7);
    }

    #[test]
    fn rejects_wrong_prefix_length_and_alphabet() {
        let id = InvoiceId::new().to_string();
        assert!(id.parse::<PaymentId>().is_err());
        assert!("inv_".parse::<InvoiceId>().is_err());
        assert!("inv_01h2e8kqvbfwea724h75qc655"
            .parse::<InvoiceId>()
            .is_err());
        assert!("inv_81h2e8kqvbfwea724h75qc655w"
            .parse::<InvoiceId>()
            .is_err());
        assert!("inv_01h2e8kqvbfwea724h75qc655u"
            .parse::<InvoiceId>()
            .is_err());
        assert!("inv01h2e8kqvbfwea724h75qc655w"
            .parse::<InvoiceId>()
            .is_err());
    }

    proptest::proptest! {
        #[test]
        fn every_uuid_round_trips_through_its_text(value: u128) {
            let id = EventId::from_uuid(Uuid::from_u128(value));
            let text = id.to_string();
            proptest::prop_assert_eq!(text.len(), "evt_".len() + ENCODED_LEN);
            proptest::prop_assert_eq!(text.parse::<EventId>().unwrap(), id);
            let json = serde_json::to_string(&id).unwrap();
            proptest::prop_assert_eq!(&json, &format!("\"{text}\""));
            proptest::prop_assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), id);
        }

        #[test]
        fn a_character_outside_the_alphabet_is_refused(
            value: u128,
            at in 1..ENCODED_LEN,
            byte in proptest::sample::select(
                (0u8..=255).filter(|b| !ALPHABET.contains(b) && b.is_ascii()).collect::<Vec<_>>()
            ),
        ) {
            let mut text = EventId::from_uuid(Uuid::from_u128(value)).to_string().into_bytes();
            text["evt_".len() + at] = byte;
            let text = String::from_utf8(text).unwrap();
            proptest::prop_assert!(text.parse::<EventId>().is_err());
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let id = RefundId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<RefundId>(&json).unwrap(), id);
    }
}
