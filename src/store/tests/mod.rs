//! Store tests: one contract suite for every `EventStore` (memory, SQLite, PostgreSQL) and
//! SQL-only tests run on both SQL backends. PostgreSQL tests need `PAYRAIL_TEST_PG_URL`
//! (`scripts/test` provides it) and fail without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Runs an `async fn(Db)` test on a fresh SQLite file and on a fresh PostgreSQL database;
/// `with_url`: an `async fn(Db, String)` that also gets the database's URL, to open it again.
macro_rules! on_both {
    ($name:ident) => {
        on_both!(@ $name, |db, _url| super::$name(db));
    };
    ($name:ident, with_url) => {
        on_both!(@ $name, |db, url| super::$name(db, url));
    };
    // Two stores writing to the one database, not listening to each other.
    ($name:ident, two_writers) => {
        on_both!(@ $name, |db, url| async move {
            let other = crate::store::Db::connect(
                &url,
                2,
                std::sync::Arc::new(crate::keys::Keys::ephemeral()),
            )
            .await
            .unwrap();
            super::$name(&db, &other).await
        });
    };
    (@ $name:ident, |$db:ident, $url:ident| $call:expr) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let ($db, $url) = crate::store::testing::fresh_sqlite(dir.path())
                    .await
                    .unwrap();
                $call.await;
            }

            #[tokio::test]
            async fn postgres() {
                let ($db, $url) = crate::store::testing::fresh_postgres().await.unwrap();
                $call.await;
            }
        }
    };
}

mod committed;
mod contract;
mod fixtures;
mod invoice_updates;
mod lists;
mod migrations;
mod other_nodes;
mod plans;
mod snapshot_parts;
mod sql;
mod sql_batches;
mod tenants;
mod write_shape;
mod writer_conn;
