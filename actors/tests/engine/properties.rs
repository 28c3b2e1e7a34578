//! Property tests on the in-memory store: the shared scenario (several tenants, idempotency
//! keys and retries, duplicated and shuffled gateway outcomes, refunds, voids, passivation,
//! actor panics, a gateway that fails and recovers, and store failures of whole batches, of
//! one unit in the middle of a pipeline and of replies), checked by the history checker.
//! `PROPTEST_CASES` raises the case count (default 256).

use std::sync::Arc;

use async_trait::async_trait;
use payrail_actors::domain::TenantId;
use payrail_actors::memory::MemoryStore;
use payrail_actors::ports::EventStore;
use proptest::prelude::*;

use crate::shared::check::View;
use crate::shared::faults::Faults;
use crate::shared::scenario::{plan, Backend};

struct Memory(Arc<MemoryStore>);

#[async_trait(?Send)]
impl Backend for Memory {
    fn store(&self) -> Arc<dyn EventStore> {
        self.0.clone()
    }

    fn faults(&self) -> &dyn Faults {
        &*self.0
    }

    async fn view(&self, tenant: TenantId) -> View {
        let (events, invoices, payments) = self.0.view();
        View {
            events: events
                .into_iter()
                .filter(|e| e.tenant_id == tenant)
                .collect(),
            invoices: invoices
                .into_iter()
                .filter(|((t, _), _)| *t == tenant)
                .map(|((_, id), invoice)| (id, invoice))
                .collect(),
            payments: payments
                .into_iter()
                .filter(|((t, _), _)| *t == tenant)
                .map(|((_, id), payment)| (id, payment))
                .collect(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_random_interleavings(plan in plan(12)) {
        let backend = Memory(Arc::new(MemoryStore::new()));
        actix_rt::System::new().block_on(crate::shared::run(&backend, plan));
    }
}
