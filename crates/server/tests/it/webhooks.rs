//! CONTRACT §10 through the README's test command: every committed
//! transition is POSTed signed to a real HTTP receiver, in order per entity,
//! again with the same id after a failure, and kept as dead after the
//! give-up time. The chaos run (SIGKILL mid-delivery, a receiver that fails
//! and hangs) is tests-js/test/webhooks.test.mjs against the binary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use consultd_persistence::testing::TEST_DATABASE_URL;
use consultd_persistence::{Db, WebhookRepo};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

use crate::common::*;

const WEBHOOK_SECRET: &str = "whsec-test";

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    event: Value,
    signature: String,
    body: String,
    answered: u16,
}

/// A real HTTP receiver; `fail_first` of its answers are 500s.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<Mutex<usize>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let status = {
        let mut left = r.fail_first.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::NO_CONTENT
        }
    };
    let signature = headers
        .get("consultd-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    r.seen.lock().unwrap().push(Received {
        event: serde_json::from_str(&body).unwrap_or(Value::Null),
        signature,
        body,
        answered: status.as_u16(),
    });
    status
}

impl Receiver {
    async fn start(fail_first: usize) -> (Self, String) {
        let r = Self {
            fail_first: Arc::new(Mutex::new(fail_first)),
            ..Self::default()
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, url)
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `n` distinct events were answered 2xx.
    async fn delivered(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut ids = Vec::new();
            let mut events = Vec::new();
            for r in self.seen().into_iter().filter(|r| r.answered < 300) {
                let id = r.event["id"].as_str().unwrap_or_default().to_owned();
                if !ids.contains(&id) {
                    ids.push(id);
                    events.push(r.event);
                }
            }
            if events.len() >= n {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} events delivered: {events:#?}",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Checks `t=…,v1=…` the way the docs tell receivers to.
fn verify(signature: &str, body: &str, secret: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let age = now_secs() - t.parse::<i64>().unwrap_or(0);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (0..300).contains(&age) && expected == v1
}

async fn app_with_hook(
    url: &str,
    tweak: impl FnOnce(&mut consultd_server::config::Config),
) -> TestApp {
    TestApp::spawn_with(|c| {
        c.webhooks.webhook_urls = vec![url.to_owned()];
        c.webhooks.webhook_secret = Some(WEBHOOK_SECRET.into());
        c.webhooks.webhook_retry_min = Duration::from_millis(50);
        c.webhooks.webhook_retry_max = Duration::from_millis(200);
        c.webhooks.webhook_timeout = Duration::from_secs(2);
        tweak(c);
    })
    .await
}

/// A patient's direct call to doctor `doctor`, confirmed and ended; its id.
async fn direct_call(app: &TestApp, doctor: &str, patient: &str) -> String {
    let (dt, pt) = (app.token(doctor, "doctor"), app.token(patient, "patient"));
    let (status, body) = app
        .post(
            "/api/call-sessions/start",
            &pt,
            json!({ "call_type": "video", "appointment_id": format!("appt-{patient}"), "doctor_id": doctor }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = id_of(&body["data"]);
    let (status, body) = app
        .post(&format!("/api/call-sessions/{id}/confirm"), &dt, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(&format!("/api/call-sessions/{id}/end"), &pt, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    id
}

#[tokio::test]
async fn every_transition_is_posted_signed_with_the_entity_as_rest_shows_it() {
    let (receiver, url) = Receiver::start(0).await;
    let app = app_with_hook(&url, |_| {}).await;
    let call = direct_call(&app, "d1", "p1").await;

    let events = receiver.delivered(3).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["call.invited", "call.confirmed", "call.ended"]);
    for e in &events {
        assert_eq!(e["data"]["id"], call.as_str());
        assert_eq!(
            e["type"].as_str().unwrap(),
            format!(
                "call.{}",
                e["data"]["status"].as_str().unwrap().to_lowercase()
            )
        );
        assert!(e["at"].as_str().unwrap().ends_with('Z'), "{e}");
    }
    assert_eq!(events[0]["action"], "call.start");
    assert_eq!(
        events[0]["actor"],
        json!({ "userId": "p1", "role": "patient" })
    );
    assert_eq!(events[1]["actor"]["userId"], "d1");
    // The last event's data is the call as GET shows it now.
    let (_, now) = app
        .get(
            &format!("/api/call-sessions/{call}"),
            &app.token("d1", "doctor"),
        )
        .await;
    assert_eq!(events[2]["data"], now["data"]);

    for r in receiver.seen() {
        assert!(verify(&r.signature, &r.body, WEBHOOK_SECRET), "{r:?}");
        let tampered = r.body.replacen("\"call.", "\"call.x", 1);
        assert_ne!(tampered, r.body);
        assert!(!verify(&r.signature, &tampered, WEBHOOK_SECRET));
        assert!(!verify(&r.signature, &r.body, "another secret"));
    }
    // One audit row per event, no more and no fewer.
    assert_eq!(app.audit_actions(&call).await.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_id_and_holds_the_entity_back() {
    let (receiver, url) = Receiver::start(3).await;
    let app = app_with_hook(&url, |_| {}).await;
    let call = direct_call(&app, "d2", "p2").await;
    let events = receiver.delivered(3).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["call.invited", "call.confirmed", "call.ended"]);

    let seen = receiver.seen();
    // The first three answers failed, and all three were the first event:
    // nothing later went out before it was taken.
    let first_id = events[0]["id"].as_str().unwrap();
    assert!(
        seen[..4].iter().all(|r| r.event["id"] == first_id),
        "{seen:#?}"
    );
    assert_eq!(
        seen[..4].iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 500, 204]
    );
    // Identical bytes each time: the id a receiver dedupes on never changes.
    assert!(seen[..4].iter().all(|r| r.body == seen[0].body));
    assert_eq!(seen.len(), 6, "no duplicates once answered 2xx");
    assert_eq!(app.audit_actions(&call).await.len(), 3);

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("consultd_webhook_deliveries_total{result=\"failed\"}"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn past_the_give_up_time_an_event_is_kept_dead_and_the_next_one_goes() {
    // Every attempt fails for a while; the give-up time is shorter.
    let (receiver, url) = Receiver::start(usize::MAX).await;
    let app = app_with_hook(&url, |c| {
        c.webhooks.webhook_give_up = Duration::from_millis(300);
    })
    .await;
    let call = direct_call(&app, "d3", "p3").await;
    let db = Db::connect(app.config.database_url.as_deref().unwrap())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = WebhookRepo.dead(db.conn(), 10).await.unwrap();
        if dead.len() == 3 {
            break dead;
        }
        assert!(tokio::time::Instant::now() < deadline, "{dead:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (delivery, error) in &dead {
        assert_eq!(error.as_deref(), Some("HTTP 500"));
        assert_eq!(delivery.entity_key, format!("call:{call}"));
    }
    // Dead in the order they were written: each was given up on before the
    // next one was tried.
    let first_tries: Vec<String> = {
        let mut ids: Vec<String> = Vec::new();
        for r in receiver.seen() {
            let id = r.event["id"].as_str().unwrap().to_owned();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    };
    let dead_ids: Vec<String> = dead.iter().map(|(d, _)| d.event_id.clone()).collect();
    assert_eq!(first_tries, dead_ids);
    let depth = WebhookRepo.depth(db.conn()).await.unwrap();
    assert_eq!((depth.pending, depth.dead), (0, 3));
    app.stop().await;
}

#[tokio::test]
async fn webhook_settings_are_checked_at_start() {
    for (urls, secret, needle) in [
        (vec!["http://127.0.0.1:9/hook"], None, "WEBHOOK_SECRET"),
        (
            vec!["ftp://example.org/hook"],
            Some("s"),
            "http:// or https://",
        ),
        (vec!["not a url"], Some("s"), "not a URL"),
    ] {
        let config = consultd_server::config::Config {
            host: "127.0.0.1".into(),
            port: 0,
            jwt_secret: Some(SECRET.into()),
            webhooks: consultd_server::config::WebhookConfig {
                webhook_urls: urls.iter().map(|u| (*u).to_owned()).collect(),
                webhook_secret: secret.map(str::to_owned),
                ..Default::default()
            },
            ..Default::default()
        };
        let Err(err) = consultd_server::start(config).await else {
            panic!("{urls:?} started");
        };
        assert!(err.to_string().contains(needle), "{urls:?}: {err}");
    }
}

/// Two nodes deliver from one outbox: every event reaches the receiver
/// exactly once (no failures here, so no retries), whichever node wrote it.
#[tokio::test]
async fn two_nodes_share_the_outbox_without_sending_a_row_twice() {
    if std::env::var(TEST_DATABASE_URL).is_err() {
        eprintln!("skipped: two nodes need PostgreSQL ({TEST_DATABASE_URL})");
        return;
    }
    let (receiver, url) = Receiver::start(0).await;
    let a = app_with_hook(&url, |c| {
        c.redis_url = Some("redis://127.0.0.1:6379".into());
        c.rest_burst = 10_000;
    })
    .await;
    let b = a.another_node().await;
    let mut calls = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        calls.push(direct_call(node, &format!("dn{i}"), &format!("pn{i}")).await);
    }
    let events = receiver.delivered(30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.seen().len(), 30, "a row was sent twice");
    for call in &calls {
        let types: Vec<&str> = events
            .iter()
            .filter(|e| e["data"]["id"] == call.as_str())
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["call.invited", "call.confirmed", "call.ended"],
            "{call}"
        );
    }
    b.stop().await;
    a.stop().await;
}
