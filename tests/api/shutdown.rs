//! SIGTERM: every request already admitted is committed and answered before the process
//! exits, whether its caller still waits for the answer or has gone.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Client;

use crate::helpers::{metric_at, Backend};
use crate::process::{all_invoices, database, invoice_body, tenant, Engine};

/// An engine whose writer holds each batch for `linger_us` before committing, a tenant's key,
/// and what is needed to restart it on the same database.
struct Lingering {
    _dir: tempfile::TempDir,
    url: String,
    client: Client,
    engine: Engine,
    key: String,
}

async fn lingering_engine(backend: Backend, linger_us: &str) -> Lingering {
    let dir = tempfile::tempdir().unwrap();
    let (_db, url) = database(backend, dir.path()).await;
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let engine = Engine::start_with(&url, None, &[("PAYRAIL_COMMIT_LINGER_US", linger_us)]).await;
    let t = tenant(&client, &engine.url).await;
    let key = t["apiKey"]["key"].as_str().unwrap().to_owned();
    Lingering {
        _dir: dir,
        url,
        client,
        engine,
        key,
    }
}

/// Restarts on the same database; answers the customer names of every invoice and how many
/// invoices there are, after asserting that each marker is among them.
async fn restarted_names(
    url: &str,
    client: &Client,
    key: &str,
    markers: &[String],
) -> (HashSet<String>, usize) {
    let engine = Engine::start(url, None).await;
    let invoices = all_invoices(client, &engine.url, key).await;
    let names: HashSet<String> = invoices
        .iter()
        .map(|i| i["customerName"].as_str().unwrap().to_owned())
        .collect();
    for marker in markers {
        assert!(
            names.contains(marker),
            "{marker} was admitted but lost at SIGTERM"
        );
    }
    (names, invoices.len())
}

/// Requests in flight when SIGTERM arrives are all answered 201 and durable; the process exits 0.
pub async fn sigterm_drains(backend: Backend) {
    // Each batch waits 300 ms in the writer: SIGTERM lands while requests are in flight.
    let Lingering {
        _dir,
        url,
        client,
        engine,
        key,
    } = lingering_engine(backend, "300000").await;
    let markers: Vec<String> = (0..5).map(|i| format!("in-flight-{i}")).collect();
    let sends = futures::future::join_all(markers.iter().map(|marker| {
        client
            .post(format!("{}/api/invoices", engine.url))
            .bearer_auth(&key)
            .json(&invoice_body(marker))
            .send()
    }));
    tokio::pin!(sends);
    // SIGTERM once the engine holds all five (a condition, not a sleep).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::select! {
            _ = &mut sends => panic!("answered before SIGTERM: the linger did not hold them"),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
        let in_flight = metric_at(&client, &engine.url, "payrail_commands_in_flight")
            .await
            .unwrap_or(0);
        if in_flight >= markers.len() as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "the requests never arrived");
    }
    let pid = engine.pid();
    let status = tokio::task::spawn_blocking(move || engine.sigterm());
    let answers = sends.await;
    let status = status.await.unwrap();
    assert!(
        status.success(),
        "exit status after SIGTERM: {status:?} (pid {pid})"
    );
    for (marker, answer) in markers.iter().zip(answers) {
        let answer = answer.unwrap_or_else(|e| panic!("{marker} got no answer: {e}"));
        assert_eq!(answer.status(), 201, "{marker} in flight at SIGTERM");
    }
    let (names, invoices) = restarted_names(&url, &client, &key, &markers).await;
    assert_eq!(names.len(), invoices);
}

/// Requests whose clients gave up while their units waited in the writer: the units were
/// admitted, so SIGTERM commits them before the process exits.
pub async fn sigterm_commits_what_departed_callers_left(backend: Backend) {
    // Each batch waits 800 ms in the writer before it commits.
    let Lingering {
        _dir,
        url,
        client,
        engine,
        key,
    } = lingering_engine(backend, "800000").await;
    let impatient = Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let markers: Vec<String> = (0..5).map(|i| format!("departed-{i}")).collect();
    let sends = markers.iter().map(|marker| {
        impatient
            .post(format!("{}/api/invoices", engine.url))
            .bearer_auth(&key)
            .json(&invoice_body(marker))
            .send()
    });
    for answer in futures::future::join_all(sends).await {
        assert!(answer.is_err(), "the client gave up before the commit");
    }
    let status = tokio::task::spawn_blocking(move || engine.sigterm())
        .await
        .unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    restarted_names(&url, &client, &key, &markers).await;
}
