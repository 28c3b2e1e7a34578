//! An external gateway over TLS: behind an `https://` URL whose certificate comes from a private
//! CA named by `gateway_ca_file`, tenants register and payments complete; without that CA the
//! certificate is refused and nothing is created.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use payrail::gateway::{start_simulator, SimulatorConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{crypto::ring, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::helpers::{problem, spawn_app_with, Backend, ADMIN};

/// A CA certificate (PEM) and a `localhost` certificate it signed, with its key.
fn certificates() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Payrail test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let key = PrivatePkcs8KeyDer::from(leaf_key.serialize_der());
    (ca.pem(), leaf.der().clone(), key.into())
}

/// Terminates TLS on a port of its own and relays each connection to `upstream` in the clear;
/// counts completed handshakes.
async fn tls_front(
    upstream: SocketAddr,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> (u16, Arc<AtomicUsize>) {
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counter = handshakes.clone();
    actix_web::rt::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            actix_web::rt::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, handshakes)
}

#[actix_web::test]
async fn payments_complete_through_an_https_gateway_with_a_private_ca() {
    let simulator = start_simulator("127.0.0.1:0", SimulatorConfig::default())
        .await
        .unwrap();
    let upstream: SocketAddr = simulator
        .url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (ca_pem, cert, key) = certificates();
    let (port, handshakes) = tls_front(upstream, cert, key).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("gateway-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let gateway_url = format!("https://localhost:{port}");

    // Without the CA the certificate is not trusted: registration fails, no tenant is made.
    let untrusting = spawn_app_with(Backend::Sqlite, |s| {
        s.gateway_url = Some(gateway_url.clone());
    })
    .await;
    let refused = untrusting
        .post("/api/tenants", ADMIN)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap();
    problem(refused, 503, "unavailable").await;
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "no handshake may complete with an untrusted certificate"
    );

    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.gateway_url = Some(gateway_url.clone());
        s.gateway_ca_file = Some(ca_file.display().to_string());
    })
    .await;
    let t = app.tenant("Acme").await;
    let invoice = app.invoice(&t.key, 1_000, true).await;
    let id = invoice["id"].as_str().unwrap();
    let payment = app.pay(&t.key, id, "4242424242424242", None).await;
    assert_eq!(payment.status(), 201);
    app.eventually(&format!("/api/invoices/{id}"), &t.key, |v| {
        v["status"] == "paid"
    })
    .await;
    assert!(handshakes.load(Ordering::SeqCst) >= 1);
    simulator.stop().await;
}
