//! Two nodes sharing their rooms in Redis (issue 17, CONTRACT §3, §7, §8):
//! signaling, presence and chat between a socket on node A and one on
//! node B. PostgreSQL and Redis only (`TEST_DATABASE_URL`); each test's
//! database schema is also its Redis key prefix.

use std::time::{Duration, Instant};

use crate::common::*;
use consultd_persistence::testing::TEST_DATABASE_URL;
use consultd_server::config::Config;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(400);
const REDIS: &str = "redis://127.0.0.1:6379";

async fn two_nodes() -> Option<(TestApp, TestApp)> {
    two_nodes_with(|_| {}).await
}

/// Node A (its config adjusted by `tweak` after Redis is set) and node B,
/// which reaches Redis directly; `None` without PostgreSQL.
async fn two_nodes_with(tweak: impl FnOnce(&mut Config)) -> Option<(TestApp, TestApp)> {
    if std::env::var(TEST_DATABASE_URL).is_err() {
        eprintln!("skipped: two nodes need PostgreSQL ({TEST_DATABASE_URL}) and Redis");
        return None;
    }
    let a = TestApp::spawn_with(|c| {
        c.redis_url = Some(REDIS.into());
        tweak(c);
    })
    .await;
    let b = a
        .another_node_with(|c| c.redis_url = Some(REDIS.into()))
        .await;
    Some((a, b))
}

/// A live direct call with its doctor on node A and its patient on node B,
/// both in its room, with what they were told so far drained.
async fn doctor_on_a_patient_on_b(a: &TestApp, b: &TestApp) -> (String, SioClient, SioClient) {
    let (room, doctor_token, patient_token) = direct_call(a).await;
    let mut doctor = a.connect(&doctor_token).await;
    let mut patient = b.connect(&patient_token).await;
    join(&mut doctor, &room).await;
    join(&mut patient, &room).await;
    doctor.drain(QUIET).await;
    patient.drain(QUIET).await;
    (room, doctor, patient)
}

/// A live direct call between doctor `d1` and patient `p1`, made on `node`:
/// its room id and the two tokens.
async fn direct_call(node: &TestApp) -> (String, String, String) {
    let (room, _, doctor, patient) = direct_call_with_id(node).await;
    (room, doctor, patient)
}

/// [`direct_call`], with the call's id as well: (room, call, doctor, patient).
async fn direct_call_with_id(node: &TestApp) -> (String, String, String, String) {
    let patient = node.token("p1", "patient");
    let (status, body) = node
        .post(
            "/api/call-sessions/start",
            &patient,
            json!({ "doctor_id": "d1" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let room = body["data"]["room_id"].as_str().unwrap().to_owned();
    let call = body["data"]["call_session_id"].as_str().unwrap().to_owned();
    (room, call, node.token("d1", "doctor"), patient)
}

async fn join(c: &mut SioClient, room: &str) -> Value {
    c.emit_ack("webrtc:join_room", json!({ "roomId": room }))
        .await
}

fn relayed(events: &[(String, Vec<Value>)], name: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|(e, _)| e == name)
        .map(|(_, args)| args[0].clone())
        .collect()
}

#[tokio::test]
async fn signaling_crosses_nodes_in_order_and_a_late_joiner_gets_the_replay() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let (room, doctor_token, patient_token) = direct_call(&a).await;
    let mut doctor = a.connect(&doctor_token).await;
    let mut doctor_tab = b.connect(&doctor_token).await;
    let ack = join(&mut doctor, &room).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(join(&mut doctor_tab, &room).await["ok"], true);

    // The offer and 50 candidates from A, before the patient is there.
    let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n";
    let offer = json!({ "roomId": room, "sdp": { "type": "offer", "sdp": sdp }, "from": "forged" });
    assert_eq!(doctor.emit_ack("webrtc:offer", offer).await["ok"], true);
    for i in 0..50 {
        let c =
            json!({ "roomId": room, "candidate": { "candidate": format!("c{i}"), "sdpMid": "0" } });
        let ack = doctor.emit_ack("webrtc:ice_candidate", c).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }

    // The patient joins on B: the ack lists the doctor, then the replay.
    let mut patient = b.connect(&patient_token).await;
    let ack = join(&mut patient, &room).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let peers: Vec<&str> = ack["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["userId"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["d1"]);
    let got = patient.drain(Duration::from_millis(800)).await;
    let offers = relayed(&got, "webrtc:offer");
    assert_eq!(offers.len(), 1, "{got:?}");
    assert_eq!(offers[0]["sdp"]["sdp"], sdp);
    assert_eq!(offers[0]["from"], "d1");
    assert!(offers[0]["fromSocketId"].is_string());
    let candidates: Vec<String> = relayed(&got, "webrtc:ice_candidate")
        .iter()
        .map(|c| c["candidate"]["candidate"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    assert_eq!(candidates, expected);

    // Live now: a new offer and candidates from A reach B in order; the
    // doctor's own tab on B hears none of the doctor's messages.
    let offer2 = json!({ "roomId": room, "sdp": { "type": "offer", "sdp": "second" } });
    assert_eq!(doctor.emit_ack("webrtc:offer", offer2).await["ok"], true);
    for i in 0..50 {
        let c = json!({ "roomId": room, "candidate": { "candidate": format!("d{i}") } });
        doctor.emit("webrtc:ice_candidate", c);
    }
    let got = patient.drain(Duration::from_millis(800)).await;
    assert_eq!(relayed(&got, "webrtc:offer")[0]["sdp"]["sdp"], "second");
    let live: Vec<String> = relayed(&got, "webrtc:ice_candidate")
        .iter()
        .map(|c| c["candidate"]["candidate"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("d{i}")).collect();
    assert_eq!(live, expected);
    let own = doctor_tab.drain(QUIET).await;
    assert!(relayed(&own, "webrtc:offer").is_empty(), "{own:?}");
    assert!(relayed(&own, "webrtc:ice_candidate").is_empty(), "{own:?}");

    // A later joiner is replayed only the new description and what
    // followed it.
    let mut patient_tab = a.connect(&patient_token).await;
    assert_eq!(join(&mut patient_tab, &room).await["ok"], true);
    let got = patient_tab.drain(Duration::from_millis(600)).await;
    let offers = relayed(&got, "webrtc:offer");
    assert_eq!(offers.len(), 1, "{got:?}");
    assert_eq!(offers[0]["sdp"]["sdp"], "second");
    assert_eq!(relayed(&got, "webrtc:ice_candidate").len(), 50);

    // `to`: only the target hears it, whichever node it is on.
    let answer = json!({ "roomId": room, "to": "d1", "sdp": { "type": "answer", "sdp": "x" } });
    assert_eq!(patient.emit_ack("webrtc:answer", answer).await["ok"], true);
    for c in [&mut doctor, &mut doctor_tab] {
        let got = c.expect_event("webrtc:answer").await;
        assert_eq!(got[0]["from"], "p1");
    }
    patient_tab.expect_no_event("webrtc:answer", QUIET).await;
    let to_nobody = json!({ "roomId": room, "to": "someone", "sdp": { "type": "answer" } });
    let ack = patient.emit_ack("webrtc:answer", to_nobody).await;
    assert_eq!(code(&ack), "not_found", "{ack}");

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn presence_is_by_user_across_nodes() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let (room, doctor_token, patient_token) = direct_call(&a).await;
    let mut doctor = a.connect(&doctor_token).await;
    join(&mut doctor, &room).await;
    let mut tab_a = a.connect(&patient_token).await;
    let mut tab_b = b.connect(&patient_token).await;
    join(&mut tab_a, &room).await;
    join(&mut tab_b, &room).await;
    let got = doctor.drain(QUIET).await;
    assert_eq!(relayed(&got, "webrtc:peer_joined").len(), 1, "{got:?}");
    let sync = relayed(&got, "presence:sync");
    let last = sync.last().unwrap();
    assert_eq!(last["users"]["p1"]["connections"], 2, "{last}");
    assert_eq!(last["users"]["d1"]["connections"], 1, "{last}");
    assert_eq!(last["roomId"], room.as_str());

    // One tab goes: nobody is told the patient left.
    tab_b.disconnect();
    let got = doctor.drain(Duration::from_millis(600)).await;
    assert!(relayed(&got, "presence:leave").is_empty(), "{got:?}");
    assert!(relayed(&got, "webrtc:peer_left").is_empty(), "{got:?}");
    assert_eq!(
        relayed(&got, "presence:sync").last().unwrap()["users"]["p1"]["connections"],
        1
    );
    // The other goes too: exactly one of each.
    tab_a.disconnect();
    let got = doctor.drain(Duration::from_millis(600)).await;
    assert_eq!(relayed(&got, "presence:leave").len(), 1, "{got:?}");
    assert_eq!(relayed(&got, "webrtc:peer_left").len(), 1, "{got:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_end_closes_the_room_on_every_node_and_strangers_get_nothing() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let (room, call, doctor_token, patient_token) = direct_call_with_id(&a).await;
    let mut doctor = a.connect(&doctor_token).await;
    let mut patient = b.connect(&patient_token).await;
    join(&mut doctor, &room).await;
    join(&mut patient, &room).await;

    // Strangers on either node: refused, and they hear nothing.
    let mut strangers = vec![
        a.connect(&a.token("x1", "patient")).await,
        b.connect(&b.token("x2", "doctor")).await,
    ];
    for s in &mut strangers {
        let ack = join(s, &room).await;
        assert_eq!(code(&ack), "forbidden", "{ack}");
        let offer = json!({ "roomId": room, "sdp": { "type": "offer" } });
        assert_eq!(code(&s.emit_ack("webrtc:offer", offer).await), "forbidden");
    }
    let offer = json!({ "roomId": room, "sdp": { "type": "offer", "sdp": "secret" } });
    assert_eq!(doctor.emit_ack("webrtc:offer", offer).await["ok"], true);
    patient.expect_event("webrtc:offer").await;
    for s in &mut strangers {
        s.expect_silence(QUIET).await;
    }

    // Confirmed on B, ended on A: the patient on B hears it, and the room
    // is gone there.
    let path = format!("/api/call-sessions/{call}/confirm");
    let (status, body) = b.post(&path, &doctor_token, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/api/call-sessions/{call}/end");
    let (status, body) = a.post(&path, &doctor_token, json!({})).await;
    assert_eq!(status, 200, "{body}");
    patient.expect_event("call_ended").await;
    let offer = json!({ "roomId": room, "sdp": { "type": "offer" } });
    let ack = patient.emit_ack("webrtc:offer", offer).await;
    assert_eq!(code(&ack), "forbidden", "{ack}");
    let ack = join(&mut patient, &room).await;
    assert_eq!(code(&ack), "forbidden", "{ack}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn chat_crosses_nodes() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let customer_token = a.token("c1", "customer");
    let mechanic_token = b.token("m1", "mechanic");
    let (status, body) = a
        .post(
            "/api/chat-sessions",
            &customer_token,
            json!({ "concern": "brakes" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let chat = id_of(&body["data"]);
    let path = format!("/api/chat-sessions/{chat}/accept");
    let (status, body) = b.post(&path, &mechanic_token, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let mut customer = a.connect(&customer_token).await;
    let mut mechanic = b.connect(&mechanic_token).await;
    for side in [&mut customer, &mut mechanic] {
        assert_eq!(
            side.expect_event("session:status").await[0]["status"],
            "waiting"
        );
    }
    let ack = customer
        .emit_ack("chat:join_room", json!({ "roomId": chat }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = mechanic
        .emit_ack("chat:join_room", json!({ "roomId": chat }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    for side in [&mut customer, &mut mechanic] {
        let got = side.drain(Duration::from_millis(800)).await;
        let live: Vec<&Value> = got
            .iter()
            .filter(|(e, args)| e == "session:status" && args[0]["status"] == "live")
            .map(|(_, args)| &args[0])
            .collect();
        assert_eq!(live.len(), 1, "{got:?}");
    }

    // Typing crosses; messages from both arrive in order for both.
    let typing = json!({ "roomId": chat, "isTyping": true });
    assert_eq!(customer.emit_ack("chat:typing", typing).await["ok"], true);
    assert_eq!(
        mechanic.expect_event("chat:typing").await[0]["userId"],
        "c1"
    );
    for i in 0..10 {
        let (from, id) = if i % 2 == 0 {
            (&mut customer, "c")
        } else {
            (&mut mechanic, "m")
        };
        let msg = json!({ "roomId": chat, "content": format!("{id}{i}"), "clientMessageId": format!("k{i}") });
        assert_eq!(from.emit_ack("chat:send_message", msg).await["ok"], true);
    }
    let resend = json!({ "roomId": chat, "content": "m1", "clientMessageId": "k1" });
    let ack = mechanic.emit_ack("chat:send_message", resend).await;
    assert_eq!(ack["duplicate"], true, "{ack}");
    let expected: Vec<String> = (0..10)
        .map(|i| format!("{}{i}", if i % 2 == 0 { "c" } else { "m" }))
        .collect();
    for side in [&mut customer, &mut mechanic] {
        let got = side.drain(Duration::from_millis(800)).await;
        let contents: Vec<String> = relayed(&got, "chat:new_message")
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(contents, expected);
    }

    // A read marker crosses; the end on A stops typing on B.
    let (_, history) = a
        .get(&format!("/api/chat/{chat}/messages"), &customer_token)
        .await;
    let last = history["data"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["id"].clone())
        .unwrap_or_else(|| panic!("{history}"));
    let read = json!({ "roomId": chat, "messageId": last });
    assert_eq!(mechanic.emit_ack("chat:read", read).await["ok"], true);
    assert_eq!(customer.expect_event("chat:read").await[0]["userId"], "m1");
    let path = format!("/api/chat-sessions/{chat}/end");
    let (status, body) = a.post(&path, &customer_token, json!({})).await;
    assert_eq!(status, 200, "{body}");
    mechanic.expect_event("session:status").await;
    let typing = json!({ "roomId": chat, "isTyping": true });
    let ack = mechanic.emit_ack("chat:typing", typing).await;
    assert_eq!(code(&ack), "conflict", "{ack}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_killed_node_is_reaped_and_its_patient_rejoins_elsewhere() {
    let Some((a, b0)) = two_nodes().await else {
        return;
    };
    b0.stop().await;
    // Node B is a real process, SIGKILLed mid-call.
    let dir = crate::binary::temp_dir();
    let db_url = a.config.database_url.clone().unwrap();
    let (mut b, port, log) = crate::binary::serve(
        &dir,
        "b.log",
        &[
            ("DATABASE_URL", db_url.as_str()),
            ("JWT_SECRET", SECRET),
            ("REDIS_URL", REDIS),
        ],
    )
    .await;
    let b_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (room, call, doctor_token, patient_token) = direct_call_with_id(&a).await;
    let mut doctor = a.connect(&doctor_token).await;
    join(&mut doctor, &room).await;
    let offer = json!({ "roomId": room, "sdp": { "type": "offer", "sdp": "kept" } });
    assert_eq!(doctor.emit_ack("webrtc:offer", offer).await["ok"], true);
    let mut patient = SioClient::connect(b_addr, Handshake::auth(&patient_token))
        .await
        .unwrap();
    assert_eq!(join(&mut patient, &room).await["ok"], true);
    doctor.expect_event("webrtc:peer_joined").await;
    doctor.drain(QUIET).await;

    b.kill().unwrap();
    b.wait().unwrap();
    let killed = Instant::now();
    let left = doctor.expect_event("webrtc:peer_left").await;
    assert_eq!(left[0]["userId"], "p1");
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(7), "peer_left after {took:?}");

    // The patient comes back through A and is replayed the offer.
    let mut patient = a.connect(&patient_token).await;
    assert_eq!(join(&mut patient, &room).await["ok"], true);
    let offer = patient.expect_event("webrtc:offer").await;
    assert_eq!(offer[0]["sdp"]["sdp"], "kept");
    // The node's death ended nothing: the call is still live.
    let (status, body) = a
        .get(&format!("/api/call-sessions/{call}"), &doctor_token)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "INVITED", "{body}");
    drop(log);
    std::fs::remove_dir_all(dir).ok();
    a.stop().await;
}

/// A TCP proxy in front of the real Redis, so that a test can cut a node's
/// Redis connections (as `CLIENT KILL` does) or refuse them (Redis down)
/// without touching the Redis that other tests share.
struct RedisProxy {
    url: String,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl RedisProxy {
    async fn start() -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = {
            let (open, links) = (open.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: refused
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut redis) =
                            tokio::net::TcpStream::connect("127.0.0.1:6379").await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut redis).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            })
        };
        Self {
            url,
            open,
            links,
            accept,
        }
    }

    /// Closes every connection through the proxy.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Redis "down": every connection is cut and new ones are refused.
    fn down(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut();
    }

    fn up(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Sends offers from `from` until `to` hears one; how long that took.
async fn relay_resumes(from: &mut SioClient, to: &mut SioClient, room: &str) -> Duration {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "relay did not resume"
        );
        let offer = json!({ "roomId": room, "sdp": { "type": "offer", "sdp": "again" } });
        from.emit("webrtc:offer", offer);
        let got = to.drain(Duration::from_millis(150)).await;
        if !relayed(&got, "webrtc:offer").is_empty() {
            return start.elapsed();
        }
    }
}

#[tokio::test]
async fn relay_resumes_after_redis_connections_drop_and_says_unavailable_while_down() {
    let proxy = RedisProxy::start().await;
    // Node A reaches Redis through the proxy; node B directly.
    let Some((a, b)) = two_nodes_with(|c| c.redis_url = Some(proxy.url.clone())).await else {
        return;
    };
    let (room, mut doctor, mut patient) = doctor_on_a_patient_on_b(&a, &b).await;

    // Every connection of A to Redis is cut (as CLIENT KILL does).
    proxy.cut();
    let took = relay_resumes(&mut doctor, &mut patient, &room).await;
    assert!(
        took < Duration::from_secs(3),
        "relay resumed after {took:?}"
    );
    let took = relay_resumes(&mut patient, &mut doctor, &room).await;
    assert!(
        took < Duration::from_secs(3),
        "relay resumed after {took:?}"
    );

    // Redis unreachable: signaling is refused as `unavailable`, and A is
    // not ready.
    proxy.down();
    let start = Instant::now();
    let refused = loop {
        let offer = json!({ "roomId": room, "sdp": { "type": "offer" } });
        let ack = doctor.emit_ack("webrtc:offer", offer).await;
        if ack["ok"] != true {
            break ack;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code(&refused), "unavailable", "{refused}");
    let (status, body) = a.get("/readyz", "").await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = b.get("/readyz", "").await;
    assert_eq!(status, 200);

    // Back up: relay and readiness return within about 2 s.
    // Down for longer than a node may stay silent: node B reaps A's
    // sockets, and A, back, registers them again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.up();
    let back = Instant::now();
    relay_resumes(&mut doctor, &mut patient, &room).await;
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "relay resumed after {took:?}"
    );
    let (status, body) = a.get("/readyz", "").await;
    assert_eq!(status, 200, "{body}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn rooms_come_back_after_redis_forgets_everything() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let (room, mut doctor, mut patient) = doctor_on_a_patient_on_b(&a, &b).await;

    // What a Redis restart without persistence does to this test's keys:
    // all gone, and the scripts too.
    let prefix = a
        .server()
        .state()
        .redis
        .as_ref()
        .unwrap()
        .prefix()
        .to_owned();
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();

    // Both nodes register their sockets again: relay and `to` work.
    let took = relay_resumes(&mut doctor, &mut patient, &room).await;
    assert!(
        took < Duration::from_secs(3),
        "relay resumed after {took:?}"
    );
    let answer = json!({ "roomId": room, "to": "d1", "sdp": { "type": "answer" } });
    let start = Instant::now();
    loop {
        let ack = patient.emit_ack("webrtc:answer", answer.clone()).await;
        if ack["ok"] == true {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "{ack}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    doctor.expect_event("webrtc:answer").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_call_is_abandoned_only_when_its_participants_are_gone_from_every_node() {
    let Some((a, b)) = two_nodes_with(|c| c.abandon_secs = 20).await else {
        return;
    };
    let (_, call, doctor_token, patient_token) = direct_call_with_id(&a).await;
    let path = format!("/api/call-sessions/{call}/confirm");
    let (status, body) = a.post(&path, &doctor_token, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let status_of = || async {
        let admin = a.token("root", "admin");
        let (_, body) = a.get(&format!("/api/call-sessions/{call}"), &admin).await;
        body["data"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // Both connected to B only: A's sweep must not take them for gone.
    let doctor = b.connect(&doctor_token).await;
    let patient = b.connect(&patient_token).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.advance(Duration::from_secs(21));
    b.advance(Duration::from_secs(21));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status_of().await, "CONFIRMED");

    // Both gone from every node for the abandon time: it ends, once.
    doctor.disconnect();
    patient.disconnect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.advance(Duration::from_secs(21));
    b.advance(Duration::from_secs(21));
    let start = Instant::now();
    while status_of().await != "ENDED" {
        assert!(start.elapsed() < Duration::from_secs(5), "not abandoned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let abandons = a
        .audit_actions(&call)
        .await
        .iter()
        .filter(|x| x.ends_with("abandon"))
        .count();
    assert_eq!(abandons, 1);
    a.stop().await;
    b.stop().await;
}
