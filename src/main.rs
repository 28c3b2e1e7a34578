//! The `payrail` command: serve the API, migrate, manage tenants and keys, rebuild
//! projections, or run the gateway simulator on its own.

use std::sync::Arc;

use clap::{Parser, Subcommand};
use payrail::config::Settings;
use payrail::gateway::{HttpGateway, HttpGatewayConfig};
use payrail::http::api_keys::new_key;
use payrail::http::auth::{random_secret, Role};
use payrail::store::{Db, TenantRow};
use payrail_actors::domain::{ApiKeyId, TenantId};
use payrail_actors::ports::{AccountRegistration, Gateway};
use secrecy::ExposeSecret as _;

/// glibc's allocator took about half of the engine's CPU under a webhook flood (`_int_malloc`,
/// `malloc_consolidate`, `_int_free` led the profile); mimalloc's thread-local free lists don't.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The settings an operator reaches for, shown under `--help`.
const CONFIG_HELP: &str = "\
Configuration: compiled defaults < ./payrail.toml < environment.
  PAYRAIL_BIND            listen address (127.0.0.1:8080)
  DATABASE_URL            postgres://… or sqlite://path (default sqlite://<data dir>/payrail.db)
  PAYRAIL_DATA_DIR        embedded database and key files (./data)
  PAYRAIL_MASTER_KEY, PAYRAIL_PREVIOUS_MASTER_KEYS, PAYRAIL_HASHING_KEY  keys (base64, 32 bytes)
  PAYRAIL_ADMIN_TOKEN     platform admin token for /api/tenants
  PAYRAIL_GATEWAY_URL     external gateway (default: the built-in simulator, in-process)
  PAYRAIL_PUBLIC_URL      URL the gateway sends webhooks to (default http://<bind>)
  PAYRAIL_LOG_FORMAT      pretty | json (filter with RUST_LOG)
  PAYRAIL_RATE_LIMIT_PER_SEC, PAYRAIL_RATE_LIMIT_BURST, PAYRAIL_DB_POOL_SIZE,
  PAYRAIL_DB_QUERY_DEADLINE_MS, PAYRAIL_COMMAND_DEADLINE_MS,
  PAYRAIL_COMMIT_BATCH_MAX_UNITS, PAYRAIL_COMMIT_LINGER_US, PAYRAIL_AUDIT_WRITERS,
  PAYRAIL_SHUTDOWN_TIMEOUT_SECS, PAYRAIL_SIMULATOR__<KNOB> (e.g. PAYRAIL_SIMULATOR__DUPLICATE_RATE=0.2)";

#[derive(Parser)]
#[command(
    name = "payrail",
    version,
    about = "Actor-based, multi-tenant invoicing and payment engine",
    after_help = CONFIG_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (embedded SQLite and the built-in gateway simulator by default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage tenants.
    Tenants {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage API keys.
    ApiKeys {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Rebuild every read table from the events alone.
    RebuildProjections,
    /// Re-seal every stored secret under a new master key (see the README's security section).
    RotateMasterKey,
    /// Run the gateway simulator standalone.
    Gateway {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: String,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant with an admin key; prints the key and webhook secret once.
    Create {
        /// The tenant's display name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key for a tenant; prints it once.
    Create {
        /// The tenant the key belongs to (`ten_…`).
        #[arg(long)]
        tenant: TenantId,
        /// What the key may do.
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// A label for the key.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    payrail::telemetry::init(&settings.log_format);
    match cli.command {
        Command::Serve => payrail::server::serve(settings).await,
        Command::Migrate => {
            Db::connect(&settings.database_url(), 1, Arc::new(settings.keys()?)).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Tenants {
            command: TenantCommand::Create { name },
        } => {
            let db = Db::connect(&settings.database_url(), 1, Arc::new(settings.keys()?)).await?;
            let now = chrono::Utc::now();
            let tenant = TenantRow {
                id: TenantId::new(),
                name,
                webhook_secret: random_secret("whsec_").into(),
                previous_webhook_secret: None,
                previous_valid_until: None,
                created_at: now,
            };
            let (row, event, key) = new_key(
                tenant.id,
                ApiKeyId::new(),
                "default",
                Role::Admin,
                now,
                "cli",
            );
            // An external gateway must know the account before the tenant can be paid; the
            // built-in simulator learns every tenant when `serve` starts.
            if let Some(url) = &settings.gateway_url {
                let webhook_url = settings.webhook_url(&settings.bind);
                let config =
                    HttpGatewayConfig::new(url.clone()).trusting(settings.gateway_ca_file.as_ref());
                HttpGateway::with_config(config)?
                    .register_account(&AccountRegistration {
                        account: tenant.id,
                        webhook_url,
                        webhook_secret: tenant.webhook_secret.expose_secret().to_owned(),
                    })
                    .await?;
            }
            db.create_tenant(&tenant, &row, &event, None).await?;
            println!(
                "{}",
                serde_json::json!({"id": tenant.id.to_string(), "apiKey": key.key, "webhookSecret": tenant.webhook_secret.expose_secret()})
            );
            Ok(())
        }
        Command::ApiKeys {
            command: KeyCommand::Create { tenant, role, name },
        } => {
            let db = Db::connect(&settings.database_url(), 1, Arc::new(settings.keys()?)).await?;
            if db.get_tenant(tenant).await?.is_none() {
                anyhow::bail!("no tenant {tenant}");
            }
            let role: Role = role.parse().map_err(|_| anyhow::anyhow!("unknown role"))?;
            let (row, event, key) = new_key(
                tenant,
                ApiKeyId::new(),
                &name,
                role,
                chrono::Utc::now(),
                "cli",
            );
            db.create_api_key(&row, &event, None).await?;
            println!("{}", key.key);
            Ok(())
        }
        Command::RotateMasterKey => {
            let rotated = payrail::rotation::rotate_master_key(&settings).await?;
            println!(
                "master key {}: {} tenants re-sealed; {} stored replays still under older keys{}",
                rotated.key_id,
                rotated.resealed_tenants,
                rotated.replays_under_older_keys,
                if rotated.retired_older_keys {
                    "; older keys retired"
                } else {
                    "; keep the older keys until they expire"
                }
            );
            Ok(())
        }
        Command::RebuildProjections => {
            let db = Db::connect(&settings.database_url(), 1, Arc::new(settings.keys()?)).await?;
            let rebuilt = db.rebuild_projections().await?;
            println!("rebuilt {rebuilt} projections");
            Ok(())
        }
        Command::Gateway { bind } => {
            payrail::gateway::simulator::run_standalone(&bind, settings.simulator).await
        }
    }
}
