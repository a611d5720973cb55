//! Two nodes on one PostgreSQL database (issue 17, CONTRACT §8): what one
//! node commits reaches the sockets of the other, in commit order, once.
//! PostgreSQL only (`TEST_DATABASE_URL`): without it there is one node, and
//! these tests say so and return. Signaling rooms across nodes are not
//! built yet, so nothing here joins a room.

use std::time::Duration;

use crate::common::*;
use consultd_persistence::testing::TEST_DATABASE_URL;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(400);

/// Node A and node B, and a doctor with an online schedule (started on A).
struct Pair {
    a: TestApp,
    b: TestApp,
    doctor: String,
    schedule: String,
}

async fn pair() -> Option<Pair> {
    pair_with(|_| {}).await
}

/// [`pair`] with node B's config adjusted by `tweak_b`.
async fn pair_with(tweak_b: impl FnOnce(&mut consultd_server::config::Config)) -> Option<Pair> {
    if std::env::var(TEST_DATABASE_URL).is_err() {
        eprintln!("skipped: two nodes need PostgreSQL ({TEST_DATABASE_URL})");
        return None;
    }
    let a = TestApp::spawn_with(|c| {
        c.redis_url = Some("redis://127.0.0.1:6379".into());
        // The ordering test makes a few hundred requests as one doctor.
        c.rest_burst = 10_000;
    })
    .await;
    let b = a.another_node_with(tweak_b).await;
    let doctor = a.token("d1", "doctor");
    let (status, body) = a
        .post(
            "/api/schedules",
            &doctor,
            json!({ "date": "2026-11-21", "startTime": "09:00", "endTime": "17:00" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let schedule = id_of(&body["data"]);
    Some(Pair {
        a,
        b,
        doctor,
        schedule,
    })
}

impl Pair {
    async fn start_schedule(&self) {
        let path = format!("/api/schedules/{}/start", self.schedule);
        let (status, body) = self.a.post(&path, &self.doctor, json!({})).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Joins the queue and marks ready through `node`; the entry id.
    async fn ready(&self, node: &TestApp, token: &str) -> String {
        let path = format!("/api/schedules/{}/join-queue", self.schedule);
        let (status, body) = node.post(&path, token, json!({})).await;
        assert_eq!(status, 201, "{body}");
        let entry = id_of(&body["data"]);
        let path = format!("/api/queue/{entry}/toggle-ready");
        let (status, body) = node.post(&path, token, json!({ "isReady": true })).await;
        assert_eq!(status, 200, "{body}");
        entry
    }

    /// The doctor invites `patient` through node A; the call id.
    async fn invite(&self, patient: &str) -> String {
        let path = format!("/api/schedules/{}/start-call", self.schedule);
        let (status, body) = self
            .a
            .post(&path, &self.doctor, json!({ "patientId": patient }))
            .await;
        assert_eq!(status, 201, "{body}");
        id_of(&body["data"])
    }

    async fn stop(self) {
        self.b.stop().await;
        self.a.stop().await;
    }
}

/// How many expiries of `call` the audit log holds.
async fn expiries(node: &TestApp, call: &str) -> usize {
    let actions = node.audit_actions(call).await;
    actions.iter().filter(|a| a.ends_with("expire")).count()
}

async fn call_post(node: &TestApp, call: &str, action: &str, token: &str) -> (u16, Value) {
    node.post(
        &format!("/api/call-sessions/{call}/{action}"),
        token,
        json!({}),
    )
    .await
}

#[tokio::test]
async fn the_queue_flow_crosses_nodes_once() {
    let Some(p) = pair().await else {
        return;
    };
    let mut doctor = p.a.connect(&p.doctor).await;
    let patient_token = p.b.token("p1", "patient");
    let mut patient = p.b.connect(&patient_token).await;
    let mut other_guest = p.a.connect(&p.a.token("p2", "patient")).await;

    // `doctor_online` reaches guests on both nodes, once each.
    p.start_schedule().await;
    for guest in [&mut patient, &mut other_guest] {
        let online = guest.expect_event("doctor_online").await;
        assert_eq!(online[0]["scheduleId"], p.schedule.as_str());
        guest.expect_no_event("doctor_online", QUIET).await;
    }

    // Join and ready on B: the doctor on A hears the queue.
    let entry = p.ready(&p.b, &patient_token).await;
    let mut last = Value::Null;
    while last["queue"][0]["status"] != "READY" {
        last = doctor.expect_event("queue_updated").await[0].clone();
    }
    assert_eq!(last["queue"][0]["id"], entry.as_str());

    // Start on A: exactly one invitation on B.
    let call = p.invite("p1").await;
    let invitation = patient.expect_event("call_invitation").await;
    assert_eq!(invitation[0]["id"], call.as_str());
    patient.expect_no_event("call_invitation", QUIET).await;

    // Confirm on B: both hear it.
    let (status, body) = call_post(&p.b, &call, "confirm", &patient_token).await;
    assert_eq!(status, 200, "{body}");
    for client in [&mut doctor, &mut patient] {
        let confirmed = client.expect_event("call_confirmed").await;
        assert_eq!(confirmed[0]["id"], call.as_str());
    }

    // End on A: the patient on B is told; the call is over on both nodes.
    let (status, body) = call_post(&p.a, &call, "end", &p.doctor).await;
    assert_eq!(status, 200, "{body}");
    patient.expect_event("call_ended").await;
    let (status, _) = call_post(&p.b, &call, "activate", &patient_token).await;
    assert_eq!(status, 409);

    // Both nodes heard the bus, and say so.
    for node in [&p.a, &p.b] {
        let (status, body) = node.get("/readyz", "").await;
        assert_eq!(status, 200, "{body}");
        let metrics = node.get_as("/metrics", "").await.text().await.unwrap();
        let heard = metrics
            .lines()
            .find_map(|l| l.strip_prefix("consultd_bus_messages_total "))
            .and_then(|n| n.trim().parse::<f64>().ok());
        assert!(heard.is_some_and(|n| n >= 5.0), "{heard:?}");
        assert!(metrics.contains("consultd_bus_lag_seconds "), "{metrics}");
    }
    p.stop().await;
}

#[tokio::test]
async fn pushes_keep_commit_order_across_nodes() {
    let Some(p) = pair().await else {
        return;
    };
    p.start_schedule().await;
    let patient_token = p.b.token("p1", "patient");
    let mut doctor = p.a.connect(&p.doctor).await;
    let mut patient = p.b.connect(&patient_token).await;
    let entry = p.ready(&p.b, &patient_token).await;
    const ROUNDS: usize = 25;
    for round in 0..ROUNDS {
        let call = p.invite("p1").await;
        // Confirm on B, and on A right after it.
        let (status, body) = call_post(&p.b, &call, "confirm", &patient_token).await;
        assert_eq!(status, 200, "round {round}: {body}");
        let (status, body) = call_post(&p.a, &call, "activate", &p.doctor).await;
        assert_eq!(status, 200, "round {round}: {body}");
        let (status, body) = call_post(&p.a, &call, "end", &p.doctor).await;
        assert_eq!(status, 200, "round {round}: {body}");
        let path = format!("/api/queue/{entry}/reset");
        let (status, body) = p.a.post(&path, &p.doctor, json!({})).await;
        assert_eq!(status, 200, "round {round}: {body}");
        let path = format!("/api/queue/{entry}/toggle-ready");
        let (status, body) =
            p.b.post(&path, &patient_token, json!({ "isReady": true }))
                .await;
        assert_eq!(status, 200, "round {round}: {body}");
    }
    let (status, queue) =
        p.a.get(&format!("/api/schedules/{}/queue", p.schedule), &p.doctor)
            .await;
    assert_eq!(status, 200, "{queue}");

    for (who, client) in [("doctor", &mut doctor), ("patient", &mut patient)] {
        let mut order: Vec<(String, String)> = Vec::new();
        let mut last_queue = Value::Null;
        for (event, args) in client.drain(Duration::from_secs(3)).await {
            match event.as_str() {
                "call_confirmed" | "call_activated" | "call_ended" => {
                    order.push((id_of(&args[0]), event));
                }
                "queue_updated" => last_queue = args[0].clone(),
                _ => {}
            }
        }
        assert_eq!(order.len(), 3 * ROUNDS, "{who}: {order:?}");
        for moves in order.chunks(3) {
            let events: Vec<&str> = moves.iter().map(|(_, e)| e.as_str()).collect();
            assert_eq!(
                events,
                ["call_confirmed", "call_activated", "call_ended"],
                "{who}"
            );
            assert!(moves.iter().all(|(id, _)| *id == moves[0].0), "{who}");
        }
        if who == "doctor" {
            assert_eq!(
                last_queue["queue"], queue["data"],
                "the last queue_updated is stale"
            );
        }
    }
    p.stop().await;
}

#[tokio::test]
async fn with_both_timers_running_an_invitation_expires_once() {
    let Some(p) = pair().await else {
        return;
    };
    p.start_schedule().await;
    let patient_token = p.b.token("p1", "patient");
    let mut doctor = p.a.connect(&p.doctor).await;
    let mut patient = p.b.connect(&patient_token).await;
    p.ready(&p.b, &patient_token).await;
    let call = p.invite("p1").await;
    patient.expect_event("call_invitation").await;

    // Both nodes' clocks pass the deadline: both timers fire.
    p.a.advance(Duration::from_secs(61));
    p.b.advance(Duration::from_secs(61));
    for client in [&mut doctor, &mut patient] {
        let expired = client.expect_event("call_expired").await;
        assert_eq!(expired[0]["id"], call.as_str());
        client.expect_no_event("call_expired", QUIET).await;
    }
    assert_eq!(expiries(&p.a, &call).await, 1);
    let (status, _) = call_post(&p.b, &call, "confirm", &patient_token).await;
    assert_eq!(status, 410);
    p.stop().await;
}

#[tokio::test]
async fn an_offline_invitee_who_connects_to_the_other_node_is_invited_once() {
    let Some(p) = pair().await else {
        return;
    };
    p.start_schedule().await;
    let patient_token = p.b.token("p1", "patient");
    p.ready(&p.b, &patient_token).await;
    let call = p.invite("p1").await;
    let mut patient = p.b.connect(&patient_token).await;
    let invitation = patient.expect_event("call_invitation").await;
    assert_eq!(invitation[0]["id"], call.as_str());
    patient.expect_no_event("call_invitation", QUIET).await;
    p.stop().await;
}

/// A TCP proxy to PostgreSQL that holds every reply for `lag` once
/// lagging: the node behind it hears the bus late, and its own queries
/// answer late.
struct LaggingPostgres {
    /// The test database's URL with the proxy's address.
    url: String,
    lag_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl LaggingPostgres {
    /// Called inside the tests' runtime (it spawns the proxy's tasks).
    fn start(database_url: &str) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // postgres://user@host:port/db?…
        let (scheme_user, rest) = database_url.split_once('@').unwrap();
        let (server, path) = rest.split_once('/').unwrap();
        let server = server.to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("{scheme_user}@{}/{path}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let lag_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let lag = lag_ms.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(&server).await else {
                    continue;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = upstream.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                });
                let lag = lag.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from_server.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let ms = lag.load(Ordering::SeqCst);
                        if ms > 0 {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            url,
            lag_ms,
            accept,
        }
    }

    fn lag(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap();
        self.lag_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for LaggingPostgres {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Node B hears the bus half a second late: a patient who connects to it
/// right after the invitation was committed gets it live during the
/// connect resync, and a customer gets the chat's `waiting` the same way.
/// Each is told once.
#[tokio::test]
async fn what_the_other_node_hears_late_is_told_once_on_connect() {
    let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    let lagging = slot.clone();
    let Some(p) = pair_with(move |c| {
        let proxy = LaggingPostgres::start(c.database_url.as_deref().unwrap());
        c.database_url = Some(proxy.url.clone());
        *lagging.lock().unwrap() = Some(proxy);
    })
    .await
    else {
        return;
    };
    let proxy = slot.lock().unwrap().take().unwrap();
    // Everything but the connects goes through node A, which is on time.
    p.start_schedule().await;
    let patient_token = p.a.token("p1", "patient");
    p.ready(&p.a, &patient_token).await;
    proxy.lag(Duration::from_millis(150));

    let call = p.invite("p1").await;
    let mut patient = p.b.connect(&patient_token).await;
    let invitation = patient.expect_event("call_invitation").await;
    assert_eq!(invitation[0]["id"], call.as_str());
    patient
        .expect_no_event("call_invitation", Duration::from_secs(3))
        .await;

    let customer = p.a.token("c1", "customer");
    let mechanic = p.a.token("m1", "mechanic");
    let (status, body) = p.a.post("/api/chat-sessions", &customer, json!({})).await;
    assert_eq!(status, 201, "{body}");
    let chat = id_of(&body["data"]);
    let accept = format!("/api/chat-sessions/{chat}/accept");
    let (status, body) = p.a.post(&accept, &mechanic, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let mut shopper = p.b.connect(&customer).await;
    let told = shopper.expect_event("session:status").await;
    assert_eq!(told[0]["id"], chat.as_str());
    assert_eq!(told[0]["status"], "waiting");
    shopper
        .expect_no_event("session:status", Duration::from_secs(3))
        .await;

    proxy.lag(Duration::ZERO);
    p.stop().await;
}

#[tokio::test]
async fn an_invitation_from_a_killed_node_still_expires_on_time() {
    let Some(p) = pair().await else {
        return;
    };
    // Node B is a real process, SIGKILLed below; node A serves the patient.
    let dir = crate::binary::temp_dir();
    let db_url = p.a.config.database_url.clone().unwrap();
    let (mut b, port, log) = crate::binary::serve(
        &dir,
        "b.log",
        &[
            ("DATABASE_URL", db_url.as_str()),
            ("JWT_SECRET", SECRET),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("INVITE_TTL_SECS", "2"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let post = |path: String, token: String, body: Value| {
        let http = http.clone();
        async move {
            let res = http
                .post(format!("http://127.0.0.1:{port}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let patient_token = p.a.token("p1", "patient");
    let mut patient = p.a.connect(&patient_token).await;
    let (status, body) = post(
        format!("/api/schedules/{}/start", p.schedule),
        p.doctor.clone(),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    p.ready(&p.a, &patient_token).await;
    let (status, body) = post(
        format!("/api/schedules/{}/start-call", p.schedule),
        p.doctor.clone(),
        json!({ "patientId": "p1" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let invited_at = std::time::Instant::now();
    let call = id_of(&body["data"]);
    patient.expect_event("call_invitation").await;

    b.kill().unwrap();
    b.wait().unwrap();
    let expired = patient.expect_event("call_expired").await;
    assert_eq!(expired[0]["id"], call.as_str());
    let took = invited_at.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "expired after {took:?} (TTL 2 s)"
    );
    assert_eq!(expiries(&p.a, &call).await, 1);
    drop(log);
    std::fs::remove_dir_all(dir).ok();
    p.stop().await;
}

#[tokio::test]
async fn a_direct_call_crosses_nodes() {
    let Some(p) = pair().await else {
        return;
    };
    // Patient calls through B; the doctor is connected to A.
    let mut doctor = p.a.connect(&p.doctor).await;
    let patient_token = p.b.token("p1", "patient");
    let mut patient = p.b.connect(&patient_token).await;
    let (status, body) =
        p.b.post(
            "/api/call-sessions/start",
            &patient_token,
            json!({ "appointment_id": "direct-1", "doctor_id": "d1" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let call = body["data"]["call_session_id"].as_str().unwrap().to_owned();
    let invitation = doctor.expect_event("call_invitation").await;
    assert_eq!(invitation[0]["call_session_id"], call.as_str());
    doctor.expect_no_event("call_invitation", QUIET).await;

    let (status, body) = call_post(&p.a, &call, "confirm", &p.doctor).await;
    assert_eq!(status, 200, "{body}");
    for client in [&mut doctor, &mut patient] {
        client.expect_event("call_confirmed").await;
    }
    p.stop().await;
}

#[tokio::test]
async fn a_tutoring_request_crosses_nodes() {
    let Some(p) = pair().await else {
        return;
    };
    let teacher_token = p.a.token("t1", "teacher");
    let learner_token = p.b.token("l1", "learner");
    let mut teacher = p.a.connect(&teacher_token).await;
    let mut learner = p.b.connect(&learner_token).await;
    let (status, body) =
        p.b.post(
            "/api/sessions",
            &learner_token,
            json!({ "host_id": "t1", "skill_name": "Piano" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let row = body["data"].clone();
    assert_eq!(teacher.expect_event("session:incoming").await[0], row);
    teacher.expect_no_event("session:incoming", QUIET).await;

    let path = format!("/api/sessions/{}/accept", id_of(&row));
    let (status, body) = p.a.post(&path, &teacher_token, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let accepted = body["data"].clone();
    assert_eq!(learner.expect_event("session:accepted").await[0], accepted);
    for side in [&mut teacher, &mut learner] {
        assert_eq!(side.expect_event("session:updated").await[0], accepted);
    }
    teacher.expect_no_event("session:accepted", QUIET).await;
    p.stop().await;
}

#[tokio::test]
async fn the_admin_board_is_shared_and_the_socket_counts_are_per_node() {
    let Some(p) = pair().await else {
        return;
    };
    p.start_schedule().await;
    let _doctor_on_a = p.a.connect(&p.doctor).await;
    let mut admin_on_b = p.b.connect(&p.b.token("ops-1", "admin")).await;
    // Committed on A, seen on B's board.
    let patient = p.a.token("p1", "patient");
    let (status, body) =
        p.a.post(
            &format!("/api/schedules/{}/join-queue", p.schedule),
            &patient,
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let ack = admin_on_b.emit_ack("admin:subscribe", json!({})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let snap = &ack["snapshot"];
    let schedules = snap["board"]["schedules"].as_array().unwrap();
    assert_eq!(schedules.len(), 1, "{snap}");
    assert_eq!(schedules[0]["waiting"], 1);
    // B counts its own sockets: the doctor is on A.
    assert_eq!(snap["node"]["socketsByRole"], json!({ "admin": 1 }));
    p.stop().await;
}
