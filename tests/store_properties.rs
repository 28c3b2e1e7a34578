//! The engine's property scenario (shared with `payrail-actors`, see
//! `actors/tests/engine/shared`) against the SQLite store: real commits underneath, with whole
//! batches failed, single units failed (later units of the same entities fenced) and replies
//! lost around them. `PROPTEST_CASES` raises the case count (default 24).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../actors/tests/engine/shared/mod.rs"]
mod shared;

use std::sync::Arc;

use async_trait::async_trait;
use payrail::store::testing::fresh_sqlite;
use payrail::store::Db;
use payrail_actors::domain::{StreamId, TenantId};
use payrail_actors::ports::EventStore;
use proptest::prelude::*;

use shared::check::View;
use shared::faults::{Faults, FaultyStore};
use shared::scenario::{plan, Backend};

/// Events a tenant can have in one case, with room to spare.
const EVENTS_MAX: usize = 100_000;

struct Sqlite {
    db: Db,
    faulty: Arc<FaultyStore>,
}

#[async_trait(?Send)]
impl Backend for Sqlite {
    fn store(&self) -> Arc<dyn EventStore> {
        self.faulty.clone()
    }

    fn faults(&self) -> &dyn Faults {
        &*self.faulty
    }

    async fn view(&self, tenant: TenantId) -> View {
        let events: Vec<_> = self
            .db
            .events_after(tenant, 0, EVENTS_MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|stored| stored.event)
            .collect();
        let mut view = View::default();
        for event in &events {
            match event.stream {
                StreamId::Invoice(id) if !view.invoices.contains_key(&id) => {
                    let loaded = self.db.load_invoice(tenant, id).await.unwrap().unwrap();
                    assert!(
                        loaded.trailing.is_empty(),
                        "invoice projection behind its log"
                    );
                    view.invoices.insert(id, loaded.snapshot);
                }
                StreamId::Payment(id) if !view.payments.contains_key(&id) => {
                    let loaded = self.db.load_payment(tenant, id).await.unwrap().unwrap();
                    assert!(
                        loaded.trailing.is_empty(),
                        "payment projection behind its log"
                    );
                    view.payments.insert(id, loaded.snapshot);
                }
                _ => {}
            }
        }
        view.events = events;
        view
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn sqlite_invariants_hold_under_random_interleavings(plan in plan(10)) {
        let dir = tempfile::tempdir().unwrap();
        actix_rt::System::new().block_on(async {
            let (db, _) = fresh_sqlite(dir.path()).await.unwrap();
            let faulty = Arc::new(FaultyStore::new(Arc::new(db.clone())));
            shared::run(&Sqlite { db, faulty }, plan).await;
        });
    }
}
