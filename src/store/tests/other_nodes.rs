//! What nodes sharing a database hear of each other. API keys served from memory: a
//! revocation wins at once on the node that made it and, on PostgreSQL, within moments on every
//! other node; a node that may have missed one reads the database until it listens again.
//! Commits on one node wake the readers of the same tenants' logs on the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use payrail_actors::domain::{EventData, StreamId, TenantId};
use payrail_actors::ports::{EventStore, Snapshot, StoreError};

use super::fixtures::*;
use super::tenants::api_key;
use crate::keys::Keys;
use crate::store::notify::COMMITS_CHANNEL;
use crate::store::stmt::{Bind, Stmt};
use crate::store::{ApiKeyRow, Db};

/// Well under the cache's 5 s TTL: a change seen within it was not seen by expiry.
const HEARD_WITHIN: Duration = Duration::from_secs(2);

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + HEARD_WITHIN;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "not within {HEARD_WITHIN:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Renames the key behind the caches' back: a lookup that answers the old name was served
/// from memory.
async fn rename(db: &Db, key: &ApiKeyRow, name: &str) {
    db.transact(vec![Stmt::new(
        "UPDATE api_keys SET name = ? WHERE id = ?",
        vec![Bind::text(name), Bind::Text(key.id.to_string())],
    )])
    .await
    .unwrap();
}

async fn name_of(db: &Db, key: &ApiKeyRow) -> String {
    db.find_api_key(key.id).await.unwrap().unwrap().name
}

async fn revoke(db: &Db, key: &ApiKeyRow) {
    let revoked = event(
        key.tenant_id,
        StreamId::ApiKey(key.id),
        2,
        None,
        EventData::ApiKeyRevoked {},
        at(2),
    );
    assert!(db
        .revoke_api_key(key.tenant_id, key.id, &revoked)
        .await
        .unwrap());
}

async fn is_revoked(db: &Db, key: &ApiKeyRow) -> bool {
    db.find_api_key(key.id)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some()
}

async fn new_key(db: &Db) -> ApiKeyRow {
    let (key, created) = api_key(TenantId::new(), "ci", 1);
    db.create_api_key(&key, &created, None).await.unwrap();
    key
}

/// Two nodes on one fresh PostgreSQL database, both listening to each other.
async fn two_nodes() -> (Db, Db) {
    let (a, b) = two_postgres_writers().await;
    assert!(!b.api_keys_cached(), "no listener, no cache");
    a.listen_to_other_nodes();
    b.listen_to_other_nodes();
    wait_for("both nodes listen and have heard each other", async || {
        a.api_keys_cached() && b.api_keys_cached() && a.hears_other_nodes() && b.hears_other_nodes()
    })
    .await;
    (a, b)
}

#[tokio::test]
async fn sqlite_serves_keys_from_memory_and_revocation_wins_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = crate::store::testing::fresh_sqlite(dir.path())
        .await
        .unwrap();
    assert!(db.api_keys_cached(), "one process owns the file");
    let key = new_key(&db).await;
    assert_eq!(name_of(&db, &key).await, "ci");
    rename(&db, &key, "renamed").await;
    assert_eq!(name_of(&db, &key).await, "ci", "served from memory");
    revoke(&db, &key).await;
    assert!(is_revoked(&db, &key).await, "at once, no wait");
}

#[tokio::test]
async fn postgres_revocation_reaches_every_node() {
    let (a, b) = two_nodes().await;

    let key = new_key(&a).await;
    assert_eq!(name_of(&a, &key).await, "ci");
    assert_eq!(name_of(&b, &key).await, "ci");
    rename(&a, &key, "renamed").await;
    assert_eq!(name_of(&b, &key).await, "ci", "served from memory");

    revoke(&a, &key).await;
    assert!(is_revoked(&a, &key).await, "at once on the revoking node");
    wait_for("node b hears of the revocation", async || {
        is_revoked(&b, &key).await
    })
    .await;
}

/// A node whose listener is cut stops serving from memory (it could miss a revocation), and
/// when it listens again it starts from an empty cache.
#[tokio::test]
async fn postgres_listener_loss_turns_the_cache_off_until_it_is_back() {
    let (a, _) = crate::store::testing::fresh_postgres().await.unwrap();
    a.listen_to_other_nodes();
    wait_for("the node listens", async || a.api_keys_cached()).await;
    let key = new_key(&a).await;
    assert_eq!(name_of(&a, &key).await, "ci");
    rename(&a, &key, "renamed").await;
    assert_eq!(name_of(&a, &key).await, "ci", "served from memory");

    // Revocations may go unheard while the listener is gone.
    let cut: Vec<crate::store::rows::CountRow> = a
        .load(Stmt::new(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN %'",
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(cut[0].n, 1, "one listener");
    wait_for("the cache turns off", async || !a.api_keys_cached()).await;
    assert_eq!(name_of(&a, &key).await, "renamed", "read from the database");
    wait_for("the listener is back", async || a.api_keys_cached()).await;
    rename(&a, &key, "again").await;
    assert_eq!(name_of(&a, &key).await, "again", "nothing stale survived");
}

/// A commit on node a wakes node b's readers of that tenant's log (b's feed is poked by no
/// commit of its own here), and only of that tenant.
#[tokio::test]
async fn postgres_commits_on_one_node_wake_readers_on_another() {
    let (a, b) = two_nodes().await;

    let tenant = TenantId::new();
    let mut reader = b.feed().subscribe(tenant).unwrap();
    let mut bystander = b.feed().subscribe(TenantId::new()).unwrap();
    let mut own = a.feed().subscribe(tenant).unwrap();
    let mut dispatcher = b.feed().listen();

    let (_, created) = create_invoice(tenant, &InvoiceSpec::default());
    assert!(a.append_and_announce(vec![created]).await[0].is_ok());
    tokio::time::timeout(HEARD_WITHIN, reader.committed())
        .await
        .expect("node b's reader woke");
    tokio::time::timeout(HEARD_WITHIN, own.committed())
        .await
        .expect("node a's own reader woke");
    assert_eq!(
        tokio::time::timeout(HEARD_WITHIN, dispatcher.committed())
            .await
            .expect("node b's dispatcher woke"),
        [tenant]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bystander.committed())
            .await
            .is_err(),
        "another tenant's reader sleeps on"
    );
}

/// The commit notices `url`'s database carries from now on, as a listener of its own hears
/// them within `within`.
async fn commit_notices_heard(
    url: &str,
    within: Duration,
    commit: impl AsyncFnOnce(),
) -> Vec<String> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    use futures::StreamExt;
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    conn.batch_execute(&format!("LISTEN {COMMITS_CHANNEL}"))
        .await
        .unwrap();
    commit().await;
    let mut heard = Vec::new();
    let mut notices = std::pin::pin!(conn.notifications_stream());
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(Ok(notice))) = tokio::time::timeout_at(deadline, notices.next()).await {
        heard.push(notice.payload);
    }
    heard
}

/// A node alone on its database tells nobody of its commits; once another node says it is
/// there (and is told of this one at once), they go out.
#[tokio::test]
async fn postgres_commit_notices_go_out_only_once_another_node_is_heard() {
    let (a, url) = crate::store::testing::fresh_postgres().await.unwrap();
    a.listen_to_other_nodes();
    wait_for("the node listens", async || a.api_keys_cached()).await;
    let tenant = TenantId::new();
    let alone = commit_notices_heard(&url, Duration::from_millis(300), async || {
        let (_, created) = create_invoice(tenant, &InvoiceSpec::default());
        assert!(a.append_and_announce(vec![created]).await[0].is_ok());
    })
    .await;
    assert_eq!(alone, Vec::<String>::new(), "no other node: no notice");
    assert!(!a.hears_other_nodes());

    let b = Db::connect(&url, 2, Arc::new(Keys::ephemeral()))
        .await
        .unwrap();
    b.listen_to_other_nodes();
    wait_for("each node hears the other", async || {
        a.hears_other_nodes() && b.hears_other_nodes()
    })
    .await;
    let other = TenantId::new();
    let heard = commit_notices_heard(&url, Duration::from_millis(300), async || {
        let (_, created) = create_invoice(other, &InvoiceSpec::default());
        assert!(a.append_and_announce(vec![created]).await[0].is_ok());
    })
    .await;
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert!(heard[0].ends_with(&format!(":{other}")), "{heard:?}");
}

/// Two stores writing to one fresh PostgreSQL database, not listening to each other.
async fn two_postgres_writers() -> (Db, Db) {
    let (a, url) = crate::store::testing::fresh_postgres().await.unwrap();
    let b = Db::connect(&url, 2, Arc::new(Keys::ephemeral()))
        .await
        .unwrap();
    (a, b)
}

on_both!(a_second_writer_is_caught, two_writers);
on_both!(a_stream_created_elsewhere_is_caught, two_writers);
on_both!(an_invoice_number_taken_elsewhere_is_caught, two_writers);

/// A writer trusts the invoice number after the last one it committed for the tenant. Another
/// process having taken that number makes that wrong: the batch is checked in full, the
/// creation fails (its number is taken) and the batch's other units are written.
async fn an_invoice_number_taken_elsewhere_is_caught(a: &Db, b: &Db) {
    let tenant = TenantId::new();
    let numbered = |number| numbered_invoice(tenant, number);
    assert_eq!(a.append_batch(vec![numbered(1).1]).await, vec![Ok(())]);
    let (theirs, on_b) = numbered(2);
    assert_eq!(b.append_batch(vec![on_b]).await, vec![Ok(())]);

    let (ours, on_a) = numbered(2);
    let elsewhere = TenantId::new();
    let (other, other_created) = create_invoice(elsewhere, &InvoiceSpec::default());
    let results = a.append_batch(vec![on_a, other_created]).await;
    assert!(
        matches!(results[..], [Err(StoreError::Fenced(_)), Ok(())]),
        "{results:?}"
    );
    assert!(a.load_invoice(tenant, ours.id).await.unwrap().is_none());
    assert!(a.load_invoice(tenant, theirs.id).await.unwrap().is_some());
    assert!(a.load_invoice(elsewhere, other.id).await.unwrap().is_some());
}

/// A writer trusts a stream's creation (version 0 of a new id) without reading it. Another
/// process having created the same stream makes that wrong: the batch is checked in full, the
/// creation fails as a conflict and the batch's other units are written.
async fn a_stream_created_elsewhere_is_caught(a: &Db, b: &Db) {
    let tenant = TenantId::new();
    let (mut invoice, created) = create_invoice(tenant, &InvoiceSpec::default());
    let (mut second, second_created) = numbered_invoice(tenant, 2);
    assert_eq!(
        a.append_batch(vec![created, second_created]).await,
        vec![Ok(()), Ok(())]
    );
    // A payment's creation; b writes its payment's stream first (a has never seen it), without
    // touching the invoice, so only the payment's creation is wrong on a.
    let (payment, attempted) = attempt_payment(&mut invoice, 100, at(1));
    let mut payment_only = attempted.clone();
    payment_only
        .streams
        .retain(|s| matches!(s.stream, StreamId::Payment(_)));
    payment_only
        .snapshots
        .retain(|s| matches!(s, Snapshot::Payment(_)));
    assert_eq!(b.append_batch(vec![payment_only]).await, vec![Ok(())]);
    let (other, other_attempt) = attempt_payment(&mut second, 100, at(1));

    let results = a.append_batch(vec![attempted, other_attempt]).await;
    assert!(
        matches!(results[..], [Err(StoreError::VersionConflict(_)), Ok(())]),
        "{results:?}"
    );
    for id in [payment.id, other.id] {
        let events = a.load_stream(tenant, StreamId::Payment(id)).await.unwrap();
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, [1], "each payment created once");
    }
    let invoices = [(invoice.id, 2), (second.id, 3)];
    for (id, version) in invoices {
        let stored = a.load_invoice(tenant, id).await.unwrap().unwrap();
        let at = stored.snapshot.version + stored.trailing.len() as u64;
        assert_eq!(at, version, "only the second invoice reserved an amount");
    }
}

/// A store's writer trusts the stream versions it committed itself. Another process writing
/// the same streams makes that shortcut wrong: the batch is then checked in full, so a change
/// built on the version the first writer recorded fails as a conflict instead of writing a
/// second event at the same version, and a change built on what is stored goes through.
async fn a_second_writer_is_caught(a: &Db, b: &Db) {
    let tenant = TenantId::new();
    let (invoice, created) = create_invoice(tenant, &InvoiceSpec::default());
    assert_eq!(a.append_batch(vec![created]).await, vec![Ok(())]);
    let mut on_b = invoice.clone();
    let marked = invoice_change(
        &mut on_b,
        vec![EventData::InvoiceMarkedUncollectible {}],
        at(1),
    );
    assert_eq!(b.append_batch(vec![marked]).await, vec![Ok(())]);

    let mut on_a = invoice.clone();
    let stale = invoice_change(&mut on_a, vec![EventData::InvoiceVoided {}], at(2));
    let refused = a.append_batch(vec![stale]).await;
    assert!(
        matches!(refused[..], [Err(StoreError::VersionConflict(_))]),
        "{refused:?}"
    );
    let stored = a.load_invoice(tenant, invoice.id).await.unwrap().unwrap();
    assert_eq!(
        stored.snapshot, on_b,
        "b's change stands, a's wrote nothing"
    );
    assert!(stored.trailing.is_empty());

    let mut current = stored.snapshot;
    let voided = invoice_change(&mut current, vec![EventData::InvoiceVoided {}], at(3));
    assert_eq!(a.append_batch(vec![voided]).await, vec![Ok(())]);
    let events = a
        .load_stream(tenant, StreamId::Invoice(invoice.id))
        .await
        .unwrap();
    // Created and finalized (1, 2), b's change (3), a's (4): contiguous, none twice.
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    assert_eq!(
        a.load_invoice(tenant, invoice.id)
            .await
            .unwrap()
            .unwrap()
            .snapshot,
        current
    );
}
