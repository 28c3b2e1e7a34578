//! `payrail rotate-master-key`: every stored secret re-sealed under a new master key.
//!
//! With the key file of the embedded default, the command writes a new key in front of the old
//! ones and re-seals; it drops the old keys once nothing sealed under them remains. With
//! `PAYRAIL_MASTER_KEY` from configuration, the operator first makes the new key current and
//! lists the old one in `PAYRAIL_PREVIOUS_MASTER_KEYS`; the command then re-seals. Servers read
//! their keys at start: run it with them stopped, or restart them after.

use std::sync::Arc;

use crate::config::Settings;
use crate::keys::{new_encoded_key, write_key_file, Keys, MASTER_KEY_FILE};
use crate::store::Db;

/// What a rotation did, for the operator.
#[derive(Debug, PartialEq, Eq)]
pub struct Rotated {
    pub key_id: String,
    pub resealed_tenants: u64,
    /// Stored replays still under an older key (they expire with the idempotency retention).
    pub replays_under_older_keys: u64,
    /// Whether the older keys were dropped from the key file.
    pub retired_older_keys: bool,
}

pub async fn rotate_master_key(settings: &Settings) -> anyhow::Result<Rotated> {
    let mut file_keys = None;
    if settings.master_key.is_none() {
        let path = std::path::Path::new(&settings.data_dir).join(MASTER_KEY_FILE);
        let old = Keys::load_lines(&path)?;
        let mut lines = vec![new_encoded_key()];
        lines.extend(old);
        write_key_file(&path, &lines, true)?;
        file_keys = Some((path, lines));
    }
    let keys = Arc::new(settings.keys()?);
    let db = Db::connect(&settings.database_url(), 1, keys.clone()).await?;
    let resealed_tenants = db.reseal_secrets().await?;
    let replays_under_older_keys = db.replays_under_other_keys().await?;
    let mut retired_older_keys = false;
    if let (Some((path, lines)), 0) = (&file_keys, replays_under_older_keys) {
        write_key_file(path, &lines[..1], true)?;
        retired_older_keys = true;
    }
    Ok(Rotated {
        key_id: keys.current_id().to_owned(),
        resealed_tenants,
        replays_under_older_keys,
        retired_older_keys,
    })
}
