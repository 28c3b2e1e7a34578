//! JSON request bodies as JSON Schema reads them: `1443.0` is the integer 1443 (JSON has one
//! number type, and an integral value is an integer whatever its spelling), so a client or a
//! generator that writes integers as floats is not refused. Anything else parses as serde reads it.

use serde::de::{self, DeserializeOwned};
use serde_json::{Number, Value};

use super::errors::{json_error, ApiError};

/// Parses a JSON body with the API's error mapping (400 `invalid_json` / `invalid_request`).
/// The direct parse is tried first, so a well-formed body costs one pass; only a body it refuses
/// is read again with integral numbers written as integers, and if that changes nothing the
/// first error stands.
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
    // The typed parse can stop at a wrong value before reaching a syntax error further on;
    // the whole-document read is the one that knows the body is not JSON.
    if let Err(syntax) = serde_json::from_slice::<de::IgnoredAny>(body) {
        return Err(json_error(syntax));
    }
    match integral_literals(body) {
        Some(body) => serde_json::from_slice(&body).map_err(json_error),
        None => Err(json_error(err)),
    }
}

/// Whether a string or key of the JSON body holds U+0000, which no text column can store
/// (PostgreSQL refuses it): refused up front, the same on every backend. A raw NUL is not valid
/// JSON text, so only the escape `\u0000` can carry one; a body without that sequence costs one
/// scan, and one with it (perhaps an escaped backslash before `u0000`) is read to be sure.
fn holds_nul(body: &[u8]) -> bool {
    const ESCAPE: &[u8] = b"\\u0000";
    if memchr::memmem::find(body, ESCAPE).is_none() {
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

/// A valid JSON document with each number written with a fraction or an exponent whose value is
/// integral (`3.0`, `1.2e1`) written as that integer instead; None if it has no such number.
/// Each one is read by the standard library, which rounds exactly: serde_json's own float
/// parsing may be a unit in the last place off, and read `2251799813685247.0` as
/// 2251799813685247.3, which no integer field takes.
fn integral_literals(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut changed = false;
    let mut i = 0;
    while i < body.len() {
        let start = i;
        match body[i] {
            // A string (a key or a value) is copied whole, escapes and all.
            b'"' => {
                i += 1;
                while i < body.len() && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(body.len());
                out.extend_from_slice(&body[start..i]);
            }
            b'-' | b'0'..=b'9' => {
                while i < body.len()
                    && matches!(body[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let literal = &body[start..i];
                let integer = literal
                    .iter()
                    .any(|b| matches!(b, b'.' | b'e' | b'E'))
                    .then(|| std::str::from_utf8(literal).ok()?.parse::<f64>().ok())
                    .flatten()
                    .and_then(integral);
                match integer {
                    Some(integer) => {
                        out.extend_from_slice(integer.to_string().as_bytes());
                        changed = true;
                    }
                    None => out.extend_from_slice(literal),
                }
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    changed.then_some(out)
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

    /// Found by Schemathesis: serde_json read `2251799813685247.0` (2^51 - 1, written as a
    /// float) as 2251799813685247.3, so a schema-valid `version` was refused with a 400.
    #[test]
    fn integral_floats_are_read_exactly() {
        let line: Line = parse(
            br#"{"quantity": 2251799813685247.0, "items": [9007199254740991.0, 4.5035996273704970e15]}"#,
        )
        .unwrap();
        assert_eq!(
            (line.quantity, line.items),
            (
                2_251_799_813_685_247,
                vec![9_007_199_254_740_991, 4_503_599_627_370_497]
            )
        );
        // Text is copied as it is, whatever it holds (escaped quotes and backslashes too).
        #[derive(Debug, Deserialize)]
        struct Labelled {
            label: String,
            count: u32,
        }
        let labelled: Labelled = parse(br#"{"label": "1.0 \" 2e3 \\", "count": 3.0}"#).unwrap();
        assert_eq!(
            (labelled.label.as_str(), labelled.count),
            (r#"1.0 " 2e3 \"#, 3)
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
