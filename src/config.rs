//! Typed, layered configuration: compiled defaults < optional `payrail.toml` < `PAYRAIL_*`
//! environment (plus `DATABASE_URL`). Secrets are wrapped so they cannot be printed.

use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use payrail_actors::EngineConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::gateway::SimulatorConfig;
use crate::store::DEFAULT_POOL_SIZE;

pub const CONFIG_FILE: &str = "payrail.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the API listens (`PAYRAIL_BIND`).
    pub bind: String,
    /// `postgres://…` or `sqlite://path` (`DATABASE_URL`); default: embedded SQLite. Secret:
    /// it may carry a password.
    pub database_url: Option<SecretString>,
    /// Where the embedded default keeps its files: the SQLite database and, unless configured,
    /// the key files (`PAYRAIL_DATA_DIR`).
    pub data_dir: String,
    /// Seals secrets at rest: base64 of 32 bytes (`PAYRAIL_MASTER_KEY`); default: the data
    /// directory's `master.key`, created on first start.
    pub master_key: Option<SecretString>,
    /// Earlier master keys, comma-separated, kept to open what they sealed until
    /// `payrail rotate-master-key` has re-sealed it (`PAYRAIL_PREVIOUS_MASTER_KEYS`).
    pub previous_master_keys: Option<SecretString>,
    /// Keys card and request fingerprints: base64 of 32 bytes (`PAYRAIL_HASHING_KEY`); default:
    /// the data directory's `hashing.key`. Never rotated: fingerprints would change.
    pub hashing_key: Option<SecretString>,
    pub db_pool_size: usize,
    /// How long a PostgreSQL query may go unanswered before the engine closes its connection
    /// and answers 503 (`PAYRAIL_DB_QUERY_DEADLINE_MS`).
    pub db_query_deadline_ms: u64,
    /// How long a command may take end to end before it is answered 503
    /// (`PAYRAIL_COMMAND_DEADLINE_MS`).
    pub command_deadline_ms: u64,
    /// Platform admin token for tenant management (`PAYRAIL_ADMIN_TOKEN`).
    pub admin_token: Option<SecretString>,
    /// `pretty` or `json` (`PAYRAIL_LOG_FORMAT`).
    pub log_format: String,
    /// An external gateway; none starts the built-in simulator in-process.
    pub gateway_url: Option<String>,
    /// The URL the gateway reaches this server at (for webhooks); default `http://<bind>`.
    pub public_url: Option<String>,
    pub rate_limit_per_sec: u32,
    pub rate_limit_burst: u32,
    /// Budget shared by all of one tenant's keys, on top of each key's own.
    pub tenant_rate_limit_per_sec: u32,
    pub tenant_rate_limit_burst: u32,
    /// Failed authentications allowed per client address and per key id: a burst, then this
    /// many per minute.
    pub auth_failure_burst: u32,
    pub auth_failure_per_min: u32,
    /// Take the client address from the last `X-Forwarded-For` entry: only behind a proxy
    /// that appends it (otherwise any client could pick its own address).
    pub trust_forwarded_for: bool,
    /// A PEM file of CA certificates trusted for an `https://` gateway, beside the public roots.
    pub gateway_ca_file: Option<String>,
    pub shutdown_timeout_secs: u64,
    pub commit_batch_max_units: usize,
    pub commit_linger_us: u64,
    /// Audit writers, each with one batch in flight for its share of the tenants
    /// (`PAYRAIL_AUDIT_WRITERS`); default: two on PostgreSQL, whose batches of different tenants
    /// commit side by side on two connections, one on SQLite, which has one writer connection.
    pub audit_writers: Option<usize>,
    /// Threads the tenant supervisors (and their entity actors) run on (`PAYRAIL_ARBITERS`).
    pub arbiters: usize,
    /// HTTP worker threads (`PAYRAIL_HTTP_WORKERS`).
    pub http_workers: usize,
    pub passivation_idle_secs: u64,
    pub max_active_entities_per_tenant: usize,
    /// Live invoice and payment actors on this node, all tenants together.
    pub max_active_entities: usize,
    /// Live tenant supervisors on this node.
    pub max_live_supervisors: usize,
    pub dedup_retention_hours: u64,
    pub idempotency_retention_hours: u64,
    pub retention_sweep_secs: u64,
    pub secret_overlap_hours: u64,
    pub signature_tolerance_secs: i64,
    pub recovery_interval_secs: u64,
    /// A payment younger than this is left to its own gateway submission by the recovery sweep.
    pub recovery_min_age_secs: u64,
    /// Comment-line interval of live event streams (`PAYRAIL_STREAM_HEARTBEAT_MS`).
    pub stream_heartbeat_ms: u64,
    /// A live event stream whose client accepts nothing for this long is cut off.
    pub stream_stall_timeout_ms: u64,
    /// Chaos knobs of the built-in simulator.
    pub simulator: SimulatorConfig,
    /// Outbound webhooks to tenants (`PAYRAIL_OUTBOUND__*`).
    pub outbound: crate::outbound::OutboundSettings,
}

impl Default for Settings {
    fn default() -> Self {
        let engine = EngineConfig::default();
        Self {
            bind: "127.0.0.1:8080".into(),
            database_url: None,
            data_dir: "./data".into(),
            master_key: None,
            previous_master_keys: None,
            hashing_key: None,
            db_pool_size: DEFAULT_POOL_SIZE,
            db_query_deadline_ms: crate::store::QUERY_DEADLINE.as_millis() as u64,
            command_deadline_ms: engine.command_deadline.as_millis() as u64,
            admin_token: None,
            log_format: "pretty".into(),
            gateway_url: None,
            public_url: None,
            rate_limit_per_sec: 1_000,
            rate_limit_burst: 2_000,
            tenant_rate_limit_per_sec: 2_000,
            tenant_rate_limit_burst: 4_000,
            auth_failure_burst: 20,
            auth_failure_per_min: 60,
            trust_forwarded_for: false,
            gateway_ca_file: None,
            shutdown_timeout_secs: 30,
            commit_batch_max_units: engine.commit_batch_max_units,
            commit_linger_us: 0,
            audit_writers: None,
            arbiters: engine.arbiters,
            http_workers: engine.arbiters,
            passivation_idle_secs: engine.passivation_idle.as_secs(),
            max_active_entities_per_tenant: engine.max_active_entities_per_tenant,
            max_active_entities: engine.max_active_entities,
            max_live_supervisors: engine.max_live_supervisors,
            dedup_retention_hours: 72,
            idempotency_retention_hours: 24,
            retention_sweep_secs: 60,
            secret_overlap_hours: 24,
            signature_tolerance_secs: crate::gateway::signature::DEFAULT_TOLERANCE_SECS,
            recovery_interval_secs: engine.recovery_interval.as_secs(),
            recovery_min_age_secs: engine.recovery_min_age.as_secs(),
            stream_heartbeat_ms: crate::http::stream::DEFAULT_HEARTBEAT_MS,
            stream_stall_timeout_ms: crate::http::stream::DEFAULT_STALL_TIMEOUT_MS,
            simulator: SimulatorConfig::default(),
            outbound: crate::outbound::OutboundSettings::default(),
        }
    }
}

/// The route the gateway posts webhooks to.
pub const WEBHOOK_PATH: &str = "/api/webhooks/payments";

impl Settings {
    /// Where the gateway sends this server's webhooks: `public_url`, else the address the
    /// server listens on.
    pub fn webhook_url(&self, listening_on: &str) -> String {
        let base = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{listening_on}"));
        format!("{}{WEBHOOK_PATH}", base.trim_end_matches('/'))
    }

    /// Defaults, then `payrail.toml` if present, then the environment.
    pub fn load() -> anyhow::Result<Self> {
        let settings: Settings = Figment::new()
            .merge(Toml::file(CONFIG_FILE))
            // `PAYRAIL_TEST_*` belongs to the test harness, not to the service.
            .merge(
                Env::prefixed("PAYRAIL_")
                    .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
                    .split("__"),
            )
            .merge(Env::raw().only(&["DATABASE_URL"]))
            .extract()?;
        Ok(settings)
    }

    /// The configured database, else the embedded SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!(
                "sqlite://{}/payrail.db",
                self.data_dir.trim_end_matches('/')
            ),
        }
    }

    /// Audit writers: as configured, else two on PostgreSQL and one on SQLite. On PostgreSQL a
    /// second batch in flight raised the batched ceiling by ~25% and did not slow single
    /// webhooks; on SQLite the two batches wait for its one writer connection and it fell.
    pub fn audit_writers(&self) -> usize {
        self.audit_writers.unwrap_or_else(|| {
            if crate::store::is_postgres_url(&self.database_url()) {
                2
            } else {
                1
            }
        })
    }

    /// The keys: configured, or the data directory's key files.
    pub fn keys(&self) -> anyhow::Result<crate::keys::Keys> {
        crate::keys::Keys::load(&crate::keys::KeySettings {
            master_key: self.master_key.as_ref(),
            previous_master_keys: self.previous_master_keys.as_ref(),
            hashing_key: self.hashing_key.as_ref(),
            data_dir: std::path::Path::new(&self.data_dir),
        })
    }

    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            commit_batch_max_units: self.commit_batch_max_units.max(1),
            commit_linger: Duration::from_micros(self.commit_linger_us),
            audit_writers: self.audit_writers().max(1),
            arbiters: self.arbiters.max(1),
            passivation_idle: Duration::from_secs(self.passivation_idle_secs),
            max_active_entities_per_tenant: self.max_active_entities_per_tenant.max(1),
            max_active_entities: self.max_active_entities.max(1),
            max_live_supervisors: self.max_live_supervisors.max(1),
            command_deadline: Duration::from_millis(self.command_deadline_ms.max(1)),
            recovery_interval: Duration::from_secs(self.recovery_interval_secs),
            recovery_min_age: Duration::from_secs(self.recovery_min_age_secs),
            ..EngineConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Settings;

    /// A settings dump (a log line, a panic message) shows no secret: the database password,
    /// the admin token and the keys are redacted.
    #[test]
    fn debug_output_hides_every_secret() {
        let settings = Settings {
            database_url: Some(
                "postgres://payrail:hunter2-db@db.internal/payrail"
                    .to_owned()
                    .into(),
            ),
            admin_token: Some("admin-token-s3cret".to_owned().into()),
            master_key: Some(crate::keys::new_encoded_key().into()),
            previous_master_keys: Some(crate::keys::new_encoded_key().into()),
            hashing_key: Some(crate::keys::new_encoded_key().into()),
            ..Settings::default()
        };
        let shown = format!("{settings:?} {settings:#?}");
        for secret in ["hunter2-db", "admin-token-s3cret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        use secrecy::ExposeSecret as _;
        for key in [
            &settings.master_key,
            &settings.previous_master_keys,
            &settings.hashing_key,
        ] {
            let key = key
                .as_ref()
                .map(|k| k.expose_secret().to_owned())
                .unwrap_or_default();
            assert!(!shown.contains(&key));
        }
        assert_eq!(
            settings.database_url(),
            "postgres://payrail:hunter2-db@db.internal/payrail"
        );
    }

    /// Two audit writers on PostgreSQL, one on SQLite (the default database), unless set.
    #[test]
    fn audit_writers_default_by_backend() {
        let sqlite = Settings::default();
        assert_eq!(sqlite.engine().audit_writers, 1);
        let postgres = Settings {
            database_url: Some("postgres://payrail@db.internal/payrail".to_owned().into()),
            ..Settings::default()
        };
        assert_eq!(postgres.engine().audit_writers, 2);
        let set = Settings {
            audit_writers: Some(3),
            ..postgres.clone()
        };
        assert_eq!(set.engine().audit_writers, 3);
        let zero = Settings {
            audit_writers: Some(0),
            ..sqlite
        };
        assert_eq!(zero.engine().audit_writers, 1);
    }
}
