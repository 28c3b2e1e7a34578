//! Fresh databases for tests: a new database in the shared throwaway PostgreSQL cluster
//! (`PAYRAIL_TEST_PG_URL`, set by `scripts/test`), or a new SQLite file.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use super::Db;
use crate::keys::Keys;

/// The pool size of test databases: small, tests run many at once.
const TEST_POOL_SIZE: usize = 4;

/// Creates a uniquely named database in the cluster at `PAYRAIL_TEST_PG_URL` and connects to
/// it (migrations applied). Answers the store and its URL.
pub async fn fresh_postgres() -> anyhow::Result<(Db, String)> {
    let url = empty_postgres().await?;
    let db = Db::connect(&url, TEST_POOL_SIZE, Arc::new(Keys::ephemeral())).await?;
    Ok((db, url))
}

/// A new, empty database (no migrations) in the test cluster; answers its URL.
pub async fn empty_postgres() -> anyhow::Result<String> {
    let base = std::env::var("PAYRAIL_TEST_PG_URL").context(
        "PAYRAIL_TEST_PG_URL is not set: run the tests through scripts/test, which starts a \
         throwaway PostgreSQL cluster",
    )?;
    let name = format!("payrail_test_{}", uuid::Uuid::now_v7().simple());
    let admin_url = base.clone();
    let create = format!("CREATE DATABASE {name}");
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn = PgConnection::establish(&admin_url)
            .with_context(|| format!("connecting to the test cluster at {admin_url}"))?;
        conn.batch_execute(&create)
            .context("creating a test database")?;
        Ok(())
    })
    .await??;
    let mut url = url::Url::parse(&base).context("parsing PAYRAIL_TEST_PG_URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// A new SQLite database file in `dir`. Answers the store and its URL.
pub async fn fresh_sqlite(dir: &Path) -> anyhow::Result<(Db, String)> {
    let file = dir.join(format!("payrail-{}.db", uuid::Uuid::now_v7().simple()));
    let url = format!("sqlite://{}", file.display());
    let db = Db::connect(&url, TEST_POOL_SIZE, Arc::new(Keys::ephemeral())).await?;
    Ok((db, url))
}
