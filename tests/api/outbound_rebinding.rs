//! DNS rebinding, with a real nameserver on loopback (`PAYRAIL_OUTBOUND__DNS_SERVERS`): a name
//! that resolved to a public address when its endpoint was created, and resolves to loopback
//! by the time an event is delivered, is refused at connect time, and a loopback receiver at
//! the URL's port hears nothing. Its answers carry a day-long TTL, so an engine that kept an
//! answer would be caught.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::{rdata::A, Name, RData, Record, RecordType};
use payrail::outbound::ssrf::{
    check, forbidden_class, GuardedResolver, NoAllowedAddress, TargetPolicy, UrlRefused,
};
use payrail::outbound::OutboundSettings;
use payrail_actors::ports::SystemClock;
use reqwest::dns::Resolve;
use serde_json::json;

use crate::helpers::{problem, spawn_app_with, Backend};
use crate::outbound_policy::{attempts_at_least, dispatcher, endpoint};
use crate::outbound_receiver::Receiver;

/// The name the test nameserver answers for (`.test` is reserved for testing: RFC 6761).
const HOST: &str = "rebind.payrail.test";
/// What it resolves to first: a public address (documentation ranges are refused); nothing
/// ever connects to it.
const PUBLIC: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

/// A UDP nameserver on 127.0.0.1: an A query for [`HOST`] gets the current answer, any other
/// type for it an empty answer, any other name NXDOMAIN.
struct Nameserver {
    addr: SocketAddr,
    state: Arc<Mutex<Answers>>,
}

struct Answers {
    current: Ipv4Addr,
    /// The A queries for [`HOST`] answered with each address, in order.
    given: Vec<Ipv4Addr>,
}

impl Nameserver {
    async fn start(first: Ipv4Addr) -> Nameserver {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let state = Arc::new(Mutex::new(Answers {
            current: first,
            given: Vec::new(),
        }));
        let answers = state.clone();
        let host: Name = HOST.parse().unwrap();
        actix_web::rt::spawn(async move {
            let mut buf = [0u8; 1_500];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::new(
                    query.metadata.id,
                    MessageType::Response,
                    query.metadata.op_code,
                );
                reply.metadata.authoritative = true;
                reply.metadata.recursion_desired = query.metadata.recursion_desired;
                reply.metadata.recursion_available = true;
                for q in &query.queries {
                    reply.add_query(q.clone());
                    if !q.name().eq_ignore_root(&host) {
                        reply.metadata.response_code = ResponseCode::NXDomain;
                    } else if q.query_type() == RecordType::A {
                        let mut answers = answers.lock().unwrap();
                        let ip = answers.current;
                        answers.given.push(ip);
                        let record = Record::from_rdata(q.name().clone(), 86_400, RData::A(A(ip)));
                        reply.add_answer(record);
                    }
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
            }
        });
        Nameserver { addr, state }
    }

    fn answer(&self, ip: Ipv4Addr) {
        self.state.lock().unwrap().current = ip;
    }

    fn given(&self) -> Vec<Ipv4Addr> {
        self.state.lock().unwrap().given.clone()
    }
}

#[actix_web::test]
async fn outbound_refuses_a_name_rebound_to_loopback_at_connect_time() {
    assert_eq!(forbidden_class(PUBLIC.into()), None);
    let dns = Nameserver::start(PUBLIC).await;
    // The receiver the rebound name points at: it must hear nothing.
    let trap = Receiver::start(Receiver::always(200)).await;
    let port = trap
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook")
        .to_owned();
    let settings = OutboundSettings {
        allow_http: true,
        allow_private_targets: false,
        dns_servers: dns.addr.to_string().parse().unwrap(),
        retry_schedule_ms: vec![],
        timeout_ms: 2_000,
        sweep_ms: 50,
        ..OutboundSettings::default()
    };
    // The API checks URLs with these settings; its own dispatcher is off, so that nothing is
    // delivered while the name still resolves to the public address.
    let api_settings = OutboundSettings {
        enabled: false,
        ..settings.clone()
    };
    let app = spawn_app_with(Backend::Sqlite, |s| s.outbound = api_settings).await;
    let t = app.tenant("Acme").await;
    let url = format!("http://{HOST}:{port}/hook");

    // Created while the name resolves to a public address.
    let id = endpoint(&app, &t, json!({ "url": url })).await;
    let at_creation = dns.given();
    assert!(
        !at_creation.is_empty() && at_creation.iter().all(|ip| *ip == PUBLIC),
        "{at_creation:?}"
    );

    dns.answer(Ipv4Addr::LOCALHOST);
    // The same URL is refused now: the check asks again, whatever the first answer's TTL.
    let response = app
        .post("/api/webhook-endpoints", &t.key)
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap();
    let body = problem(response, 422, "invalid_url").await;
    assert_eq!(
        body["errors"],
        json!([{"field": "url", "message": "the host resolves to a loopback address, which is not allowed"}]),
        "{body}"
    );
    let at_refusal = dns.given();
    assert!(at_refusal.len() > at_creation.len(), "{at_refusal:?}");

    // An event for the endpoint created earlier: the delivery looks the name up again when it
    // connects, gets loopback only, and is refused before any connection is made.
    let outbound = dispatcher(&app, settings, Arc::new(SystemClock));
    app.invoice(&t.key, 100, false).await;
    let log = attempts_at_least(&app, &t, &id, 1).await;
    assert_eq!(log.len(), 1, "{log:#?}");
    let a = &log[0];
    assert_eq!(a["status"], "failed", "{a}");
    assert!(a["responseStatus"].is_null(), "{a}");
    assert_eq!(
        a["responseBody"], "refused target: the host resolves to no allowed address",
        "{a}"
    );
    assert!(a["nextAttemptAt"].is_null(), "{a}");
    // The name was asked for again at connect time, after the check's lookups.
    let given = dns.given();
    assert!(given.len() > at_refusal.len(), "{given:?}");
    assert!(
        given[at_creation.len()..]
            .iter()
            .all(|ip| *ip == Ipv4Addr::LOCALHOST),
        "{given:?}"
    );
    // The attempt is recorded, so it is over: nothing reached the receiver.
    assert!(trap.deliveries().is_empty(), "{:#?}", trap.deliveries());
    let listed: serde_json::Value = app.get_json("/api/webhook-endpoints", &t.key).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    outbound.shutdown(std::time::Duration::from_secs(1)).await;
}

/// Every lookup asks the nameservers again, whatever TTL their last answer carried: a name that
/// first resolved to a public address and now resolves to loopback is refused, both by the check
/// made when a URL is set and by the delivery client's resolver.
#[actix_web::test]
async fn each_lookup_asks_the_configured_nameservers_again() {
    let dns = Nameserver::start(PUBLIC).await;
    let policy = TargetPolicy {
        dns_servers: dns.addr.to_string().parse().unwrap(),
        ..TargetPolicy::default()
    };
    let url = format!("https://{HOST}/hook");
    assert!(check(&url, policy.clone()).await.is_ok());
    let guarded = GuardedResolver(policy.clone());
    let name = || -> reqwest::dns::Name { HOST.parse().unwrap() };
    let first: Vec<SocketAddr> = guarded.resolve(name()).await.unwrap().collect();
    assert_eq!(first, vec![SocketAddr::from((PUBLIC, 0))]);

    dns.answer(Ipv4Addr::LOCALHOST);
    assert_eq!(
        check(&url, policy.clone()).await,
        Err(UrlRefused::Address("loopback"))
    );
    let refused = guarded.resolve(name()).await.err().unwrap();
    assert!(refused.is::<NoAllowedAddress>(), "{refused}");
    assert_eq!(
        dns.given(),
        [PUBLIC, PUBLIC, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST]
    );
}
