//! Ramps: steps at rising target rates until one is not sustained, a bisection (or several),
//! then a step at 70% of the highest rate held; or the fixed rates of `--rates`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::driver::{self, StepResult, Watch, Workload};
use crate::options::Options;
use crate::{report, waldump};

/// Steps per ramp with one bisection, at most (doubling, the bisection, then the 70% point);
/// each further bisection adds a step.
const MAX_STEPS: usize = 8;
/// Bisections of the no-op handler's ramp: the generator's ceiling is a figure of its own, and
/// one bisection after a step lost by a hair (say 1.1% of 64,000 requests/s not sent) would
/// report 48,000.
pub(crate) const NOOP_BISECTIONS: usize = 3;

/// Where a ramp starts, and how many times it bisects between its highest sustained step and
/// the first one that was not.
#[derive(Clone, Copy)]
pub(crate) struct Search {
    pub(crate) start: f64,
    pub(crate) bisections: usize,
}

impl From<f64> for Search {
    /// Doubling from `start`, then one bisection.
    fn from(start: f64) -> Self {
        Self {
            start,
            bisections: 1,
        }
    }
}

/// A ramp's outcome: every step, the highest sustained rate and the 70% step.
pub(crate) struct Ramp {
    pub(crate) label: String,
    pub(crate) steps: Vec<StepResult>,
    pub(crate) max_sustained_ops: f64,
    pub(crate) at_70: Option<StepResult>,
}

impl Ramp {
    pub(crate) fn json(&self, scenario: &str, backend: &str, extra: Value) -> Value {
        json!({
            "bench": "load", "scenario": scenario, "backend": backend,
            "steps": self.steps.iter().map(report::step_json).collect::<Vec<_>>(),
            "maxSustainedOpsPerSec": self.max_sustained_ops.round(),
            "at70PctOfMax": self.at_70.as_ref().map(report::step_json),
            "extra": extra,
        })
    }

    pub(crate) fn points(&self) -> Vec<(f64, f64)> {
        let mut points: Vec<(f64, f64)> = self
            .steps
            .iter()
            .chain(self.at_70.as_ref())
            .filter(|s| s.ok_requests > 0)
            .map(|s| (s.achieved_ops(), s.ms(0.99)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points
    }
}

/// A ramp's search for its highest sustained rate: doubling until a step is not held, then
/// bisecting between the highest rate held and the lowest not held, `bisections` times at most.
pub(crate) struct Probe {
    rate: f64,
    best: Option<f64>,
    failed: Option<f64>,
    bisected: usize,
    bisections: usize,
}

impl Probe {
    pub(crate) fn new(search: impl Into<Search>) -> Self {
        let Search { start, bisections } = search.into();
        Self {
            rate: start,
            best: None,
            failed: None,
            bisected: 0,
            bisections,
        }
    }

    /// The rate of the next step.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// The highest rate held so far.
    pub(crate) fn best(&self) -> Option<f64> {
        self.best
    }

    /// Takes whether the step at `rate()` was held; false once the search is over.
    pub(crate) fn step(&mut self, held: bool) -> bool {
        let rate = self.rate;
        let bisect = self.bisected < self.bisections;
        match (held, self.best, self.failed) {
            (true, _, None) => {
                self.best = Some(rate);
                self.rate = rate * 2.0;
            }
            (true, _, Some(failed)) => {
                self.best = Some(rate);
                if !bisect {
                    return false;
                }
                self.bisected += 1;
                self.rate = (rate + failed) / 2.0;
            }
            (false, Some(best), failed) if bisect && (failed.is_some() || rate / best > 1.3) => {
                self.failed = Some(rate);
                self.bisected += 1;
                self.rate = (best + rate) / 2.0;
            }
            _ => return false,
        }
        true
    }
}

/// Doubles the rate until a step is not sustained, bisects (once unless `search` says
/// otherwise), then runs at 70% of the highest sustained rate.
pub(crate) async fn ramp(
    label: &str,
    client: &reqwest::Client,
    workload: Arc<dyn Workload>,
    search: impl Into<Search>,
    watch: Watch,
    o: &Options,
    engine_url: Option<&str>,
) -> Ramp {
    let search = search.into();
    let mut steps = Vec::new();
    let mut probe = Probe::new(search);
    let mut next = 0u64;
    if !o.rates.is_empty() {
        for &rate in &o.rates {
            if !seed_covers(label, &workload, rate, o) {
                break;
            }
            let step = measured_step(client, &workload, next, rate, watch, o, engine_url).await;
            next += (rate * o.step.as_secs_f64()) as u64 + 1;
            report::print_step(&format!("{label} @{rate:.0}/s"), &step);
            steps.push(step);
        }
    }
    let max_steps = MAX_STEPS + search.bisections.saturating_sub(1);
    for _ in 0..if o.rates.is_empty() { max_steps } else { 0 } {
        let rate = probe.rate();
        if !seed_covers(label, &workload, rate, o) {
            break;
        }
        let step = measured_step(client, &workload, next, rate, watch, o, engine_url).await;
        next += (rate * o.step.as_secs_f64()) as u64 + 1;
        report::print_step(&format!("{label} @{rate:.0}/s"), &step);
        let ok = step.sustained();
        steps.push(step);
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !probe.step(ok) {
            break;
        }
    }
    let max_sustained_ops = steps
        .iter()
        .filter(|s| s.sustained())
        .map(StepResult::achieved_ops)
        .fold(0.0, f64::max);
    let at_70 = match probe
        .best()
        .filter(|&b| o.rates.is_empty() && seed_covers(label, &workload, 0.7 * b, o))
    {
        Some(b) => {
            let step = measured_step(client, &workload, next, 0.7 * b, watch, o, engine_url).await;
            report::print_step(&format!("{label} @70% {:.0}/s", 0.7 * b), &step);
            Some(step)
        }
        None => None,
    };
    Ramp {
        label: label.to_owned(),
        steps,
        max_sustained_ops,
        at_70,
    }
}

/// Whether the seed still holds enough fresh payments for a step at `rate`; a step past that
/// would measure stale events (cheap no-ops), so the ramp stops there and says so.
pub(crate) fn seed_covers(
    label: &str,
    workload: &Arc<dyn Workload>,
    rate: f64,
    o: &Options,
) -> bool {
    let needed = (rate * o.step.as_secs_f64()).ceil() as u64;
    match workload.requests_left() {
        Some(left) if left < needed => {
            eprintln!(
                "{label}: stopping before {rate:.0}/s: the seed has fresh events for {left} more \
                 requests, the step needs {needed} (raise --payments)"
            );
            false
        }
        _ => true,
    }
}

/// One step, with the engine's commit counters scraped around it.
pub(crate) async fn measured_step(
    client: &reqwest::Client,
    workload: &Arc<dyn Workload>,
    first: u64,
    rate: f64,
    watch: Watch,
    o: &Options,
    engine_url: Option<&str>,
) -> StepResult {
    let before = match engine_url {
        Some(url) => driver::counters(client, url).await,
        None => Default::default(),
    };
    let mut step =
        driver::run_step(workload.clone(), first, rate, o.step, o.in_flight, watch).await;
    if let Some(url) = engine_url {
        step.commit = driver::commit_stats(&before, &driver::counters(client, url).await);
    }
    if let (true, Some(port), Some((start, end))) = (o.wal_detail, watch.pg_port, step.wal_range) {
        match waldump::breakdown(port, start, end) {
            Some(shares) => {
                waldump::print(&format!("@{rate:.0}/s"), &shares, step.wal_events());
                step.wal_detail = Some(waldump::to_json(&shares, step.wal_events()));
            }
            None => eprintln!("@{rate:.0}/s: pg_waldump could not read the step's WAL"),
        }
    }
    step
}
