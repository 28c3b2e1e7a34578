//! Prometheus metrics: request counts and latency by route and status, plus the engine's own
//! counters and gauges, rendered at scrape time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::http::Method;
use payrail_actors::engine::WriterSnapshot;
use payrail_actors::metrics::{EngineMetrics, BATCH_SIZE_BOUNDS};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The route label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The method label: the standard methods by name, anything else as `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "OTHER",
    }
}

pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    auth_failures: IntCounterVec,
    rate_limited: IntCounterVec,
    limiter_entries: IntGaugeVec,
}

impl HttpMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "payrail_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "payrail_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "route"],
        )?;
        // Labels of the three below come from fixed sets in `auth`.
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "payrail_auth_failures_total",
                "Failed authentications by reason",
            ),
            &["reason"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "payrail_rate_limited_total",
                "Requests answered 429 by the budget that refused them",
            ),
            &["scope"],
        )?;
        let limiter_entries = IntGaugeVec::new(
            Opts::new(
                "payrail_rate_limiter_entries",
                "Entries held by each rate limiter table after its last sweep",
            ),
            &["table"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(limiter_entries.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            auth_failures,
            rate_limited,
            limiter_entries,
        })
    }

    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    pub fn rate_limited(&self, scope: &'static str) {
        self.rate_limited.with_label_values(&[scope]).inc();
    }

    pub fn limiter_entries(&self, sizes: &[(&'static str, usize)]) {
        for (table, entries) in sizes {
            let entries = i64::try_from(*entries).unwrap_or(i64::MAX);
            self.limiter_entries
                .with_label_values(&[table])
                .set(entries);
        }
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition: HTTP series from the registry, engine series appended.
    pub fn render(
        &self,
        engine: &EngineMetrics,
        writers: &[WriterSnapshot],
        pool: Option<(usize, usize)>,
    ) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        let mut out = String::from_utf8(buffer).unwrap_or_default();
        let counters = [
            (
                "payrail_commit_batches_total",
                "Group commits",
                &engine.batches_committed,
            ),
            (
                "payrail_commit_units_total",
                "Units committed",
                &engine.units_committed,
            ),
            (
                "payrail_commit_units_failed_total",
                "Units refused by storage",
                &engine.units_failed,
            ),
            (
                "payrail_commit_events_total",
                "Events committed",
                &engine.events_committed,
            ),
            (
                "payrail_commit_duration_microseconds_total",
                "Time spent in group commits",
                &engine.commit_micros_total,
            ),
            (
                "payrail_actor_passivations_total",
                "Entity actors passivated",
                &engine.passivations,
            ),
            (
                "payrail_actor_restarts_total",
                "Requests that found their actor dead",
                &engine.actor_restarts,
            ),
            (
                "payrail_invoice_leases_total",
                "Invoice actors lent to payment actors",
                &engine.invoice_leases,
            ),
            (
                "payrail_overloaded_total",
                "Commands refused as overloaded",
                &engine.overloaded,
            ),
            (
                "payrail_gateway_calls_total",
                "Calls to the gateway",
                &engine.gateway_calls,
            ),
            (
                "payrail_gateway_retries_total",
                "Gateway calls retried in the background",
                &engine.gateway_retries,
            ),
            (
                "payrail_gateway_calls_queued_total",
                "Charges and refunds that waited in line because every gateway task was busy",
                &engine.gateway_calls_queued,
            ),
            (
                "payrail_gateway_calls_deferred_total",
                "Charges and refunds left to the recovery sweep because every gateway task was busy and the line was full",
                &engine.gateway_calls_deferred,
            ),
        ];
        for (name, help, counter) in counters {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                counter.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP payrail_webhook_events_total Gateway events by outcome\n# TYPE payrail_webhook_events_total counter\n");
        for (outcome, counter) in [
            ("applied", &engine.webhook_applied),
            ("duplicate", &engine.webhook_duplicates),
            ("ignored", &engine.webhook_ignored),
            ("rejected", &engine.webhook_rejected),
        ] {
            out.push_str(&format!(
                "payrail_webhook_events_total{{outcome=\"{outcome}\"}} {}\n",
                counter.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP payrail_active_actors Live actors by kind\n# TYPE payrail_active_actors gauge\n");
        for (kind, gauge) in [
            ("invoice", &engine.active_invoice_actors),
            ("payment", &engine.active_payment_actors),
            ("supervisor", &engine.active_supervisors),
        ] {
            out.push_str(&format!(
                "payrail_active_actors{{kind=\"{kind}\"}} {}\n",
                gauge.load(Ordering::Relaxed)
            ));
        }
        let gauges = [
            (
                "payrail_audit_queue_depth",
                "Units queued or in flight at the audit writers",
                &engine.audit_queue_depth,
            ),
            (
                "payrail_commands_in_flight",
                "Engine commands in flight",
                &engine.commands_in_flight,
            ),
            (
                "payrail_charges_awaiting_gateway",
                "Charges being sent to the gateway",
                &engine.charges_awaiting_gateway,
            ),
            (
                "payrail_gateway_tasks",
                "Charge and refund calls to the gateway running now",
                &engine.gateway_tasks,
            ),
            (
                "payrail_recovery_backlog",
                "Payments awaiting a charge and refunds awaiting an outcome, as the last recovery sweep found them",
                &engine.recovery_backlog,
            ),
        ];
        for (name, help, gauge) in gauges {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}\n",
                gauge.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP payrail_commit_batch_units Units per group commit\n# TYPE payrail_commit_batch_units histogram\n");
        let mut cumulative = 0;
        for (i, bucket) in engine.batch_size_buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = BATCH_SIZE_BOUNDS
                .get(i)
                .map_or("+Inf".to_owned(), u64::to_string);
            out.push_str(&format!(
                "payrail_commit_batch_units_bucket{{le=\"{le}\"}} {cumulative}\n"
            ));
        }
        out.push_str(&format!("payrail_commit_batch_units_count {cumulative}\n"));
        out.push_str(&writer_series(writers));
        if let Some((size, available)) = pool {
            out.push_str(&format!(
                "# HELP payrail_db_pool_connections Database pool connections\n# TYPE payrail_db_pool_connections gauge\npayrail_db_pool_connections{{state=\"size\"}} {size}\npayrail_db_pool_connections{{state=\"available\"}} {available}\n"
            ));
        }
        out
    }
}

/// Each audit writer's share of the commit counters and its queue, labelled by its index: a
/// tenant always goes to the same writer, so uneven shares show uneven tenants.
fn writer_series(writers: &[WriterSnapshot]) -> String {
    type Series = (
        &'static str,
        &'static str,
        &'static str,
        fn(&WriterSnapshot) -> u64,
    );
    let series: [Series; 4] = [
        (
            "payrail_audit_writer_batches_total",
            "counter",
            "Group commits, by audit writer",
            |w| w.batches,
        ),
        (
            "payrail_audit_writer_units_total",
            "counter",
            "Units committed, by audit writer",
            |w| w.units,
        ),
        (
            "payrail_audit_writer_commit_duration_microseconds_total",
            "counter",
            "Time spent in group commits, by audit writer",
            |w| w.commit_micros,
        ),
        (
            "payrail_audit_writer_queued",
            "gauge",
            "Units queued on an audit writer and not yet resolved",
            |w| w.queued as u64,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in series {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (i, writer) in writers.iter().enumerate() {
            out.push_str(&format!("{name}{{writer=\"{i}\"}} {}\n", value(writer)));
        }
    }
    out
}
