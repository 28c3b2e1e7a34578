//! Metrics labels come from fixed sets: made-up methods and random paths cannot create series.

use reqwest::Method;

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(made_up_methods_and_paths_do_not_grow_the_metrics);

/// Made-up methods on real and random paths: every series of the request metrics carries a
/// known method (or `OTHER`) and a route pattern (or `unmatched`).
async fn made_up_methods_and_paths_do_not_grow_the_metrics(app: &TestApp) {
    for i in 0..30 {
        let method = Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let random: u64 = rand::random();
        for path in [format!("/no/such/{random:x}"), "/api/invoices".to_owned()] {
            app.client
                .request(method.clone(), format!("{}{path}", app.url))
                .send()
                .await
                .unwrap();
        }
        let random_get = format!("{}/api/x{random:x}/{i}", app.url);
        app.client.get(random_get).send().await.unwrap();
    }
    let text = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("payrail_http_requests_total{"))
        .collect();
    assert!(!text.contains("MADEUP"), "{series:#?}");
    assert!(!text.contains("/no/such/"), "{series:#?}");
    assert!(series.len() <= 4, "{series:#?}");
}
