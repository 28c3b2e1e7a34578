//! The registry maps tenant ids to their supervisors, starting each on demand on one of the
//! engine's arbiters (one thread per core), so tenants run in parallel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::Semaphore;

use super::supervisor::{Retire, TenantSupervisor, Trim};
use super::Deps;
use crate::claims::Claims;
use crate::domain::{IdMap, TenantId};

/// A tenant's supervisor plus its bulkhead: commands in flight for this tenant are bounded.
#[derive(Clone)]
pub struct TenantHandle {
    /// Cloned for each request, though a clone allocates: an actix sender that finds the
    /// mailbox at its capacity parks, and a sender shared by every request would then hold
    /// them all back until the supervisor drains it (measured slower, 2026-12-05).
    pub addr: Addr<TenantSupervisor>,
    pub permits: Arc<Semaphore>,
    /// The idempotency keys of the tenant's commands in progress on this process.
    pub keys: Arc<Claims<String>>,
    /// Set by the supervisor once it has idled past the passivation timeout.
    idle: Arc<AtomicBool>,
}

pub struct Registry {
    arbiters: Vec<Arbiter>,
    tenants: Mutex<IdMap<TenantId, Live>>,
    deps: Deps,
}

/// A live supervisor's handle and when a command last asked for it.
struct Live {
    handle: TenantHandle,
    last_used: Instant,
}

impl Live {
    /// Nobody holds the handle: no command of the tenant is in progress.
    fn unused(&self) -> bool {
        Arc::strong_count(&self.handle.permits) == 1
    }
}

impl Registry {
    /// Must run inside an actix `System`.
    pub fn new(deps: Deps) -> Self {
        let arbiters = (0..deps.config.arbiters.max(1))
            .map(|n| crate::threads::arbiter(format!("actors-{n}")))
            .collect();
        Self {
            arbiters,
            tenants: Mutex::new(IdMap::default()),
            deps,
        }
    }

    /// The tenant's supervisor, started (or restarted, if it died) on demand.
    pub fn tenant(&self, tenant: TenantId) -> TenantHandle {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(live) = tenants.get_mut(&tenant) {
            if live.handle.addr.connected() {
                live.last_used = now;
                return live.handle.clone();
            }
        }
        let cap = self
            .deps
            .config
            .max_live_supervisors
            .max(self.deps.config.engine_in_flight_max + 1);
        if tenants.len() >= cap {
            retire_least_recent(&mut tenants, cap);
        }
        let index = (tenant.uuid().as_u128() % self.arbiters.len() as u128) as usize;
        let deps = self.deps.clone();
        let idle = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&idle);
        let addr = match self.arbiters.get(index) {
            Some(arbiter) => TenantSupervisor::start_in_arbiter(&arbiter.handle(), move |_| {
                TenantSupervisor::new(tenant, deps, flag)
            }),
            None => TenantSupervisor::new(tenant, deps, flag).start(),
        };
        let handle = TenantHandle {
            addr,
            permits: Arc::new(Semaphore::new(self.deps.config.tenant_in_flight_max)),
            keys: Arc::default(),
            idle,
        };
        tenants.insert(
            tenant,
            Live {
                handle: handle.clone(),
                last_used: now,
            },
        );
        handle
    }

    /// Forgets and stops the supervisors that have idled past the passivation timeout and whose
    /// handle nobody holds (a command in progress holds one), so no message can reach a stopped
    /// supervisor; the tenant's next command starts a fresh one. Returns how many.
    pub fn retire_idle(&self) -> usize {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let before = tenants.len();
        tenants.retain(|_, live| {
            if live.unused() && live.handle.idle.load(Ordering::SeqCst) {
                live.handle.addr.do_send(Retire);
                return false;
            }
            live.handle.addr.connected()
        });
        before - tenants.len()
    }

    /// Past the node's cap on live entity actors, asks every supervisor to passivate its share
    /// of the excess (least recently used first). Returns whether the node was over its cap.
    pub fn trim_entities(&self) -> bool {
        let node_active = usize::try_from(self.deps.metrics.active_entities()).unwrap_or(0);
        if node_active <= self.deps.config.max_active_entities {
            return false;
        }
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        for live in tenants.values() {
            live.handle.addr.do_send(Trim { node_active });
        }
        true
    }

    pub fn tenants(&self) -> Vec<TenantHandle> {
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants.values().map(|live| live.handle.clone()).collect()
    }
}

/// Retires the least recently used supervisors with nothing in flight, leaving room for one
/// more below 90% of `cap` (their actors passivate; the tenant's next command starts a fresh
/// supervisor from storage).
fn retire_least_recent(tenants: &mut IdMap<TenantId, Live>, cap: usize) {
    let excess = (tenants.len() + 1).saturating_sub(cap - cap / 10);
    let mut unused: Vec<(Instant, TenantId)> = tenants
        .iter()
        .filter(|(_, live)| live.unused())
        .map(|(id, live)| (live.last_used, *id))
        .collect();
    unused.sort_by_key(|(at, _)| *at);
    for (_, id) in unused.into_iter().take(excess) {
        if let Some(live) = tenants.remove(&id) {
            live.handle.addr.do_send(Retire);
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}
