//! The dispatcher's metrics: deliveries by outcome, attempts by answer, and per endpoint the
//! backlog and the age of its oldest undelivered event. Rendered as Prometheus text.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use payrail_actors::domain::{EndpointId, TenantId};

use crate::store::{AttemptRow, AttemptStatus};

/// Answer classes of attempts (the `result` label).
const RESULTS: [&str; 6] = ["2xx", "3xx", "4xx", "5xx", "timeout", "error"];

#[derive(Default)]
pub struct OutboundMetrics {
    succeeded: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    attempts: [AtomicU64; RESULTS.len()],
    endpoints: Mutex<HashMap<EndpointId, Gauges>>,
    /// Endpoints whose delivery lease this node holds.
    leased: Mutex<HashSet<EndpointId>>,
}

#[derive(Clone, Copy)]
struct Gauges {
    tenant: TenantId,
    backlog: i64,
    oldest: Option<DateTime<Utc>>,
}

fn result_of(a: &AttemptRow) -> usize {
    match (a.response_status, a.response_body.as_deref()) {
        (Some(s), _) if (200..300).contains(&s) => 0,
        (Some(s), _) if s < 400 => 1,
        (Some(s), _) if s < 500 => 2,
        (Some(_), _) => 3,
        (None, Some("timeout")) => 4,
        (None, _) => 5,
    }
}

impl OutboundMetrics {
    pub fn count_round(&self, attempts: &[AttemptRow]) {
        for a in attempts {
            let outcome = match a.status {
                AttemptStatus::Succeeded => &self.succeeded,
                AttemptStatus::Pending => &self.retried,
                AttemptStatus::Failed => &self.failed,
            };
            outcome.fetch_add(1, Ordering::Relaxed);
            self.attempts[result_of(a)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn backlog(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
        backlog: i64,
        oldest: Option<DateTime<Utc>>,
    ) {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            endpoint,
            Gauges {
                tenant,
                backlog,
                oldest,
            },
        );
    }

    /// Drops an endpoint's gauges (deleted, disabled, or its lease held by another node).
    pub fn forget(&self, endpoint: EndpointId) {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&endpoint);
        drop(map);
        let mut leased = self.leased.lock().unwrap_or_else(|e| e.into_inner());
        leased.remove(&endpoint);
    }

    /// This node took the endpoint's delivery lease.
    pub fn leased(&self, endpoint: EndpointId) {
        let mut leased = self.leased.lock().unwrap_or_else(|e| e.into_inner());
        leased.insert(endpoint);
    }

    pub fn render(&self, now: DateTime<Utc>) -> String {
        let mut out = String::from(
            "# HELP payrail_outbound_deliveries_total Outbound webhook attempts by delivery outcome (succeeded, retry scheduled, failed for good)\n# TYPE payrail_outbound_deliveries_total counter\n",
        );
        for (outcome, counter) in [
            ("succeeded", &self.succeeded),
            ("retry_scheduled", &self.retried),
            ("failed", &self.failed),
        ] {
            out.push_str(&format!(
                "payrail_outbound_deliveries_total{{outcome=\"{outcome}\"}} {}\n",
                counter.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP payrail_outbound_attempts_total Outbound webhook attempts by answer\n# TYPE payrail_outbound_attempts_total counter\n");
        for (result, counter) in RESULTS.iter().zip(&self.attempts) {
            out.push_str(&format!(
                "payrail_outbound_attempts_total{{result=\"{result}\"}} {}\n",
                counter.load(Ordering::Relaxed)
            ));
        }
        let leased = self.leased.lock().unwrap_or_else(|e| e.into_inner()).len();
        out.push_str(&format!("# HELP payrail_outbound_leases_held Endpoints whose delivery this node holds the lease of\n# TYPE payrail_outbound_leases_held gauge\npayrail_outbound_leases_held {leased}\n"));
        let map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let sorted: BTreeMap<String, Gauges> =
            map.iter().map(|(id, g)| (id.to_string(), *g)).collect();
        drop(map);
        out.push_str("# HELP payrail_outbound_backlog Events not yet delivered per endpoint (past its cursor or awaiting a retry)\n# TYPE payrail_outbound_backlog gauge\n");
        for (id, g) in &sorted {
            out.push_str(&format!(
                "payrail_outbound_backlog{{tenant=\"{}\",endpoint=\"{id}\"}} {}\n",
                g.tenant, g.backlog
            ));
        }
        out.push_str("# HELP payrail_outbound_oldest_undelivered_seconds Age of the oldest undelivered event per endpoint\n# TYPE payrail_outbound_oldest_undelivered_seconds gauge\n");
        for (id, g) in &sorted {
            let age = g.oldest.map_or(0.0, |at| {
                (now - at).num_milliseconds().max(0) as f64 / 1_000.0
            });
            out.push_str(&format!(
                "payrail_outbound_oldest_undelivered_seconds{{tenant=\"{}\",endpoint=\"{id}\"}} {age}\n",
                g.tenant
            ));
        }
        out
    }
}
