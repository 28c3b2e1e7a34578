//! Store tests: one contract suite for every `EventStore` (memory, SQLite, PostgreSQL) and
//! SQL-only tests run on both SQL backends. PostgreSQL tests need `PAYRAIL_TEST_PG_URL`
//! (`scripts/test` provides it) and fail without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Runs an `async fn(Db)` test on a fresh SQLite file and on a fresh PostgreSQL database.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let (db, _) = crate::store::testing::fresh_sqlite(dir.path())
                    .await
                    .unwrap();
                super::$name(db).await;
            }

            #[tokio::test]
            async fn postgres() {
                let (db, _) = crate::store::testing::fresh_postgres().await.unwrap();
                super::$name(db).await;
            }
        }
    };
    // The test also gets the database's URL, to open it again.
    ($name:ident, with_url) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let (db, url) = crate::store::testing::fresh_sqlite(dir.path())
                    .await
                    .unwrap();
                super::$name(db, url).await;
            }

            #[tokio::test]
            async fn postgres() {
                let (db, url) = crate::store::testing::fresh_postgres().await.unwrap();
                super::$name(db, url).await;
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
mod sql;
mod sql_batches;
mod tenants;
mod write_shape;
