//! Reporting: a human table per step on stderr, one JSON line per scenario on stdout, and the
//! throughput-vs-latency plot (SVG).

use std::path::Path;

use plotters::prelude::*;
use serde_json::{json, Value};

use crate::driver::StepResult;

/// A plotted line: its label and (achieved ops/s, p99 ms) points.
pub type Series = (String, Vec<(f64, f64)>);

pub fn step_json(s: &StepResult) -> Value {
    json!({
        "targetRps": s.target_rps.round(),
        "achievedRps": round1(s.achieved_rps()),
        "achievedOpsPerSec": round1(s.achieved_ops()),
        "sent": s.sent, "ok": s.ok_requests, "errors": s.errors,
        "latencyMs": {"p50": s.ms(0.5), "p90": s.ms(0.9), "p99": s.ms(0.99),
                      "p999": s.ms(0.999), "max": s.hist.max() as f64 / 1_000.0},
        // To 0.1 µs per operation: a change of the engine's cost by a few percent shows.
        "cpuSecPer1kOps": {"engine": round4(s.per_kop(s.server_cpu_s)),
                           "postgres": round4(s.per_kop(s.db_cpu_s)),
                           "loadGenerator": round4(s.per_kop(s.client_cpu_s))},
        "engineUsPerAppliedEvent": s.engine_us_per_applied().map(round1),
        "engineRssMib": round1(s.server_rss_mib),
        "walBytesPerAppliedEvent": s.wal_per_event().map(|b| b.round()),
        "walByRelation": s.wal_detail,
        "webhookOutcomes": {"applied": s.outcomes[0], "duplicates": s.outcomes[1],
                            "ignored": s.outcomes[2], "rejected": s.outcomes[3]},
        "sustained": s.sustained(),
        "groupCommit": s.commit.as_ref().map(|c| json!({
            "batches": c.batches, "unitsPerBatch": round1(c.units_per_batch()),
            "eventsPerBatch": round1(c.events / c.batches.max(1.0)),
            "msPerBatch": round3(c.ms_per_batch()),
            "writersBusy": c.writers_busy(s.elapsed_s).map(round3).collect::<Vec<_>>()})),
        "engineThreads": threads_json(s),
    })
}

/// Per kind of engine thread: its CPU per operation and per applied event, in µs, and its
/// context switches per second.
fn threads_json(s: &StepResult) -> Value {
    s.threads
        .iter()
        .map(|(group, used)| {
            let usage = json!({
                "cpuUsPerOp": round3(s.us_per_op(used.cpu_s)),
                "cpuUsPerApplied": s.us_per_applied(used.cpu_s).map(round1),
                "switchesPerSec": {"voluntary": round1(s.per_sec(used.voluntary)),
                                   "involuntary": round1(s.per_sec(used.involuntary))},
            });
            (group.clone(), usage)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

pub fn print_step(label: &str, s: &StepResult) {
    eprintln!(
        "{label:<28} target {:>7.0}/s  ok {:>8.0} req/s {:>9.0} ops/s  p50 {:>7.2}  p90 {:>7.2}  \
         p99 {:>8.2}  p99.9 {:>8.2}  max {:>8.2} ms  errors {:?}  cpu/1k ops: engine {:.4}s db {:.4}s \
         gen {:.4}s  rss {:.0} MiB{}",
        s.target_rps,
        s.achieved_rps(),
        s.achieved_ops(),
        s.ms(0.5),
        s.ms(0.9),
        s.ms(0.99),
        s.ms(0.999),
        s.hist.max() as f64 / 1_000.0,
        s.errors,
        s.per_kop(s.server_cpu_s),
        s.per_kop(s.db_cpu_s),
        s.per_kop(s.client_cpu_s),
        s.server_rss_mib,
        s.wal_per_event()
            .map_or_else(String::new, |b| format!("  wal {b:.0} B/applied event")),
    );
    if let Some(c) = &s.commit {
        let webhooks: u64 = s.outcomes.iter().sum();
        let applied = if webhooks == 0 {
            String::new()
        } else {
            format!(
                ", webhooks applied {:.0}% (duplicates {:.0}%, stale {:.0}%), engine {:.1} µs per applied",
                100.0 * s.outcomes[0] as f64 / webhooks as f64,
                100.0 * s.outcomes[1] as f64 / webhooks as f64,
                100.0 * s.outcomes[2] as f64 / webhooks as f64,
                s.engine_us_per_applied().unwrap_or(0.0),
            )
        };
        let busy: Vec<String> = c
            .writers_busy(s.elapsed_s)
            .map(|share| format!("{:.0}%", 100.0 * share))
            .collect();
        eprintln!(
            "{:<28} group commit: {:.0} batches, {:.1} units/batch, {:.2} ms/batch, writers busy {}{applied}",
            "",
            c.batches,
            c.units_per_batch(),
            c.ms_per_batch(),
            busy.join(" / ")
        );
    }
    // The engine's threads that used at least 1% of its CPU.
    let busy: Vec<String> = s
        .threads
        .iter()
        .filter(|(_, used)| used.cpu_s >= 0.01 * s.server_cpu_s && used.cpu_s > 0.0)
        .map(|(group, used)| {
            let per = s.us_per_applied(used.cpu_s).map_or_else(
                || format!("{:.1} µs/op", s.us_per_op(used.cpu_s)),
                |us| format!("{us:.1} µs/applied"),
            );
            let switches = s.per_sec(used.voluntary + used.involuntary);
            format!("{group} {per}, {switches:.0} switches/s")
        })
        .collect();
    if !busy.is_empty() {
        eprintln!("{:<28} engine threads: {}", "", busy.join("; "));
    }
}

/// The plot's series from saved JSON lines (this bench's stdout): one per scenario and backend,
/// its steps and 70% point as (achieved ops/s, p99 ms).
pub fn series_from_json_lines(path: &Path) -> anyhow::Result<Vec<Series>> {
    let mut series = Vec::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(steps) = v["steps"].as_array() else {
            continue;
        };
        let point = |s: &Value| {
            Some((
                s["achievedOpsPerSec"].as_f64()?,
                s["latencyMs"]["p99"].as_f64()?,
            ))
        };
        let mut points: Vec<(f64, f64)> = steps
            .iter()
            .chain(std::iter::once(&v["at70PctOfMax"]))
            .filter_map(point)
            .filter(|p| p.0 > 0.0)
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (scenario, backend) = (
            v["scenario"].as_str().unwrap_or("?"),
            v["backend"].as_str().unwrap_or("?"),
        );
        let label = match (scenario, backend) {
            ("noop", _) => "noop (HTTP ceiling)".to_owned(),
            ("webhooks-group-commit-disabled", b) => format!("{b} webhooks, group commit off"),
            (s, b) => format!("{b} {s}"),
        };
        series.push((label, points));
    }
    Ok(series)
}

/// One line per series: achieved ops/s (x) against p99 latency in ms (y, log scale).
pub fn plot(path: &Path, series: &[Series]) -> anyhow::Result<()> {
    let max_x = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_y = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(10.0, f64::max);
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Payrail load: achieved throughput vs p99 latency (open loop)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x * 1.05, (0.1..max_y * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("achieved operations/s (events/s for webhooks)")
        .y_desc("p99 latency, ms (log)")
        .draw()?;
    for (n, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(n).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(x, y)| (x, y.max(0.1))),
                color.stroke_width(2),
            ))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(
            points
                .iter()
                .map(|&(x, y)| Circle::new((x, y.max(0.1)), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
