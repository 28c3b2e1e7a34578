//! What a run does, from the environment: the seed every random choice derives from, how many
//! kills and other faults, and where the figures go. Defaults are the short run the test suite
//! makes; `scripts/soak` sets the long one.

use std::time::Duration;

/// One run's knobs.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Every random choice (workload, fault order, delays) derives from it
    /// (`PAYRAIL_SOAK_SEED`; default: from the clock, printed).
    pub seed: u64,
    /// `kill -9` of the engine per backend (`PAYRAIL_SOAK_KILLS`).
    pub kills: usize,
    /// How many times each other fault is injected per backend (`PAYRAIL_SOAK_FAULT_REPEATS`).
    pub fault_repeats: usize,
    /// Tenants, and concurrent clients per tenant (`PAYRAIL_SOAK_WORKERS`, default 2).
    pub tenants: usize,
    pub workers_per_tenant: usize,
    /// Where each backend's JSON line of figures is appended (`PAYRAIL_SOAK_REPORT`), if set.
    pub report: Option<String>,
    /// How long the engine may take to settle once the faults stop.
    pub settle_timeout: Duration,
    /// Keep the run's folder (engine log, SQLite files) even when it passes
    /// (`PAYRAIL_SOAK_KEEP=1`); a failing run always keeps it.
    pub keep: bool,
}

/// Short run: ≥ 20 kills over both backends and every fault once, a few minutes at most.
const SHORT_KILLS: usize = 12;
const SHORT_FAULT_REPEATS: usize = 1;
/// Long run (`PAYRAIL_SOAK_LONG=1`): ≥ 200 kills over both backends.
const LONG_KILLS: usize = 100;
const LONG_FAULT_REPEATS: usize = 4;
const SETTLE_TIMEOUT_SECS: u64 = 60;

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

impl SoakConfig {
    pub fn from_env() -> Self {
        let long = std::env::var("PAYRAIL_SOAK_LONG").is_ok_and(|v| v == "1");
        let seed = env_number("PAYRAIL_SOAK_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        let (kills, repeats) = if long {
            (LONG_KILLS, LONG_FAULT_REPEATS)
        } else {
            (SHORT_KILLS, SHORT_FAULT_REPEATS)
        };
        Self {
            seed,
            kills: env_number("PAYRAIL_SOAK_KILLS").map_or(kills, |n| n as usize),
            fault_repeats: env_number("PAYRAIL_SOAK_FAULT_REPEATS").map_or(repeats, |n| n as usize),
            tenants: 3,
            workers_per_tenant: env_number("PAYRAIL_SOAK_WORKERS").map_or(2, |n| n.max(1) as usize),
            report: std::env::var("PAYRAIL_SOAK_REPORT")
                .ok()
                .filter(|v| !v.is_empty()),
            settle_timeout: Duration::from_secs(SETTLE_TIMEOUT_SECS),
            keep: std::env::var("PAYRAIL_SOAK_KEEP").is_ok_and(|v| v == "1"),
        }
    }
}
