//! Tenants, API keys and stored admin responses on SQLite and PostgreSQL: rows round-trip with
//! their secrets sealed, rotation keeps the previous secret for its overlap, and a response
//! is kept only with the effect it describes.

use chrono::{DateTime, Utc};
use payrail_actors::domain::{ApiKeyId, Event, EventData, StreamId, TenantId};
use payrail_actors::ports::{EventStore, IdempotencyRecord, StoreError};
use secrecy::{ExposeSecret, SecretString};

use super::fixtures::*;
use crate::store::{ApiKeyRow, Db, ScopedResponse, TenantRow, PLATFORM_SCOPE};

on_both!(tenants_and_api_keys);
on_both!(admin_responses_are_kept_with_their_effect);
on_both!(responses_looked_up_together_each_find_their_own);

pub(super) fn api_key(tenant: TenantId, name: &str, created_at: i64) -> (ApiKeyRow, Event) {
    let key = ApiKeyRow {
        tenant_id: tenant,
        id: ApiKeyId::new(),
        name: name.into(),
        role: "operator".into(),
        secret_hash: format!("hash of {name}"),
        created_at: at(created_at),
        revoked_at: None,
    };
    let created = event(
        tenant,
        StreamId::ApiKey(key.id),
        1,
        None,
        EventData::ApiKeyCreated {
            name: name.into(),
            role: "operator".into(),
        },
        at(created_at),
    );
    (key, created)
}

fn tenant_row(i: i64) -> TenantRow {
    TenantRow {
        id: TenantId::new(),
        name: format!("T{i}"),
        webhook_secret: format!("whsec_{i}").into(),
        previous_webhook_secret: None,
        previous_valid_until: None,
        created_at: at(i),
    }
}

/// A tenant row with its secrets exposed, to compare.
fn plain(t: &TenantRow) -> (TenantId, String, String, Option<String>) {
    (
        t.id,
        t.name.clone(),
        t.webhook_secret.expose_secret().to_owned(),
        t.previous_webhook_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
    )
}

type Secrets = Option<(SecretString, Option<(SecretString, DateTime<Utc>)>)>;

type PlainSecrets = Option<(String, Option<(String, DateTime<Utc>)>)>;

fn secrets(found: Secrets) -> PlainSecrets {
    found.map(|(current, previous)| {
        (
            current.expose_secret().to_owned(),
            previous.map(|(s, until)| (s.expose_secret().to_owned(), until)),
        )
    })
}

async fn tenants_and_api_keys(db: Db) {
    let tenants: Vec<TenantRow> = (0..3).map(tenant_row).collect();
    for t in &tenants {
        let (first, created) = api_key(t.id, "default", 0);
        db.create_tenant(t, &first, &created, None).await.unwrap();
    }
    let (first, created) = api_key(tenants[0].id, "default", 0);
    assert!(
        db.create_tenant(&tenants[0], &first, &created, None)
            .await
            .is_err(),
        "ids are unique"
    );
    assert_eq!(
        db.find_api_key(first.id).await.unwrap(),
        None,
        "the refused tenant's key went with it"
    );
    assert_eq!(
        db.get_tenant(tenants[1].id)
            .await
            .unwrap()
            .map(|t| plain(&t)),
        Some(plain(&tenants[1]))
    );
    assert!(db.get_tenant(TenantId::new()).await.unwrap().is_none());
    let (page, total) = db.list_tenants(2, 2).await.unwrap();
    assert_eq!(
        (page.iter().map(plain).collect::<Vec<_>>(), total),
        (vec![plain(&tenants[2])], 3)
    );

    let t = tenants[0].id;
    assert!(db
        .rotate_webhook_secret(t, &"whsec_new".into(), at(60), None)
        .await
        .unwrap());
    assert!(!db
        .rotate_webhook_secret(TenantId::new(), &"x".into(), at(60), None)
        .await
        .unwrap());
    assert_eq!(
        secrets(db.webhook_secrets(t).await.unwrap()),
        Some(("whsec_new".into(), Some(("whsec_0".into(), at(60)))))
    );
    assert_eq!(
        secrets(db.webhook_secrets(tenants[1].id).await.unwrap()),
        Some(("whsec_1".into(), None))
    );

    let (key, created) = api_key(t, "ci", 1);
    let stream = StreamId::ApiKey(key.id);
    db.create_api_key(&key, &created, None).await.unwrap();
    assert_eq!(db.find_api_key(key.id).await.unwrap(), Some(key.clone()));
    let keys = db.list_api_keys(t).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1], key);
    assert_eq!(db.list_api_keys(tenants[1].id).await.unwrap().len(), 1);

    let revoked = event(t, stream, 2, None, EventData::ApiKeyRevoked {}, at(2));
    assert!(
        !db.revoke_api_key(tenants[1].id, key.id, &revoked)
            .await
            .unwrap(),
        "other tenant"
    );
    assert!(db.revoke_api_key(t, key.id, &revoked).await.unwrap());
    assert!(
        db.revoke_api_key(t, key.id, &revoked).await.unwrap(),
        "idempotent"
    );
    assert_eq!(
        db.find_api_key(key.id).await.unwrap().unwrap().revoked_at,
        Some(at(2))
    );
    assert_eq!(
        db.load_stream(t, stream).await.unwrap(),
        vec![created, revoked]
    );
    let log = db
        .list_events(t, Some("apikey.revoked"), None, 10, None)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    db.ping().await.unwrap();
}

fn kept(scope: &str, key: &str, body: &str) -> ScopedResponse {
    ScopedResponse {
        scope: scope.into(),
        record: IdempotencyRecord {
            key: key.into(),
            fingerprint: format!("fp of {body}"),
            status: 201,
            body: body.into(),
            created_at: at(5),
        },
    }
}

/// An admin request's response is written with its effect; a key already stored refuses the
/// whole transaction, so the second effect leaves nothing behind.
async fn admin_responses_are_kept_with_their_effect(db: Db) {
    let platform = PLATFORM_SCOPE;
    let first = tenant_row(1);
    let (key, created) = api_key(first.id, "default", 1);
    let response = kept(platform, "k1", "first");
    db.create_tenant(&first, &key, &created, Some(&response))
        .await
        .unwrap();
    assert_eq!(
        db.stored_response(platform, "k1").await.unwrap(),
        Some(response.record.clone())
    );
    assert_eq!(
        db.stored_response(&first.id.to_string(), "k1")
            .await
            .unwrap(),
        None
    );

    let second = tenant_row(2);
    let (key2, created2) = api_key(second.id, "default", 2);
    assert_eq!(
        db.create_tenant(
            &second,
            &key2,
            &created2,
            Some(&kept(platform, "k1", "second"))
        )
        .await,
        Err(StoreError::IdempotencyKeyTaken)
    );
    assert!(db.get_tenant(second.id).await.unwrap().is_none());
    assert_eq!(db.find_api_key(key2.id).await.unwrap(), None);

    assert!(db
        .rotate_webhook_secret(
            first.id,
            &"whsec_r".into(),
            at(9),
            Some(&kept(platform, "k2", "r"))
        )
        .await
        .unwrap());
    assert_eq!(
        db.rotate_webhook_secret(
            first.id,
            &"whsec_x".into(),
            at(9),
            Some(&kept(platform, "k2", "x"))
        )
        .await,
        Err(StoreError::IdempotencyKeyTaken)
    );
    assert_eq!(
        secrets(db.webhook_secrets(first.id).await.unwrap()).map(|(s, _)| s),
        Some("whsec_r".into())
    );

    let scope = first.id.to_string();
    let (ci, ci_created) = api_key(first.id, "ci", 3);
    db.create_api_key(&ci, &ci_created, Some(&kept(&scope, "k1", "ci")))
        .await
        .unwrap();
    let (again, again_created) = api_key(first.id, "ci again", 4);
    assert_eq!(
        db.create_api_key(&again, &again_created, Some(&kept(&scope, "k1", "again")))
            .await,
        Err(StoreError::IdempotencyKeyTaken)
    );
    assert_eq!(db.list_api_keys(first.id).await.unwrap().len(), 2);
    assert!(db
        .load_stream(first.id, StreamId::ApiKey(again.id))
        .await
        .unwrap()
        .is_empty());
}

/// Lookups made at once (PostgreSQL reads them in one statement) each get the response of
/// their own scope and key, the same pair asked twice included, and nothing for a key stored
/// under another scope or never stored.
async fn responses_looked_up_together_each_find_their_own(db: Db) {
    let mut stored = Vec::new();
    for i in 1..=3 {
        let (tenant, key) = (tenant_row(i), format!("k{i}"));
        let (api_key, created) = api_key(tenant.id, "default", i);
        let response = kept(PLATFORM_SCOPE, &key, &format!("body {i}"));
        db.create_tenant(&tenant, &api_key, &created, Some(&response))
            .await
            .unwrap();
        stored.push((tenant.id.to_string(), key, response.record));
    }
    let mut asked = Vec::new();
    for (tenant, key, record) in &stored {
        asked.push((PLATFORM_SCOPE.to_owned(), key.clone(), Some(record.clone())));
        asked.push((PLATFORM_SCOPE.to_owned(), key.clone(), Some(record.clone())));
        asked.push((tenant.clone(), key.clone(), None));
    }
    asked.push((PLATFORM_SCOPE.to_owned(), "never stored".into(), None));
    let answers = futures::future::join_all(
        asked
            .iter()
            .map(|(scope, key, _)| db.stored_response(scope, key)),
    )
    .await;
    for ((scope, key, expected), answer) in asked.iter().zip(answers) {
        assert_eq!(&answer.unwrap(), expected, "{scope} {key}");
    }
}
