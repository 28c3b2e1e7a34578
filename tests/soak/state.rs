//! The final state as the API shows it, read once the engine has settled: each tenant's
//! invoices, payments, audit log and every invoice's timeline.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

pub struct TenantState {
    pub invoices: Vec<Value>,
    pub payments: Vec<Value>,
    pub events: Vec<Value>,
    /// Invoice id → its timeline, oldest first.
    pub timelines: HashMap<String, Vec<Value>>,
    /// Refund id → its payment (from each payment's timeline: refund events name only the
    /// refund).
    pub refund_owners: HashMap<String, String>,
}

pub async fn get_json(client: &reqwest::Client, url: &str, key: &str) -> Value {
    for _ in 0..50 {
        if let Ok(answer) = client.get(url).bearer_auth(key).send().await {
            if answer.status() == 200 {
                if let Ok(body) = answer.json::<Value>().await {
                    return body;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("GET {url} kept failing");
}

/// Every item of a page-numbered list.
pub async fn all_pages(client: &reqwest::Client, base: &str, path: &str, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{base}{path}{sep}page={page}&pageSize=100");
        let body = get_json(client, &url, key).await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        out.extend(items);
    }
    out
}

/// The tenant's audit log (`type` filter optional), in sequence order.
pub async fn all_events(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    kind: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let mut url = format!("{base}/api/events?limit=100");
        if let Some(kind) = kind {
            url.push_str(&format!("&type={kind}"));
        }
        if let Some(after) = after {
            url.push_str(&format!("&startingAfter={after}"));
        }
        let body = get_json(client, &url, key).await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        after = items.last().and_then(|e| e["sequence"].as_i64());
        out.extend(items);
        if body["hasMore"] != Value::Bool(true) || after.is_none() {
            return out;
        }
    }
}

pub async fn read(client: &reqwest::Client, base: &str, key: &str) -> TenantState {
    let invoices = all_pages(client, base, "/api/invoices?sort=createdAt", key).await;
    let payments = all_pages(client, base, "/api/payments", key).await;
    let events = all_events(client, base, key, None).await;
    let mut timelines = HashMap::new();
    for invoice in &invoices {
        let id = invoice["id"].as_str().unwrap_or_default().to_owned();
        let body = get_json(client, &format!("{base}/api/invoices/{id}/timeline"), key).await;
        timelines.insert(id, body.as_array().cloned().unwrap_or_default());
    }
    let mut refund_owners = HashMap::new();
    for payment in &payments {
        let id = payment["id"].as_str().unwrap_or_default().to_owned();
        let body = get_json(client, &format!("{base}/api/payments/{id}/timeline"), key).await;
        for event in body.as_array().into_iter().flatten() {
            if let Some(refund) = event["data"]["refundId"].as_str() {
                refund_owners.insert(refund.to_owned(), id.clone());
            }
        }
    }
    TenantState {
        invoices,
        payments,
        events,
        timelines,
        refund_owners,
    }
}

/// Whether nothing is in flight for the tenant: no payment processing, no reservation, every
/// refund answered.
pub async fn settled(client: &reqwest::Client, base: &str, key: &str) -> Result<(), String> {
    let processing = get_json(
        client,
        &format!("{base}/api/payments?status=processing&pageSize=1"),
        key,
    )
    .await;
    if processing["totalItems"].as_i64() != Some(0) {
        return Err(format!("{} payments processing", processing["totalItems"]));
    }
    let pending: i64 = all_pages(client, base, "/api/invoices", key)
        .await
        .iter()
        .map(|i| i["amountPending"].as_i64().unwrap_or(0))
        .sum();
    if pending != 0 {
        return Err(format!("{pending} reserved on invoices"));
    }
    let created = all_events(client, base, key, Some("refund.created"))
        .await
        .len();
    let succeeded = all_events(client, base, key, Some("refund.succeeded"))
        .await
        .len();
    let failed = all_events(client, base, key, Some("refund.failed"))
        .await
        .len();
    if created != succeeded + failed {
        return Err(format!(
            "{} refunds pending",
            created as i64 - (succeeded + failed) as i64
        ));
    }
    Ok(())
}
