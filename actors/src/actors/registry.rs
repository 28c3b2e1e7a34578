//! The registry maps tenant ids to their supervisors, starting each on demand on one of the
//! engine's arbiters (one thread per core), so tenants run in parallel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::Semaphore;

use super::supervisor::{Retire, TenantSupervisor};
use super::Deps;
use crate::domain::TenantId;

/// A tenant's supervisor plus its bulkhead: commands in flight for this tenant are bounded.
#[derive(Clone)]
pub struct TenantHandle {
    pub addr: Addr<TenantSupervisor>,
    pub permits: Arc<Semaphore>,
    /// Set by the supervisor once it has idled past the passivation timeout.
    idle: Arc<AtomicBool>,
}

pub struct Registry {
    arbiters: Vec<Arbiter>,
    tenants: Mutex<HashMap<TenantId, TenantHandle>>,
    deps: Deps,
}

impl Registry {
    /// Must run inside an actix `System`.
    pub fn new(deps: Deps) -> Self {
        let arbiters = (0..deps.config.arbiters.max(1))
            .map(|_| Arbiter::new())
            .collect();
        Self {
            arbiters,
            tenants: Mutex::new(HashMap::new()),
            deps,
        }
    }

    /// The tenant's supervisor, started (or restarted, if it died) on demand.
    pub fn tenant(&self, tenant: TenantId) -> TenantHandle {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = tenants.get(&tenant) {
            if handle.addr.connected() {
                return handle.clone();
            }
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
            idle,
        };
        tenants.insert(tenant, handle.clone());
        handle
    }

    /// Forgets and stops the supervisors that have idled past the passivation timeout and whose
    /// handle nobody holds (a command in progress holds one), so no message can reach a stopped
    /// supervisor; the tenant's next command starts a fresh one. Returns how many.
    pub fn retire_idle(&self) -> usize {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let before = tenants.len();
        tenants.retain(|_, handle| {
            let unused = Arc::strong_count(&handle.permits) == 1;
            if unused && handle.idle.load(Ordering::SeqCst) {
                handle.addr.do_send(Retire);
                return false;
            }
            handle.addr.connected()
        });
        before - tenants.len()
    }

    pub fn tenants(&self) -> Vec<TenantHandle> {
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants.values().cloned().collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}
