//! Standard Webhooks signatures (standardwebhooks.com): `whsec_` secrets holding base64 key
//! bytes, and `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`,
//! one space-separated entry per secret in force.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The prefix of every endpoint secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a new secret (the spec allows 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// A fresh endpoint secret: `whsec_` + base64 of [`SECRET_BYTES`] random bytes.
pub fn new_secret() -> SecretString {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    SecretString::from(format!("{SECRET_PREFIX}{}", BASE64.encode(bytes)))
}

/// The key bytes a `whsec_` secret holds (a value without the prefix is taken as base64 too).
fn key_bytes(secret: &SecretString) -> Option<Vec<u8>> {
    let text = secret.expose_secret();
    let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
    BASE64.decode(encoded).ok()
}

/// One `v1,<base64>` signature of `id.timestamp.body`; `None` if the secret is not base64.
pub fn sign(secret: &SecretString, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let signer = Signer::new(&[secret]);
    (!signer.macs.is_empty()).then(|| signer.header(id, timestamp, body))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header(
    secrets: &[&SecretString],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    Signer::new(secrets).header(id, timestamp, body)
}

/// An endpoint's secrets, each decoded and keyed into its HMAC once, for the signatures of
/// many deliveries.
#[derive(Clone)]
pub struct Signer {
    macs: Vec<Hmac<Sha256>>,
}

impl Signer {
    /// Secrets that are not base64 sign nothing.
    pub fn new(secrets: &[&SecretString]) -> Self {
        Self {
            macs: secrets
                .iter()
                .filter_map(|s| Hmac::<Sha256>::new_from_slice(&key_bytes(s)?).ok())
                .collect(),
        }
    }

    /// The `webhook-signature` header of one delivery.
    pub fn header(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        let mut header = String::with_capacity(self.macs.len() * 48);
        for mac in &self.macs {
            let mut mac = mac.clone();
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            if !header.is_empty() {
                header.push(' ');
            }
            header.push_str("v1,");
            BASE64.encode_string(mac.finalize().into_bytes(), &mut header);
        }
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specifications_example() {
        // The example of the Standard Webhooks specification.
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn new_secrets_are_prefixed_base64_of_enough_bytes() {
        let secret = new_secret();
        let bytes = key_bytes(&secret).unwrap();
        assert!(secret.expose_secret().starts_with(SECRET_PREFIX));
        assert!((24..=64).contains(&bytes.len()));
        assert_ne!(new_secret().expose_secret(), secret.expose_secret());
    }

    #[test]
    fn two_secrets_give_two_space_separated_signatures() {
        let (a, b) = (new_secret(), new_secret());
        let header = signature_header(&[&a, &b], "evt_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&a, "evt_1", 1, b"{}").unwrap());
        assert_eq!(parts[1], sign(&b, "evt_1", 1, b"{}").unwrap());
    }
}
