//! `Payrail-Signature` parsing and verification.
//!
//! - Any header, body, secrets, clock and tolerance: no panic, and an accepted header really
//!   carries (among its first 8 `v1=` entries) an HMAC of `"<t>.<body>"` under one of the
//!   secrets, checked here with the `hmac` crate directly.
//! - A header made by `sign` verifies exactly when its timestamp is within the tolerance (else
//!   `Stale`), also with extra `v1=`/unknown entries around it and with other secrets beside.
//! - The same header over a body changed in one byte is `Invalid`; a header changed in one byte
//!   is refused unless the change only flips the case of a hex digit.

#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use payrail::gateway::signature::{sign, verify, SignatureError};
use sha2::Sha256;

// The input, one field per line (the body is the rest and may hold newlines): header, secret,
// another secret, now, tolerance, the signed timestamp's offset from now, how to wrap the
// signed header, then `index xor` for the body and `index byte` for the header.
fuzz_target!(|data: &[u8]| {
    let mut fields = data.splitn(10, |&b| b == b'\n');
    let mut text = || {
        fields
            .next()
            .and_then(|f| std::str::from_utf8(f).ok())
            .unwrap_or("")
    };
    let header = text();
    let secret = text();
    let other = text();
    let now = text().trim().parse().unwrap_or(1_795_000_000i64);
    let tolerance = text().trim().parse().unwrap_or(300i64);
    let offset = text().trim().parse().unwrap_or(0i64);
    let wrap = text().trim().parse().unwrap_or(0u8);
    let pair = |s: &str| -> (usize, u8) {
        let mut it = s.split_whitespace();
        let a = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let b = it.next().and_then(|x| x.parse().ok()).unwrap_or(1);
        (a, b)
    };
    let body_flip = pair(text());
    let header_flip = pair(text());
    let body = fields.next().unwrap_or_default();
    check(
        header,
        secret,
        other,
        now,
        tolerance,
        offset,
        wrap,
        body_flip,
        header_flip,
        body,
    );
});

#[allow(clippy::too_many_arguments)]
fn check(
    header: &str,
    secret: &str,
    other: &str,
    now: i64,
    tolerance: i64,
    offset: i64,
    wrap: u8,
    body_flip: (usize, u8),
    header_flip: (usize, u8),
    body: &[u8],
) {
    arbitrary_header(header, body, &[secret, other], now, tolerance);

    let t = now.saturating_add(offset);
    let within = now.abs_diff(t) <= tolerance.unsigned_abs();
    let expected = if within {
        Ok(())
    } else {
        Err(SignatureError::Stale)
    };
    let signed = sign(secret, t, body);
    assert_eq!(verify(&signed, body, &[secret], now, tolerance), expected);
    assert_eq!(
        verify(&signed, body, &[other, secret], now, tolerance),
        expected
    );
    // HMAC pads a key with zero bytes: `s` and `s\0` are the same key.
    if other.trim_end_matches('\0') != secret.trim_end_matches('\0') && within {
        assert_eq!(
            verify(&signed, body, &[other], now, tolerance),
            Err(SignatureError::Invalid),
            "a signature verified under a secret it was not made with"
        );
    }
    // Rotation: the sender's header carries a signature under another secret, and entries of
    // an unknown scheme; any one matching verifies.
    let extra = sign(other, t, body);
    let extra_v1 = &extra[extra.find(",v1=").unwrap_or(0)..];
    let wrapped = match wrap % 3 {
        0 => format!("{signed}{extra_v1}"),
        1 => format!("{signed},v2=zz{extra_v1}"),
        _ => format!(" {signed} , v0=1 "),
    };
    assert_eq!(verify(&wrapped, body, &[secret], now, tolerance), expected);

    if within {
        // One byte of the body changed: no longer the signed message.
        if !body.is_empty() && body_flip.1 != 0 {
            let mut tampered = body.to_vec();
            let i = body_flip.0 % tampered.len();
            tampered[i] ^= body_flip.1;
            assert_eq!(
                verify(&signed, &tampered, &[secret], now, tolerance),
                Err(SignatureError::Invalid)
            );
        }
        // One byte of the header changed to another ASCII byte.
        let mut bytes = signed.clone().into_bytes();
        let i = header_flip.0 % bytes.len();
        let replacement = header_flip.1 & 0x7f;
        if bytes[i] != replacement {
            bytes[i] = replacement;
            let mutated = String::from_utf8(bytes).unwrap();
            let outcome = verify(&mutated, body, &[secret], now, tolerance);
            if outcome.is_ok() {
                let hex_start = signed.find(",v1=").unwrap() + 4;
                assert!(
                    i >= hex_start && mutated.eq_ignore_ascii_case(&signed),
                    "mutated header {mutated:?} verified (original {signed:?})"
                );
            }
        }
    }
}

/// Whatever is parsed out of an arbitrary header: an acceptance must be backed by a real MAC.
fn arbitrary_header(header: &str, body: &[u8], secrets: &[&str], now: i64, tolerance: i64) {
    let outcome = verify(header, body, secrets, now, tolerance);
    if header.trim().is_empty() {
        assert_eq!(outcome, Err(SignatureError::Missing));
    }
    if outcome.is_ok() {
        assert!(
            independently_valid(header, body, secrets, now, tolerance),
            "accepted {header:?}"
        );
    }
}

/// The documented format, read independently: `t=<i64>` once, up to 8 `v1=<hex>` entries.
fn independently_valid(
    header: &str,
    body: &[u8],
    secrets: &[&str],
    now: i64,
    tolerance: i64,
) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if now.abs_diff(t) > tolerance.unsigned_abs() {
        return false;
    }
    v1.iter().take(8).any(|signature| {
        secrets.iter().any(|secret| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{t}.").as_bytes());
            mac.update(body);
            mac.verify_slice(signature).is_ok()
        })
    })
}
