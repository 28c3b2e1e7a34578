//! The `Payrail-Signature` webhook header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<raw body>")>`. Several `v1=` entries may appear while a secret is being rotated; any one
//! matching any accepted secret verifies. Comparison is constant-time (`Mac::verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Payrail-Signature";
/// How far a signature's timestamp may be from now, either way (docs/api.md: ±300 s).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;
/// A header longer than this is refused before any parsing (bounds the work per request).
const MAX_HEADER_LEN_BYTES: usize = 4096;
/// At most this many `v1=` entries are tried (bounds the HMAC work per request).
const MAX_SIGNATURES: usize = 8;

/// Why a webhook signature was refused. `code()` is the API's problem code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header")]
    Missing,
    #[error("malformed signature header")]
    Malformed,
    #[error("signature timestamp outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Invalid,
}

impl SignatureError {
    /// The stable API error code (docs/api.md): `stale_signature` or `invalid_signature`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Stale => "stale_signature",
            Self::Missing | Self::Malformed | Self::Invalid => "invalid_signature",
        }
    }
}

fn mac_for(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The full header value signing `body` at `timestamp` with `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac_for(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Parsed header: the timestamp and every `v1` signature (decoded). Unknown schemes are skipped
/// so a future `v2=` does not break verification.
fn parse(header: &str) -> Result<(i64, Vec<Vec<u8>>), SignatureError> {
    if header.trim().is_empty() {
        return Err(SignatureError::Missing);
    }
    if header.len() > MAX_HEADER_LEN_BYTES {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            "t" => return Err(SignatureError::Malformed),
            "v1" => {
                let bytes = hex::decode(value).map_err(|_| SignatureError::Malformed)?;
                if signatures.len() < MAX_SIGNATURES {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    match timestamp {
        Some(t) if !signatures.is_empty() => Ok((t, signatures)),
        _ => Err(SignatureError::Malformed),
    }
}

/// Verifies `header` over the raw `body` against any of `secrets` (old and new during rotation),
/// with the timestamp within `tolerance_secs` of `now` in either direction.
pub fn verify(
    header: &str,
    body: &[u8],
    secrets: &[&str],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let (timestamp, signatures) = parse(header)?;
    if now.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    // Check every pair without early exit on a match position that could leak which secret hit;
    // each comparison itself is constant-time.
    let mut matched = false;
    for secret in secrets {
        let mac = mac_for(secret, timestamp, body);
        for signature in &signatures {
            matched |= mac.clone().verify_slice(signature).is_ok();
        }
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000;
    const BODY: &[u8] = br#"{"id":"evt_gw_1","type":"payment.succeeded"}"#;

    /// An independent signer: the `hmac` crate used directly, not through `sign`.
    fn reference_signature(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        let mut message = format!("{t}.").into_bytes();
        message.extend_from_slice(body);
        mac.update(&message);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn sign_matches_an_independent_hmac() {
        let header = sign("whsec_a", NOW, BODY);
        assert_eq!(
            header,
            format!("t={NOW},v1={}", reference_signature("whsec_a", NOW, BODY))
        );
    }

    #[test]
    fn accepts_a_good_signature_made_independently() {
        let header = format!("t={NOW},v1={}", reference_signature("whsec_a", NOW, BODY));
        assert_eq!(verify(&header, BODY, &["whsec_a"], NOW, 300), Ok(()));
        assert_eq!(verify(&header, BODY, &["whsec_a"], NOW + 300, 300), Ok(()));
        assert_eq!(verify(&header, BODY, &["whsec_a"], NOW - 300, 300), Ok(()));
    }

    #[test]
    fn rejects_a_wrong_secret_and_a_tampered_body() {
        let header = sign("whsec_a", NOW, BODY);
        assert_eq!(
            verify(&header, BODY, &["whsec_b"], NOW, 300),
            Err(SignatureError::Invalid)
        );
        let tampered = br#"{"id":"evt_gw_1","type":"payment.failed"}"#;
        assert_eq!(
            verify(&header, tampered, &["whsec_a"], NOW, 300),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(&header, BODY, &[], NOW, 300),
            Err(SignatureError::Invalid)
        );
        // A signature over another timestamp does not verify with this one.
        let moved = format!(
            "t={},v1={}",
            NOW + 1,
            reference_signature("whsec_a", NOW, BODY)
        );
        assert_eq!(
            verify(&moved, BODY, &["whsec_a"], NOW, 300),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn rejects_missing_and_malformed_headers() {
        assert_eq!(
            verify("", BODY, &["s"], NOW, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify("  ", BODY, &["s"], NOW, 300),
            Err(SignatureError::Missing)
        );
        for bad in [
            "garbage",
            "t=abc,v1=00",
            &format!("t={NOW}"),
            &format!("t={NOW},v1=zz"),
            &format!("v1={}", reference_signature("s", NOW, BODY)),
            &format!("t={NOW},t={NOW},v1=00"),
        ] {
            assert_eq!(
                verify(bad, BODY, &["s"], NOW, 300),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(SignatureError::Malformed.code(), "invalid_signature");
    }

    #[test]
    fn rejects_stale_and_future_timestamps() {
        let old = sign("s", NOW - 301, BODY);
        assert_eq!(
            verify(&old, BODY, &["s"], NOW, 300),
            Err(SignatureError::Stale)
        );
        let future = sign("s", NOW + 301, BODY);
        assert_eq!(
            verify(&future, BODY, &["s"], NOW, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(SignatureError::Stale.code(), "stale_signature");
        assert_eq!(SignatureError::Invalid.code(), "invalid_signature");
    }

    #[test]
    fn rotation_accepts_either_secret_and_either_v1() {
        let old = reference_signature("whsec_old", NOW, BODY);
        let new = reference_signature("whsec_new", NOW, BODY);
        // Receiver knows both secrets, sender signs with one.
        let header = format!("t={NOW},v1={old}");
        assert_eq!(
            verify(&header, BODY, &["whsec_new", "whsec_old"], NOW, 300),
            Ok(())
        );
        // Sender sends both signatures, receiver knows only one of them.
        let both = format!("t={NOW},v1={old},v1={new}");
        assert_eq!(verify(&both, BODY, &["whsec_new"], NOW, 300), Ok(()));
        assert_eq!(verify(&both, BODY, &["whsec_old"], NOW, 300), Ok(()));
        assert_eq!(
            verify(&both, BODY, &["whsec_other"], NOW, 300),
            Err(SignatureError::Invalid)
        );
        // Unknown schemes are ignored, not fatal.
        let with_v2 = format!("t={NOW},v2=abc,v1={new}");
        assert_eq!(verify(&with_v2, BODY, &["whsec_new"], NOW, 300), Ok(()));
    }
}
