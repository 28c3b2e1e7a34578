//! The deployment's keys. The *master key* seals secrets at rest (tenants' webhook secrets, the
//! stored replays of secret-bearing answers); it can be rotated, and every ciphertext names the
//! key that sealed it. The *hashing key* keys card fingerprints and idempotency fingerprints;
//! it is never rotated, since a new one would change every fingerprint.
//!
//! Both come from configuration (`PAYRAIL_MASTER_KEY`, `PAYRAIL_PREVIOUS_MASTER_KEYS`,
//! `PAYRAIL_HASHING_KEY`: base64 of 32 bytes), or else from files in the data directory that
//! the first start creates with mode 0600 (`master.key`: one key per line, the current one
//! first; `hashing.key`).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64_URL};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

pub const MASTER_KEY_FILE: &str = "master.key";
pub const HASHING_KEY_FILE: &str = "hashing.key";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;
/// Marks a sealed value: `pr1.<key id>.<base64url(nonce ‖ ciphertext)>`.
const SEALED_PREFIX: &str = "pr1.";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not a sealed value")]
    NotSealed,
    #[error("sealed under master key {0}, which is not configured")]
    UnknownKey(String),
    #[error("the sealed value does not open (wrong key or context, or tampered)")]
    Tampered,
}

/// One master key and its id (a digest of the key: it tells keys apart, and reveals nothing).
struct MasterKey {
    id: String,
    key: SecretBox<[u8; KEY_BYTES]>,
}

impl MasterKey {
    fn new(key: [u8; KEY_BYTES]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"payrail master key id\0");
        hasher.update(key);
        let id = hex::encode(&hasher.finalize()[..4]);
        Self {
            id,
            key: SecretBox::new(Box::new(key)),
        }
    }

    /// The AEAD key for one purpose (`context`) and `salt`, derived with HKDF-SHA256.
    fn cipher(&self, salt: &[u8], context: &str) -> ChaCha20Poly1305 {
        let kdf = Hkdf::<Sha256>::new(Some(salt), self.key.expose_secret());
        let mut okm = [0u8; KEY_BYTES];
        // 32 bytes is far below HKDF-SHA256's output limit, so expand cannot fail.
        let _ = kdf.expand(context.as_bytes(), &mut okm);
        ChaCha20Poly1305::new(&okm.into())
    }
}

/// Where the keys came from, for the log line at start and for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Configuration,
    File(PathBuf),
}

/// The master keyring (current key first) and the hashing key.
pub struct Keys {
    ring: Vec<MasterKey>,
    hashing: SecretBox<[u8; KEY_BYTES]>,
    pub master_source: KeySource,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.ring.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keys")
            .field("master_key_ids", &ids)
            .field("master_source", &self.master_source)
            .finish_non_exhaustive()
    }
}

/// What configuration says about keys (all optional but the data directory).
pub struct KeySettings<'a> {
    pub master_key: Option<&'a SecretString>,
    pub previous_master_keys: Option<&'a SecretString>,
    pub hashing_key: Option<&'a SecretString>,
    pub data_dir: &'a Path,
}

impl Keys {
    /// The configured keys, or the data directory's key files (created on first use).
    pub fn load(settings: &KeySettings<'_>) -> anyhow::Result<Self> {
        let (ring, master_source) = match settings.master_key {
            Some(current) => {
                let mut ring = vec![MasterKey::new(decode_key(current.expose_secret())?)];
                if let Some(previous) = settings.previous_master_keys {
                    for key in previous.expose_secret().split([',', '\n']) {
                        if !key.trim().is_empty() {
                            ring.push(MasterKey::new(decode_key(key)?));
                        }
                    }
                }
                (ring, KeySource::Configuration)
            }
            None => {
                let path = settings.data_dir.join(MASTER_KEY_FILE);
                (read_ring(&path)?, KeySource::File(path))
            }
        };
        let hashing = match settings.hashing_key {
            Some(key) => decode_key(key.expose_secret())?,
            None => {
                let path = settings.data_dir.join(HASHING_KEY_FILE);
                let keys = read_or_create(&path)?;
                let Some(first) = keys.into_iter().next() else {
                    bail!("{} holds no key", path.display());
                };
                first
            }
        };
        Ok(Self {
            ring,
            hashing: SecretBox::new(Box::new(hashing)),
            master_source,
        })
    }

    /// Fresh random keys that live only in memory (tests and throwaway runs).
    pub fn ephemeral() -> Self {
        Self {
            ring: vec![MasterKey::new(rand::random())],
            hashing: SecretBox::new(Box::new(rand::random())),
            master_source: KeySource::Configuration,
        }
    }

    /// The id of the key new values are sealed under.
    pub fn current_id(&self) -> &str {
        self.ring.first().map_or("", |k| k.id.as_str())
    }

    /// Seals `plaintext` for one `context` (bound into the ciphertext: a value sealed for one
    /// tenant's row does not open as another's) under the current master key. `salt` mixes
    /// further material into the key, such as a client's `Idempotency-Key`.
    pub fn seal(&self, salt: &[u8], context: &str, plaintext: &[u8]) -> String {
        let Some(key) = self.ring.first() else {
            return String::new();
        };
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        // ChaCha20-Poly1305 encryption only fails for inputs beyond 256 GiB.
        let sealed = key
            .cipher(salt, context)
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{SEALED_PREFIX}{}.{}", key.id, BASE64_URL.encode(bytes))
    }

    /// Opens what [`Keys::seal`] sealed with the same `salt` and `context`, under whichever
    /// configured master key sealed it.
    pub fn open(&self, salt: &[u8], context: &str, sealed: &str) -> Result<Vec<u8>, KeyError> {
        let (id, body) = split_sealed(sealed)?;
        let key = self
            .ring
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyError::UnknownKey(id.to_owned()))?;
        let bytes = BASE64_URL.decode(body).map_err(|_| KeyError::Tampered)?;
        if bytes.len() < NONCE_BYTES {
            return Err(KeyError::Tampered);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        key.cipher(salt, context)
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| KeyError::Tampered)
    }

    /// The id of the master key `sealed` was sealed under.
    pub fn sealed_with(sealed: &str) -> Result<&str, KeyError> {
        split_sealed(sealed).map(|(id, _)| id)
    }

    /// A keyed digest (hex HMAC-SHA256 under the hashing key) of `data` for one `purpose`.
    pub fn digest(&self, purpose: &str, data: &[u8]) -> String {
        hex::encode(self.mac(purpose, data))
    }

    /// The key card fingerprints are derived from (per tenant, by the engine).
    pub fn card_fingerprint_key(&self) -> Vec<u8> {
        self.mac("card fingerprint", &[]).to_vec()
    }

    fn mac(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(self.hashing.expose_secret())
        else {
            return [0; 32];
        };
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

fn split_sealed(sealed: &str) -> Result<(&str, &str), KeyError> {
    sealed
        .strip_prefix(SEALED_PREFIX)
        .and_then(|rest| rest.split_once('.'))
        .ok_or(KeyError::NotSealed)
}

fn decode_key(encoded: &str) -> anyhow::Result<[u8; KEY_BYTES]> {
    let bytes = BASE64
        .decode(encoded.trim())
        .context("a key must be base64 of 32 bytes")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a key must be base64 of 32 bytes"))
}

/// A new random key, base64 encoded (what the key files and settings hold).
pub fn new_encoded_key() -> String {
    BASE64.encode(rand::random::<[u8; KEY_BYTES]>())
}

impl Keys {
    /// The encoded keys of a key file, as they are written (for rotation).
    pub fn load_lines(path: &Path) -> anyhow::Result<Vec<String>> {
        read_or_create(path)?;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

fn read_ring(path: &Path) -> anyhow::Result<Vec<MasterKey>> {
    Ok(read_or_create(path)?
        .into_iter()
        .map(MasterKey::new)
        .collect())
}

/// The keys in a key file (one base64 key per line), creating it with one new key, mode 0600,
/// if it does not exist.
fn read_or_create(path: &Path) -> anyhow::Result<Vec<[u8; KEY_BYTES]>> {
    if !path.exists() {
        create_key_file(path)?;
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let keys = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(decode_key)
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("reading {}", path.display()))?;
    if keys.is_empty() {
        bail!("{} holds no key", path.display());
    }
    Ok(keys)
}

/// Creates a key file holding one new key, atomically: a process starting at the same moment
/// either finds the whole file or creates it, never reads half of one.
fn create_key_file(path: &Path) -> anyhow::Result<()> {
    let draft = path.with_extension(format!("draft-{}", std::process::id()));
    write_key_file(&draft, &[new_encoded_key()], true)?;
    let linked = std::fs::hard_link(&draft, path);
    let _ = std::fs::remove_file(&draft);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Writes a key file readable by its owner only; `replace` swaps it in atomically.
pub fn write_key_file(path: &Path, keys: &[String], replace: bool) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let target = if replace {
        path.with_extension("new")
    } else {
        path.to_path_buf()
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(!replace)
        .create(replace)
        .truncate(replace)
        .mode(0o600)
        .open(&target)
        .with_context(|| format!("creating {}", target.display()))?;
    file.write_all(format!("{}\n", keys.join("\n")).as_bytes())?;
    file.sync_all()?;
    if replace {
        std::fs::rename(&target, path).with_context(|| format!("replacing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_context_and_salt() {
        let keys = Keys::ephemeral();
        let sealed = keys.seal(b"salt", "tenant ten_1", b"whsec_abc");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(
            keys.open(b"salt", "tenant ten_1", &sealed).unwrap(),
            b"whsec_abc"
        );
        assert_eq!(
            keys.open(b"salt", "tenant ten_2", &sealed),
            Err(KeyError::Tampered)
        );
        assert_eq!(
            keys.open(b"pepper", "tenant ten_1", &sealed),
            Err(KeyError::Tampered)
        );
        assert_eq!(Keys::sealed_with(&sealed).unwrap(), keys.current_id());
        let other = Keys::ephemeral();
        assert!(matches!(
            other.open(b"salt", "tenant ten_1", &sealed),
            Err(KeyError::UnknownKey(_))
        ));
        assert_eq!(keys.open(b"", "x", "whsec_plain"), Err(KeyError::NotSealed));
    }

    #[test]
    fn key_files_are_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let settings = KeySettings {
            master_key: None,
            previous_master_keys: None,
            hashing_key: None,
            data_dir: dir.path(),
        };
        let first = Keys::load(&settings).unwrap();
        let sealed = first.seal(b"", "c", b"secret");
        let again = Keys::load(&settings).unwrap();
        assert_eq!(again.open(b"", "c", &sealed).unwrap(), b"secret");
        assert_eq!(first.digest("p", b"d"), again.digest("p", b"d"));
        for file in [MASTER_KEY_FILE, HASHING_KEY_FILE] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn configured_previous_keys_still_open_old_values() {
        let (old, new) = (new_encoded_key(), new_encoded_key());
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (SecretString::from(old), SecretString::from(new));
        let before = Keys::load(&KeySettings {
            master_key: Some(&old),
            previous_master_keys: None,
            hashing_key: None,
            data_dir: dir.path(),
        })
        .unwrap();
        let sealed = before.seal(b"", "c", b"secret");
        let after = Keys::load(&KeySettings {
            master_key: Some(&new),
            previous_master_keys: Some(&old),
            hashing_key: None,
            data_dir: dir.path(),
        })
        .unwrap();
        assert_ne!(after.current_id(), before.current_id());
        assert_eq!(after.open(b"", "c", &sealed).unwrap(), b"secret");
        assert!(format!("{after:?}").contains(after.current_id()));
        assert!(!format!("{after:?}").contains(new.expose_secret()));
    }
}
