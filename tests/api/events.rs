//! The audit log: `type` and `subjectId` filters, cursor paging, and bad parameters.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{problem, TestApp};

both_backends!(
    events_filter_and_page_by_cursor,
    sequence_counts_each_tenants_own_events
);

async fn events(app: &TestApp, key: &str, query: &str) -> Value {
    let response = app
        .get(&format!("/api/events?{query}"), key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().unwrap()
}

async fn events_filter_and_page_by_cursor(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let mut ids = Vec::new();
    for finalize in [true, false, true, false, true] {
        ids.push(
            app.invoice(&t.key, 100, finalize).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let all = events(app, &t.key, "limit=100").await;
    let all_items = items(&all);
    // 1 apikey.created + 5 invoice.created + 3 invoice.finalized.
    assert_eq!(all_items.len(), 9, "{all}");
    assert_eq!(all["hasMore"], false);
    assert!(all["nextCursor"].is_null());
    let sequences: Vec<i64> = all_items
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    // type
    let finalized = events(app, &t.key, "type=invoice.finalized").await;
    assert_eq!(items(&finalized).len(), 3);
    assert!(items(&finalized)
        .iter()
        .all(|e| e["eventType"] == "invoice.finalized"));
    let keys = events(app, &t.key, "type=apikey.created").await;
    assert_eq!(items(&keys).len(), 1);
    assert_eq!(
        items(&events(app, &t.key, "type=invoice.paid").await).len(),
        0
    );
    // subjectId, alone and with type
    let first = events(app, &t.key, &format!("subjectId={}", ids[0])).await;
    let types: Vec<_> = items(&first)
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["invoice.created", "invoice.finalized"]);
    assert!(items(&first)
        .iter()
        .all(|e| e["subjectId"] == ids[0].as_str()));
    let both = events(
        app,
        &t.key,
        &format!("subjectId={}&type=invoice.finalized", ids[1]),
    )
    .await;
    assert_eq!(items(&both).len(), 0);
    assert_eq!(
        items(&events(app, &t.key, "subjectId=inv_unknown").await).len(),
        0
    );
    // Cursor: pages of 2 walk the whole log once, in order.
    let mut walked = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let page = events(app, &t.key, &query).await;
        assert!(items(&page).len() <= 2);
        walked.extend(items(&page).iter().map(|e| e["sequence"].as_i64().unwrap()));
        if page["hasMore"] == false {
            assert!(page["nextCursor"].is_null());
            break;
        }
        let cursor = page["nextCursor"].as_i64().unwrap();
        assert_eq!(Some(&cursor), walked.last());
        query = format!("limit=2&startingAfter={cursor}");
    }
    assert_eq!(walked, sequences);
    // Cursor combined with a filter.
    let head = events(app, &t.key, "type=invoice.created&limit=3").await;
    assert_eq!(
        (items(&head).len(), &head["hasMore"]),
        (3, &Value::Bool(true))
    );
    let tail = events(
        app,
        &t.key,
        &format!(
            "type=invoice.created&limit=3&startingAfter={}",
            head["nextCursor"]
        ),
    )
    .await;
    assert_eq!(
        (items(&tail).len(), &tail["hasMore"]),
        (2, &Value::Bool(false))
    );
    let mut subjects: Vec<_> = items(&head)
        .iter()
        .chain(items(&tail))
        .map(|e| e["subjectId"].as_str().unwrap().to_owned())
        .collect();
    subjects.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(subjects, expected);
    // Bad parameters.
    for bad in [
        "limit=0",
        "limit=101",
        "type=invoice.exploded",
        "startingAfter=abc",
        "colour=red",
    ] {
        problem(
            app.get(&format!("/api/events?{bad}"), &t.key)
                .send()
                .await
                .unwrap(),
            400,
            "invalid_request",
        )
        .await;
    }
}

/// `sequence` is a position in the tenant's own log: 1, 2, 3… whatever other tenants write in
/// between, so it reveals nothing about their volume.
async fn sequence_counts_each_tenants_own_events(app: &TestApp) {
    let a = app.tenant("Acme").await;
    let b = app.tenant("Globex").await;
    for round in 0..3 {
        app.invoice(&a.key, 100, true).await;
        app.invoice(&a.key, 100, false).await;
        if round < 2 {
            app.invoice(&b.key, 100, false).await;
        }
    }
    let create = app
        .post("/api/api-keys", &b.key)
        .json(&serde_json::json!({"name": "ci", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 201);
    for (tenant, expected) in [(&a, 1 + 3 * 3), (&b, 1 + 2 + 1)] {
        let log = events(app, &tenant.key, "limit=100").await;
        let sequences: Vec<i64> = items(&log)
            .iter()
            .map(|e| e["sequence"].as_i64().unwrap())
            .collect();
        assert_eq!(sequences, (1..=expected).collect::<Vec<i64>>(), "{log}");
    }
}
