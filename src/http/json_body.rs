//! JSON request bodies as JSON Schema reads them: `1443.0` is the integer 1443 (JSON has one
//! number type, and an integral value is an integer whatever its spelling), so a client or a
//! generator that writes integers as floats is not refused. Anything else parses as serde reads it.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::errors::{json_error, ApiError};

/// Parses a JSON body with the API's error mapping (400 `invalid_json` / `invalid_request`).
/// The direct parse is tried first, so a well-formed body costs one pass; only a body it refuses
/// is read again with integral numbers made integers, and if that changes nothing the first
/// error stands.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Every body is an object. serde would also fill a struct from an array of its fields in
    // order (`["Jane", null, "USD", …]`), a form no schema of the API allows.
    let first = body.iter().find(|b| !b" \t\n\r".contains(b));
    if first != Some(&b'{') {
        return Err(match serde_json::from_slice::<de::IgnoredAny>(body) {
            Err(syntax) => json_error(syntax),
            Ok(_) => ApiError::InvalidRequest("the body must be a JSON object".into()),
        });
    }
    if holds_nul(body) {
        return Err(ApiError::InvalidRequest(
            "text may not contain the character U+0000".into(),
        ));
    }
    let err = match serde_json::from_slice(body) {
        Ok(value) => return Ok(value),
        Err(err) => err,
    };
    if !err.is_data() {
        return Err(json_error(err));
    }
    let Normalized { value, changed } = match serde_json::from_slice::<Normalized>(body) {
        Ok(normalized) => normalized,
        // The typed parse can stop at a wrong value before reaching a syntax error further on;
        // the whole-document read is the one that knows the body is not JSON.
        Err(syntax) if !syntax.is_data() => return Err(json_error(syntax)),
        Err(_) => return Err(json_error(err)),
    };
    if !changed {
        return Err(json_error(err));
    }
    T::deserialize(value).map_err(json_error)
}

/// Whether a string or key of the JSON body holds U+0000, which no text column can store
/// (PostgreSQL refuses it): refused up front, the same on every backend. A raw NUL is not valid
/// JSON text, so only the escape `\u0000` can carry one; a body without that sequence costs one
/// scan, and one with it (perhaps an escaped backslash before `u0000`) is read to be sure.
fn holds_nul(body: &[u8]) -> bool {
    const ESCAPE: &[u8] = b"\\u0000";
    if !body.windows(ESCAPE.len()).any(|w| w == ESCAPE) {
        return false;
    }
    fn walk(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(walk),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || walk(v)),
            _ => false,
        }
    }
    serde_json::from_slice::<Value>(body).is_ok_and(|v| walk(&v))
}

/// The integer an integral float stands for, if it has one in `i64` or `u64`.
fn integral(float: f64) -> Option<Number> {
    if !float.is_finite() || float.fract() != 0.0 {
        return None;
    }
    // 2^63 and 2^64: every integral f64 below them converts exactly.
    const I64_END: f64 = 9_223_372_036_854_775_808.0;
    const U64_END: f64 = 18_446_744_073_709_551_616.0;
    if (-I64_END..I64_END).contains(&float) {
        Some(Number::from(float as i64))
    } else if (0.0..U64_END).contains(&float) {
        Some(Number::from(float as u64))
    } else {
        None
    }
}

/// A JSON value with integral floats turned into integers, and whether any was. Duplicate keys
/// are refused, as the typed parse refuses them.
struct Normalized {
    value: Value,
    changed: bool,
}

impl<'de> de::Deserialize<'de> for Normalized {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NormalizedVisitor)
    }
}

struct NormalizedVisitor;

impl NormalizedVisitor {
    fn plain(value: Value) -> Normalized {
        Normalized {
            value,
            changed: false,
        }
    }
}

impl<'de> Visitor<'de> for NormalizedVisitor {
    type Value = Normalized;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Normalized, E> {
        Ok(Self::plain(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Normalized, E> {
        Ok(Self::plain(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Normalized, E> {
        Ok(Self::plain(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Normalized, E> {
        Ok(match integral(v) {
            Some(n) => Normalized {
                value: Value::Number(n),
                changed: true,
            },
            None => Self::plain(Number::from_f64(v).map_or(Value::Null, Value::Number)),
        })
    }

    fn visit_str<E>(self, v: &str) -> Result<Normalized, E> {
        Ok(Self::plain(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Normalized, E> {
        Ok(Self::plain(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Normalized, E> {
        Ok(Self::plain(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Normalized, E> {
        Ok(Self::plain(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Normalized, D::Error> {
        de::Deserialize::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Normalized, A::Error> {
        let mut items = Vec::new();
        let mut changed = false;
        while let Some(item) = seq.next_element::<Normalized>()? {
            changed |= item.changed;
            items.push(item.value);
        }
        Ok(Normalized {
            value: Value::Array(items),
            changed,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Normalized, A::Error> {
        let mut object = Map::new();
        let mut changed = false;
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
            }
            let item: Normalized = map.next_value()?;
            changed |= item.changed;
            object.insert(key, item.value);
        }
        Ok(Normalized {
            value: Value::Object(object),
            changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Line {
        quantity: i64,
        month: Option<u32>,
        items: Vec<u64>,
    }

    #[test]
    fn integral_floats_are_integers() {
        let line: Line =
            parse(br#"{"quantity": 1443.0, "month": 1.2e1, "items": [0.0, -0.0, 3]}"#).unwrap();
        assert_eq!(
            line,
            Line {
                quantity: 1443,
                month: Some(12),
                items: vec![0, 0, 3]
            }
        );
        let big: Line =
            parse(br#"{"quantity": -9.223372036854775808e18, "items": [1.8e19]}"#).unwrap();
        assert_eq!(
            (big.quantity, big.items),
            (i64::MIN, vec![18_000_000_000_000_000_000])
        );
    }

    #[test]
    fn other_numbers_and_shapes_are_refused_as_before() {
        for (body, code) in [
            (r#"{"quantity": 1.5, "items": []}"#, "invalid_request"),
            (r#"{"quantity": 1e19, "items": []}"#, "invalid_request"),
            (
                r#"{"quantity": 1.0, "items": [], "x": 1}"#,
                "invalid_request",
            ),
            (
                r#"{"quantity": 1.0, "quantity": 2, "items": []}"#,
                "invalid_request",
            ),
            (r#"{"quantity": 1, "items": [-1.0]}"#, "invalid_request"),
            (r#"{"quantity": 1.0, "items": ["#, "invalid_json"),
        ] {
            let err = parse::<Line>(body.as_bytes()).unwrap_err();
            assert_eq!(err.parts().1, code, "{body}");
        }
    }

    #[derive(Debug, Deserialize)]
    struct Named {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn text_with_nul_is_refused() {
        for body in [r#"{"name": "a\u0000b"}"#, r#"{"name": "x", "\u0000": 1}"#] {
            let err = parse::<Named>(body.as_bytes()).unwrap_err();
            assert_eq!(err.parts().1, "invalid_request", "{body}");
        }
        // An escaped backslash before `u0000` is no NUL.
        assert!(parse::<Named>(br#"{"name": "a\\u0000b"}"#).is_ok());
        assert!(parse::<Named>(br#"{"name": "a\u0001b"}"#).is_ok());
    }

    /// Found by fuzzing: a struct also deserializes from an array of its fields in order, so
    /// `[1, null, []]` was read as `{"quantity": 1, "month": null, "items": []}`.
    #[test]
    fn bodies_must_be_objects() {
        for (body, code) in [
            ("[1, null, []]", "invalid_request"),
            (" \r\n[1, null, []]", "invalid_request"),
            ("null", "invalid_request"),
            ("\"x\"", "invalid_request"),
            ("", "invalid_json"),
            ("[1, ", "invalid_json"),
        ] {
            let err = parse::<Line>(body.as_bytes()).unwrap_err();
            assert_eq!(err.parts().1, code, "{body:?}");
        }
        let line: Line = parse(b" \n{\"quantity\": 1, \"items\": []}").unwrap();
        assert_eq!(line.quantity, 1);
    }

    #[test]
    fn integral_range_is_exact() {
        assert_eq!(integral(-0.0), Some(Number::from(0)));
        assert_eq!(
            integral(9_223_372_036_854_775_808.0),
            Some(Number::from(1u64 << 63))
        );
        assert_eq!(integral(18_446_744_073_709_551_616.0), None);
        assert_eq!(integral(f64::NAN), None);
        assert_eq!(integral(0.5), None);
    }
}
