//! Webhook intake per tenant over the last minutes: how many gateway events this process
//! received for the tenant and what became of them (applied, duplicates, ignored, rejected), in
//! 10-second buckets. Kept in memory only, bounded in buckets and in tenants; a restart starts
//! from zero, and each server process counts its own requests. `GET /api/webhooks/intake`
//! answers the caller's tenant.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, TimeZone, Utc};
use payrail_actors::domain::TenantId;
use payrail_actors::engine::WebhookSummary;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::TenantKey;
use super::errors::ApiError;
use super::openapi::{RateLimited, Unauthenticated};
use super::views::ts;
use super::AppState;

/// Width of one bucket.
pub const INTAKE_BUCKET_SECS: i64 = 10;
/// Buckets kept per tenant: 15 minutes.
pub const INTAKE_BUCKETS: usize = 90;
/// Tenants tracked at once; past it the one idle longest is forgotten.
pub const INTAKE_TENANTS_MAX: usize = 4_096;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntakeCounts {
    received: u64,
    applied: u64,
    duplicates: u64,
    ignored: u64,
    rejected: u64,
}

impl IntakeCounts {
    fn add(&mut self, s: &WebhookSummary) {
        self.received += s.received as u64;
        self.applied += s.applied as u64;
        self.duplicates += s.duplicates as u64;
        self.ignored += s.ignored as u64;
        self.rejected += s.rejected as u64;
    }
}

/// A tenant's recent buckets, oldest first, keyed by their start (unix seconds).
#[derive(Default)]
struct Ring {
    buckets: VecDeque<(i64, IntakeCounts)>,
}

#[derive(Default)]
pub struct Intake {
    tenants: Mutex<HashMap<TenantId, Ring>>,
}

fn bucket_start(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(INTAKE_BUCKET_SECS) * INTAKE_BUCKET_SECS
}

impl Intake {
    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, Ring>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one webhook request's outcome for its tenant.
    pub fn record(&self, tenant: TenantId, summary: &WebhookSummary, now: DateTime<Utc>) {
        let start = bucket_start(now);
        let mut tenants = self.lock();
        if !tenants.contains_key(&tenant) && tenants.len() >= INTAKE_TENANTS_MAX {
            let idlest = tenants
                .iter()
                .min_by_key(|(_, ring)| ring.buckets.back().map_or(i64::MIN, |(s, _)| *s))
                .map(|(id, _)| *id);
            if let Some(id) = idlest {
                tenants.remove(&id);
            }
        }
        let ring = tenants.entry(tenant).or_default();
        match ring.buckets.back_mut() {
            Some((s, counts)) if *s == start => counts.add(summary),
            _ => {
                let mut counts = IntakeCounts::default();
                counts.add(summary);
                ring.buckets.push_back((start, counts));
            }
        }
        let oldest = start - INTAKE_BUCKET_SECS * (INTAKE_BUCKETS as i64 - 1);
        while ring.buckets.front().is_some_and(|(s, _)| *s < oldest) {
            ring.buckets.pop_front();
        }
    }

    /// The tenant's last [`INTAKE_BUCKETS`] buckets up to `now`, oldest first, empty ones
    /// included.
    pub fn series(&self, tenant: TenantId, now: DateTime<Utc>) -> Vec<(i64, IntakeCounts)> {
        let last = bucket_start(now);
        let first = last - INTAKE_BUCKET_SECS * (INTAKE_BUCKETS as i64 - 1);
        let tenants = self.lock();
        let recorded: HashMap<i64, IntakeCounts> = tenants
            .get(&tenant)
            .map(|ring| ring.buckets.iter().copied().collect())
            .unwrap_or_default();
        (0..INTAKE_BUCKETS as i64)
            .map(|i| first + i * INTAKE_BUCKET_SECS)
            .map(|start| (start, recorded.get(&start).copied().unwrap_or_default()))
            .collect()
    }
}

/// One bucket of the series.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntakeBucket {
    #[schema(format = DateTime)]
    start: String,
    #[serde(flatten)]
    counts: IntakeCounts,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntakeView {
    bucket_seconds: i64,
    /// Oldest first, ending with the bucket that holds now.
    buckets: Vec<IntakeBucket>,
}

/// The tenant's webhook intake over the last 15 minutes, in 10-second buckets.
///
/// Counted in memory by the server process that answers, since it started: after a restart, or
/// behind a load balancer, it shows what this process received.
#[utoipa::path(
    operation_id = "getWebhookIntake",
    tag = "webhooks",
    security(("apiKey" = [])),
    responses(
        (status = 200, description = "Intake counts per bucket", body = IntakeView),
        Unauthenticated, RateLimited,
    )
)]
#[get("/api/webhooks/intake")]
pub async fn get(auth: TenantKey, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let buckets = state
        .intake
        .series(auth.tenant, state.clock.now())
        .into_iter()
        .map(|(start, counts)| IntakeBucket {
            start: Utc
                .timestamp_opt(start, 0)
                .single()
                .map_or_else(String::new, |t| ts(&t)),
            counts,
        })
        .collect();
    Ok(HttpResponse::Ok().json(IntakeView {
        bucket_seconds: INTAKE_BUCKET_SECS,
        buckets,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(received: usize, applied: usize, duplicates: usize) -> WebhookSummary {
        WebhookSummary {
            received,
            applied,
            duplicates,
            ..WebhookSummary::default()
        }
    }

    #[test]
    fn buckets_add_up_and_age_out() {
        let intake = Intake::default();
        let tenant = TenantId::new();
        let t0 = Utc.timestamp_opt(1_000_000, 0).unwrap();
        intake.record(tenant, &summary(2, 1, 1), t0);
        intake.record(tenant, &summary(1, 1, 0), t0 + chrono::Duration::seconds(3));
        intake.record(
            tenant,
            &summary(5, 5, 0),
            t0 + chrono::Duration::seconds(10),
        );
        let series = intake.series(tenant, t0 + chrono::Duration::seconds(10));
        assert_eq!(series.len(), INTAKE_BUCKETS);
        let (_, last) = series[INTAKE_BUCKETS - 1];
        let (_, before) = series[INTAKE_BUCKETS - 2];
        assert_eq!(
            (before.received, before.applied, before.duplicates),
            (3, 2, 1)
        );
        assert_eq!((last.received, last.applied), (5, 5));
        // 15 minutes later only the newest remains in view, then nothing.
        let later = t0 + chrono::Duration::seconds(10 + INTAKE_BUCKET_SECS * 89);
        let totals: u64 = intake
            .series(tenant, later)
            .iter()
            .map(|(_, c)| c.received)
            .sum();
        assert_eq!(totals, 5);
        assert!(intake
            .series(TenantId::new(), later)
            .iter()
            .all(|(_, c)| c.received == 0));
    }

    #[test]
    fn tenants_are_bounded() {
        let intake = Intake::default();
        let now = Utc.timestamp_opt(1_000_000, 0).unwrap();
        let first = TenantId::new();
        intake.record(first, &summary(1, 1, 0), now);
        for i in 0..INTAKE_TENANTS_MAX {
            let at = now + chrono::Duration::seconds(10 + i as i64);
            intake.record(TenantId::new(), &summary(1, 1, 0), at);
        }
        assert_eq!(intake.lock().len(), INTAKE_TENANTS_MAX);
        assert!(
            !intake.lock().contains_key(&first),
            "the idlest tenant is forgotten"
        );
    }
}
