//! Timing shared by the benches: each measured routine also records its operations and time here,
//! so a bench can end with one JSON summary line on stdout (criterion's own report goes besides).
//! Totals cover every timed criterion call, warm-up included: a mean, not criterion's estimate.

use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{measurement::WallTime, BenchmarkGroup};

/// Inputs prepared per timed chunk in `bench_batched`: bounds the memory held by one sample.
const SETUP_CHUNK_ITEMS: u64 = 1_024;

struct Total {
    name: String,
    ops: u64,
    elapsed: Duration,
}

static TOTALS: Mutex<Vec<Total>> = Mutex::new(Vec::new());

/// Adds `ops` operations done in `elapsed` to the total of `name`.
pub fn record(name: &str, ops: u64, elapsed: Duration) {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    match totals.iter_mut().find(|t| t.name == name) {
        Some(total) => {
            total.ops += ops;
            total.elapsed += elapsed;
        }
        None => totals.push(Total {
            name: name.to_owned(),
            ops,
            elapsed,
        }),
    }
}

/// Benchmarks `routine` as `group/id` (like `iter`), recording its totals under that name.
/// `group` repeats the group's name: criterion's `BenchmarkGroup` does not expose it.
#[allow(dead_code)] // not every bench uses both forms
pub fn bench<O>(
    criterion_group: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    id: &str,
    mut routine: impl FnMut() -> O,
) {
    let name = format!("{group}/{id}");
    criterion_group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(routine());
            }
            let elapsed = start.elapsed();
            record(&name, iters, elapsed);
            elapsed
        })
    });
}

/// Like `iter_batched`: `setup` builds each input outside the timed section.
#[allow(dead_code)]
pub fn bench_batched<I, O>(
    criterion_group: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    id: &str,
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(I) -> O,
) {
    let name = format!("{group}/{id}");
    criterion_group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(SETUP_CHUNK_ITEMS);
                let inputs: Vec<I> = (0..chunk).map(|_| setup()).collect();
                let start = Instant::now();
                for input in inputs {
                    black_box(routine(input));
                }
                elapsed += start.elapsed();
                left -= chunk;
            }
            record(&name, iters, elapsed);
            elapsed
        })
    });
}

/// Prints `{"bench":…,"results":[{"name","ops","secs","ops_per_sec","ns_per_op"},…]}`.
pub fn print(bench: &str) {
    let totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let results: Vec<_> = totals
        .iter()
        .map(|t| {
            let secs = t.elapsed.as_secs_f64();
            serde_json::json!({
                "name": t.name,
                "ops": t.ops,
                "secs": round(secs, 3),
                "ops_per_sec": round(t.ops as f64 / secs, 0),
                "ns_per_op": round(secs * 1e9 / t.ops as f64, 1),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({ "bench": bench, "results": results })
    );
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}
