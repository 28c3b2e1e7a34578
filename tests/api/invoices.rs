//! Invoice state machine over HTTP: what each state refuses (409 `invalid_state`), partial
//! edits of drafts, and paying an uncollectible invoice.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{problem, TestApp};

both_backends!(
    state_machine_refuses_invalid_transitions,
    patch_edits_drafts_partially_and_recomputes_totals,
    uncollectible_invoices_can_still_be_paid,
    concurrent_patches_of_different_fields_both_land,
    a_patch_made_on_a_stale_read_is_a_conflict,
);

async fn post(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.post(path, key).send().await.unwrap()
}

async fn state_machine_refuses_invalid_transitions(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let open = app.invoice(&t.key, 100, true).await;
    let id = open["id"].as_str().unwrap();
    // An open invoice can be neither finalized again nor edited.
    let body = problem(
        post(app, &t.key, &format!("/api/invoices/{id}/finalize")).await,
        409,
        "invalid_state",
    )
    .await;
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    problem(
        app.client
            .patch(format!("{}/api/invoices/{id}", app.url))
            .bearer_auth(&t.key)
            .json(&json!({"customerName": "Someone else"}))
            .send()
            .await
            .unwrap(),
        409,
        "invalid_state",
    )
    .await;
    // A draft can't be voided or marked uncollectible.
    let draft = app.invoice(&t.key, 100, false).await;
    let draft_id = draft["id"].as_str().unwrap();
    for action in ["void", "mark-uncollectible"] {
        problem(
            post(app, &t.key, &format!("/api/invoices/{draft_id}/{action}")).await,
            409,
            "invalid_state",
        )
        .await;
    }
    // Paid is final: no void, no second payment.
    let paid = app.pay(&t.key, id, "4242424242424242", None).await;
    assert_eq!(paid.status(), 201);
    app.eventually(&format!("/api/invoices/{id}"), &t.key, |i| {
        i["status"] == "paid"
    })
    .await;
    for action in ["void", "mark-uncollectible", "finalize"] {
        problem(
            post(app, &t.key, &format!("/api/invoices/{id}/{action}")).await,
            409,
            "invalid_state",
        )
        .await;
    }
    problem(
        app.pay(&t.key, id, "4242424242424242", Some(1)).await,
        409,
        "invalid_state",
    )
    .await;
    // A voided invoice takes no payment.
    let to_void = app.invoice(&t.key, 100, true).await;
    let void_id = to_void["id"].as_str().unwrap();
    let voided: Value = post(app, &t.key, &format!("/api/invoices/{void_id}/void"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(voided["status"], "void");
    assert!(voided["voidedAt"].is_string());
    problem(
        app.pay(&t.key, void_id, "4242424242424242", None).await,
        409,
        "invalid_state",
    )
    .await;
    // Nothing above changed the paid invoice.
    let now = app
        .get_json::<Value>(&format!("/api/invoices/{id}"), &t.key)
        .await;
    assert_eq!(
        (now["status"].as_str(), now["amountPaid"].as_i64()),
        (Some("paid"), Some(330))
    );
}

async fn patch(app: &TestApp, key: &str, id: &str, body: Value) -> reqwest::Response {
    app.client
        .patch(format!("{}/api/invoices/{id}", app.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn patch_edits_drafts_partially_and_recomputes_totals(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let draft = app.invoice(&t.key, 1_000, false).await;
    let id = draft["id"].as_str().unwrap();
    assert_eq!(
        (draft["total"].as_i64(), draft["status"].as_str()),
        (Some(3_300), Some("draft"))
    );
    // One field: the others keep their values.
    let renamed = patch(app, &t.key, id, json!({"customerName": "John Roe"})).await;
    assert_eq!(renamed.status(), 200);
    let renamed: Value = renamed.json().await.unwrap();
    assert_eq!(renamed["customerName"], "John Roe");
    for field in [
        "customerEmail",
        "currency",
        "lineItems",
        "subtotal",
        "taxRateBps",
        "tax",
        "total",
        "number",
        "createdAt",
    ] {
        assert_eq!(renamed[field], draft[field], "{field} changed");
    }
    assert!(renamed["version"].as_u64() > draft["version"].as_u64());
    // New lines and rate: totals are recomputed (tax rounds half to even).
    let relined: Value = patch(
        app,
        &t.key,
        id,
        json!({"lineItems": [{"description": "A", "quantity": 2, "unitAmount": 125},
                             {"description": "B", "quantity": 1, "unitAmount": 5}],
               "taxRateBps": 200}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(relined["lineItems"][0]["amount"], 250);
    assert_eq!(relined["lineItems"][1]["amount"], 5);
    // 255 × 2 % = 5.1 → 5.
    assert_eq!(
        (
            relined["subtotal"].as_i64(),
            relined["tax"].as_i64(),
            relined["total"].as_i64()
        ),
        (Some(255), Some(5), Some(260))
    );
    assert_eq!(relined["amountRemaining"], 260);
    assert_eq!(relined["customerName"], "John Roe");
    // Clearing an optional field with null.
    let cleared: Value = patch(
        app,
        &t.key,
        id,
        json!({"customerEmail": null, "dueDate": "2030-01-31"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(cleared["customerEmail"].is_null());
    assert_eq!(cleared["dueDate"], "2030-01-31");
    // What was stored is what GET shows.
    let stored = app
        .get_json::<Value>(&format!("/api/invoices/{id}"), &t.key)
        .await;
    assert_eq!(stored, cleared);
    // Unknown fields and rule violations are refused and change nothing.
    problem(
        patch(app, &t.key, id, json!({"colour": "red"})).await,
        400,
        "invalid_request",
    )
    .await;
    problem(
        patch(app, &t.key, id, json!({"lineItems": []})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(
        app.get_json::<Value>(&format!("/api/invoices/{id}"), &t.key)
            .await,
        cleared
    );
    // The timeline records each edit.
    let timeline = app
        .get_json::<Value>(&format!("/api/invoices/{id}/timeline"), &t.key)
        .await;
    let updates = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["eventType"] == "invoice.updated")
        .count();
    assert_eq!(updates, 3);
    // The finalized edit is what gets paid.
    let open: Value = post(app, &t.key, &format!("/api/invoices/{id}/finalize"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (open["status"].as_str(), open["total"].as_i64()),
        (Some("open"), Some(260))
    );
}

async fn uncollectible_invoices_can_still_be_paid(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let open = app.invoice(&t.key, 100, true).await;
    let id = open["id"].as_str().unwrap();
    let marked: Value = post(
        app,
        &t.key,
        &format!("/api/invoices/{id}/mark-uncollectible"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(marked["status"], "uncollectible");
    // Marking twice is refused.
    problem(
        post(
            app,
            &t.key,
            &format!("/api/invoices/{id}/mark-uncollectible"),
        )
        .await,
        409,
        "invalid_state",
    )
    .await;
    // Too much is still refused; the right amount pays it.
    problem(
        app.pay(&t.key, id, "4242424242424242", Some(331)).await,
        422,
        "amount_exceeds_remaining",
    )
    .await;
    let payment = app.pay(&t.key, id, "4242424242424242", None).await;
    assert_eq!(payment.status(), 201);
    let paid = app
        .eventually(&format!("/api/invoices/{id}"), &t.key, |i| {
            i["status"] == "paid"
        })
        .await;
    assert_eq!(
        (
            paid["amountPaid"].as_i64(),
            paid["amountRemaining"].as_i64()
        ),
        (Some(330), Some(0))
    );
    assert!(paid["paidAt"].is_string());
    let timeline = app
        .get_json::<Value>(&format!("/api/invoices/{id}/timeline"), &t.key)
        .await;
    let types: Vec<_> = timeline
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap().to_owned())
        .collect();
    let position = |ty: &str| {
        types
            .iter()
            .position(|t| t == ty)
            .unwrap_or_else(|| panic!("{ty} missing: {types:?}"))
    };
    assert!(position("invoice.marked_uncollectible") < position("invoice.paid"));
}

/// Each PATCH is merged with the invoice inside its actor: edits of different fields sent at
/// the same moment all land, whatever order they run in.
async fn concurrent_patches_of_different_fields_both_land(app: &TestApp) {
    let t = app.tenant("Acme").await;
    for round in 0..8 {
        let draft = app.invoice(&t.key, 1_000, false).await;
        let id = draft["id"].as_str().unwrap();
        let name = format!("Name {round}");
        let (a, b, c) = tokio::join!(
            patch(app, &t.key, id, json!({"customerName": name})),
            patch(
                app,
                &t.key,
                id,
                json!({"metadata": {"round": round.to_string()}})
            ),
            patch(app, &t.key, id, json!({"taxRateBps": 500})),
        );
        let statuses = [a.status(), b.status(), c.status()].map(|s| s.as_u16());
        assert_eq!(statuses, [200, 200, 200]);
        let merged: Value = app.get_json(&format!("/api/invoices/{id}"), &t.key).await;
        assert_eq!(merged["customerName"], name.as_str(), "{merged}");
        assert_eq!(merged["metadata"]["round"], round.to_string(), "{merged}");
        assert_eq!(merged["taxRateBps"], 500, "{merged}");
        assert_eq!(merged["version"], 4);
    }
}

/// With `version`, an edit made on a stale read is refused instead of overwriting.
async fn a_patch_made_on_a_stale_read_is_a_conflict(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let draft = app.invoice(&t.key, 1_000, false).await;
    let id = draft["id"].as_str().unwrap();
    let read = draft["version"].as_i64().unwrap();
    let first = patch(
        app,
        &t.key,
        id,
        json!({"customerName": "A", "version": read}),
    )
    .await;
    assert_eq!(first.status(), 200);
    let stale = patch(
        app,
        &t.key,
        id,
        json!({"customerName": "B", "version": read}),
    )
    .await;
    problem(stale, 409, "version_conflict").await;
    let now: Value = app.get_json(&format!("/api/invoices/{id}"), &t.key).await;
    assert_eq!(now["customerName"], "A");
    let fresh = patch(
        app,
        &t.key,
        id,
        json!({"customerName": "B", "version": now["version"]}),
    )
    .await;
    assert_eq!(fresh.status(), 200);
}
