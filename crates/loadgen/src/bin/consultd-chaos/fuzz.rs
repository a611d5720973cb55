//! The fuzzer: for a bounded time, random and mutated input on every
//! surface at once —
//! - REST: every route in the server's `ROUTES`, with mutated bodies,
//!   broken JSON, random queries, ids that exist and ids that do not, good,
//!   missing and forged tokens;
//! - socket events: every name in `EVENTS` (and unknown ones), shaped and
//!   random payloads, with and without acks;
//! - raw Engine.IO/Socket.IO frames, EIO3 and EIO4, text and binary, over
//!   websocket (fragmented frames included) and long-polling (packets split
//!   across requests).
//!
//! Meanwhile a sentinel call relays a candidate every 20 ms between its
//! two participants. It fails on: a 5xx, an ack never answered, a sentinel
//! message lost, reordered or over 2 s late, the process exiting or a panic
//! in its log, and any database invariant broken afterwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consultd_loadgen::eio::{Conn, ws_url};
use consultd_server::http::ROUTES;
use consultd_server::socket::EVENTS;
use fastrand::Rng;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::input;
use crate::invariants;
use crate::node::{Launch, Node, panics, token};

const HOSTS: &[(&str, &str)] = &[
    ("fz-h0", "doctor"),
    ("fz-h1", "teacher"),
    ("fz-h2", "mechanic"),
    ("fz-h3", "doctor"),
];
const GUESTS: &[(&str, &str)] = &[
    ("fz-g0", "patient"),
    ("fz-g1", "learner"),
    ("fz-g2", "customer"),
    ("fz-g3", "patient"),
    ("fz-g4", "customer"),
];

#[derive(Default)]
struct Counts {
    rest: AtomicU64,
    events: AtomicU64,
    acks: AtomicU64,
    frames: AtomicU64,
    relayed: AtomicU64,
}

struct Shared {
    base: String,
    secret: String,
    deadline: Instant,
    /// Ids the server handed out (calls, rooms, entries, sessions, messages…).
    ids: Mutex<Vec<String>>,
    counts: Counts,
    violations: Mutex<Vec<String>>,
}

impl Shared {
    fn violation(&self, v: String) {
        eprintln!("violation: {v}");
        if let Ok(mut all) = self.violations.lock() {
            all.push(v);
        }
    }

    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    fn some_id(&self, rng: &mut Rng) -> String {
        let known = self
            .ids
            .lock()
            .ok()
            .and_then(|ids| (!ids.is_empty()).then(|| ids[rng.usize(..ids.len())].clone()));
        match known {
            Some(id) if rng.u8(0..10) < 7 => id,
            _ => input::string(rng),
        }
    }

    fn learn(&self, data: &Value) {
        let mut found = Vec::new();
        collect_ids(data, &mut found);
        if let Ok(mut ids) = self.ids.lock() {
            for id in found {
                if ids.len() < 5000 && !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }

    fn user_token(&self, rng: &mut Rng) -> Option<String> {
        let all: Vec<&(&str, &str)> = HOSTS.iter().chain(GUESTS).collect();
        match rng.u8(0..20) {
            0 => None,
            1 => Some(input::string(rng)),
            2 => Some(token(&self.secret, "fz-admin", "admin")),
            3 => Some(token("not-the-secret-not-the-secret-00", "fz-h0", "doctor")),
            _ => {
                let (sub, role) = all[rng.usize(..all.len())];
                Some(token(&self.secret, sub, role))
            }
        }
    }
}

fn collect_ids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if let Value::String(s) = v
                    && (k == "id" || k.ends_with("Id") || k.ends_with("_id"))
                {
                    out.push(s.clone());
                }
                collect_ids(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_ids(v, out)),
        _ => {}
    }
}

/// A body a route would accept, before mutation.
fn shaped_body(rng: &mut Rng, shared: &Shared, template: &str) -> Value {
    let host = HOSTS[rng.usize(..HOSTS.len())].0;
    let guest = GUESTS[rng.usize(..GUESTS.len())].0;
    match template {
        "/api/schedules" => {
            json!({ "date": "2026-12-02", "startTime": "09:00", "endTime": "17:00" })
        }
        "/api/schedules/{id}/start-call" => json!({ "patientId": guest, "callType": "video" }),
        "/api/queue/{id}/toggle-ready" => json!({ "isReady": rng.bool() }),
        "/api/call-sessions/start" => {
            let mut b = json!({ "doctor_id": host, "call_type": "voice" });
            if rng.bool() {
                b["appointment_id"] = json!(shared.some_id(rng));
            }
            b
        }
        "/api/call-sessions/{id}/set-peer-id" => json!({ "peerId": input::string(rng) }),
        "/api/sessions" => json!({ "host_id": host, "skill_name": "Chess" }),
        "/api/chat-sessions" => json!({ "concern": "brakes", "duration_minutes": 1 }),
        _ => json!({}),
    }
}

fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

async fn rest_worker(shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng::with_seed(seed);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    while shared.running() {
        let (method, template) = ROUTES[rng.usize(..ROUTES.len())];
        let path = template.replace("{id}", &encode(&shared.some_id(&mut rng)));
        let query = match rng.u8(0..4) {
            0 => format!(
                "?{}={}&limit={}",
                ["status", "entityId", "before", "limit"][rng.usize(..4)],
                encode(&input::string(&mut rng)),
                encode(&input::string(&mut rng))
            ),
            _ => String::new(),
        };
        let url = format!("{}{path}{query}", shared.base);
        let mut req = if method == "GET" {
            http.get(&url)
        } else {
            let body = match rng.u8(0..10) {
                0..=5 => {
                    let good = shaped_body(&mut rng, &shared, template);
                    let body = if rng.bool() {
                        input::mutate(&mut rng, good)
                    } else {
                        good
                    };
                    body.to_string()
                }
                6 | 7 => input::value(&mut rng, 4).to_string(),
                _ => {
                    let good = shaped_body(&mut rng, &shared, template).to_string();
                    input::broken_json(&mut rng, &good)
                }
            };
            http.post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
        };
        if let Some(t) = shared.user_token(&mut rng) {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        shared.counts.rest.fetch_add(1, Ordering::Relaxed);
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                if status >= 500 && status != 503 {
                    shared.violation(format!("{method} {path}{query} answered {status}: {body}"));
                } else if (200..300).contains(&status) {
                    shared.learn(&body["data"]);
                } else if template != "/metrics" && body["success"] != false {
                    shared.violation(format!(
                        "{method} {path} {status} without the envelope: {body}"
                    ));
                }
            }
            // A header the client library will not send (the token drew
            // control characters): nothing reached the server.
            Err(e) if e.is_builder() || !shared.running() => drop(e),
            Err(e) => shared.violation(format!("{method} {path}: no answer: {e}")),
        }
    }
}

/// A payload for `event` that is well formed but for its room and ids.
fn shaped_payload(rng: &mut Rng, shared: &Shared, event: &str) -> Value {
    let room = shared.some_id(rng);
    match event {
        "chat:send_message" => {
            json!({ "roomId": room, "content": input::string(rng), "clientMessageId": rng.u32(..100) })
        }
        "chat:typing" => json!({ "roomId": room, "isTyping": rng.bool() }),
        "chat:read" => json!({ "roomId": room, "messageId": shared.some_id(rng) }),
        "join_consultation_room" => json!({ "appointmentId": room }),
        e if e.contains("offer") || e.contains("answer") || e.contains("candidate") => {
            let mut p = json!({ "roomId": room, "sdp": "v=0", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host" });
            if rng.bool() {
                p["to"] = json!(GUESTS[rng.usize(..GUESTS.len())].0);
            }
            p
        }
        _ => json!({ "roomId": room }),
    }
}

async fn event_worker(shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng::with_seed(seed);
    let url = ws_url(&shared.base);
    while shared.running() {
        let all: Vec<&(&str, &str)> = HOSTS.iter().chain(GUESTS).collect();
        let (sub, role) = all[rng.usize(..all.len())];
        let mut conn = match Conn::connect(&url, &token(&shared.secret, sub, role)).await {
            Ok(c) => c,
            // The per-user socket cap, mostly: other workers hold this user's sockets.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        for _ in 0..rng.usize(10..300) {
            if !shared.running() {
                break;
            }
            let event = if rng.u8(0..10) == 0 {
                input::string(&mut rng)
            } else {
                EVENTS[rng.usize(..EVENTS.len())].to_owned()
            };
            let payload = if rng.u8(0..10) < 6 {
                let good = shaped_payload(&mut rng, &shared, &event);
                if rng.bool() {
                    input::mutate(&mut rng, good)
                } else {
                    good
                }
            } else {
                input::value(&mut rng, 4)
            };
            shared.counts.events.fetch_add(1, Ordering::Relaxed);
            let name = serde_json::to_string(&event).unwrap_or_default();
            if name.contains('\\') {
                // socketioxide cannot read an event name with a JSON escape
                // and closes the connection (upstream): send it last.
                let _ = conn.send(format!("42[{name},{payload}]")).await;
                break;
            }
            if rng.bool() {
                let frame = format!("{name},{payload}");
                match tokio::time::timeout(Duration::from_secs(5), conn.request_raw(&frame)).await {
                    Ok(Ok(answer)) => {
                        shared.counts.acks.fetch_add(1, Ordering::Relaxed);
                        let parsed: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
                        if !parsed["ok"].is_boolean() {
                            shared
                                .violation(format!("{event} {payload}: ack without ok: {answer}"));
                        }
                        if parsed["ok"] == true {
                            shared.learn(&parsed);
                        }
                    }
                    Ok(Err(e)) => {
                        shared.violation(format!(
                            "{event} {payload}: connection lost awaiting the ack: {e}"
                        ));
                        break;
                    }
                    Err(_) => {
                        shared.violation(format!("{event} {payload}: ack not answered in 5 s"));
                        break;
                    }
                }
            } else if conn.send(format!("42[{name},{payload}]")).await.is_err() {
                break;
            }
        }
    }
}

/// One raw frame for a connection speaking `eio` (3 or 4).
fn raw_frame(rng: &mut Rng, eio: u8, token: &str) -> Message {
    let json = input::value(rng, 3).to_string();
    let text = match rng.u8(0..14) {
        0 if eio == 4 => format!("40{}", json!({ "token": token })),
        1 => format!("40/{},{json}", input::string(rng)),
        2 => format!("42{json}"),
        3 => format!("42{}[\"webrtc:offer\",{json}]", rng.u64(..)),
        4 => format!("43{}[{json}]", rng.u32(..)),
        5 => "451-[\"chat:send_message\",{\"_placeholder\":true,\"num\":0}]".to_owned(),
        6 => format!("{}{json}", rng.u8(0..10)),
        7 => ["2", "3", "5", "6", "1", "2probe", "41"][rng.usize(..7)].to_owned(),
        8 => input::broken_json(rng, &format!("42[\"chat:typing\",{json}]")),
        9 => {
            return Message::binary(
                (0..rng.usize(0..512))
                    .map(|_| rng.u8(..))
                    .collect::<Vec<u8>>(),
            );
        }
        10 => {
            // A text message split in two websocket frames.
            let whole = format!("42[\"webrtc:join_room\",{json}]");
            let cut = (0..=whole.len() / 2)
                .rev()
                .find(|i| whole.is_char_boundary(*i))
                .unwrap_or(0);
            return Message::Frame(Frame::message(
                whole.as_bytes()[..cut].to_vec(),
                OpCode::Data(Data::Text),
                false,
            ));
        }
        11 => {
            return Message::Frame(Frame::message(
                json.into_bytes(),
                OpCode::Data(Data::Continue),
                true,
            ));
        }
        _ => input::string(rng),
    };
    Message::text(text)
}

async fn ws_frames(shared: &Shared, rng: &mut Rng) {
    let eio = if rng.bool() { 3 } else { 4 };
    let t = token(
        &shared.secret,
        GUESTS[rng.usize(..GUESTS.len())].0,
        "patient",
    );
    let base = shared.base.replacen("http://", "ws://", 1);
    let url = format!("{base}/socket.io/?EIO={eio}&transport=websocket&token={t}");
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    for _ in 0..rng.usize(1..30) {
        shared.counts.frames.fetch_add(1, Ordering::Relaxed);
        if ws.send(raw_frame(rng, eio, &t)).await.is_err() {
            return;
        }
        // Read what comes back, briefly; nothing is expected.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(2), ws.next()).await
        {
        }
    }
}

async fn polling_frames(shared: &Shared, rng: &mut Rng, http: &reqwest::Client) {
    let eio = if rng.bool() { 3 } else { 4 };
    let t = token(
        &shared.secret,
        GUESTS[rng.usize(..GUESTS.len())].0,
        "learner",
    );
    let base = format!("{}/socket.io/?EIO={eio}&transport=polling", shared.base);
    let check = |what: &str, res: &Result<reqwest::Response, reqwest::Error>| {
        if let Ok(r) = res
            && r.status().as_u16() >= 500
        {
            shared.violation(format!("polling {what} answered {}", r.status()));
        }
    };
    let open = http.get(format!("{base}&token={t}")).send().await;
    check("handshake", &open);
    let Ok(open) = open else { return };
    let text = open.text().await.unwrap_or_default();
    let sid = text
        .find("\"sid\":\"")
        .and_then(|i| text[i + 7..].split('"').next())
        .map(str::to_owned)
        .unwrap_or_else(|| input::string(rng));
    let sid = if rng.u8(0..8) == 0 {
        input::string(rng)
    } else {
        sid
    };
    for _ in 0..rng.usize(1..10) {
        shared.counts.frames.fetch_add(1, Ordering::Relaxed);
        let packets: Vec<String> = (0..rng.usize(1..4))
            .map(|_| match raw_frame(rng, eio, &t) {
                Message::Text(s) => s.to_string(),
                _ => input::string(rng),
            })
            .collect();
        let body = if eio == 4 {
            packets.join("\u{1e}")
        } else {
            packets
                .iter()
                .map(|p| format!("{}:{p}", p.chars().count()))
                .collect()
        };
        // Sometimes only part of it: the rest never comes, or comes next.
        let cut = if rng.bool() {
            body.len()
        } else {
            rng.usize(..=body.len())
        };
        let cut = (0..=cut)
            .rev()
            .find(|i| body.is_char_boundary(*i))
            .unwrap_or(0);
        let res = http
            .post(format!("{base}&sid={}", encode(&sid)))
            .body(body[..cut].to_owned())
            .send()
            .await;
        check("post", &res);
        if rng.bool() {
            let res = http
                .get(format!("{base}&sid={}", encode(&sid)))
                .timeout(Duration::from_millis(300))
                .send()
                .await;
            if let Ok(r) = &res
                && r.status().as_u16() >= 500
            {
                check("poll", &res);
            }
        }
    }
}

async fn frame_worker(shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng::with_seed(seed);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    while shared.running() {
        if rng.bool() {
            ws_frames(&shared, &mut rng).await;
        } else {
            polling_frames(&shared, &mut rng, &http).await;
        }
    }
}

/// A real call between two users the fuzzers never use: a candidate every
/// 20 ms from the doctor must reach the patient in order, within 2 s.
async fn sentinel(shared: Arc<Shared>) -> Result<(), String> {
    let http = reqwest::Client::new();
    let (doctor, patient) = (
        token(&shared.secret, "sentinel-d", "doctor"),
        token(&shared.secret, "sentinel-p", "patient"),
    );
    let started: Value = http
        .post(format!("{}/api/call-sessions/start", shared.base))
        .bearer_auth(&patient)
        .json(&json!({ "doctor_id": "sentinel-d" }))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let id = started["data"]["call_session_id"]
        .as_str()
        .ok_or("no call")?
        .to_owned();
    http.post(format!("{}/api/call-sessions/{id}/confirm", shared.base))
        .bearer_auth(&doctor)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let url = ws_url(&shared.base);
    let mut d = Conn::connect(&url, &doctor).await?;
    let mut p = Conn::connect(&url, &patient).await?;
    let join = format!("{{\"roomId\":\"{id}\"}}");
    d.request("webrtc:join_room", &join).await?;
    p.request("webrtc:join_room", &join).await?;
    let epoch = Instant::now();
    let sender = {
        let shared = shared.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut seq = 0u64;
            while shared.running() {
                tokio::select! {
                    _ = tick.tick() => {
                        let sent = epoch.elapsed().as_millis();
                        let frame = format!("42[\"webrtc:ice_candidate\",{{\"roomId\":\"{id}\",\"seq\":{seq},\"t\":{sent}}}]");
                        if d.send(frame).await.is_err() {
                            return Err("the sentinel doctor lost its connection".to_owned());
                        }
                        seq += 1;
                    }
                    read = d.next_text() => { read?; }
                }
            }
            Ok(seq)
        })
    };
    let mut expected = 0u64;
    while shared.running() {
        let frame = match tokio::time::timeout(Duration::from_secs(2), p.next_text()).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return Err(format!("the sentinel patient lost its connection: {e}")),
            Err(_) if !shared.running() => break,
            Err(_) => return Err(format!("no sentinel relay for 2 s after #{expected}")),
        };
        let Some(body) = frame.strip_prefix("42[\"webrtc:ice_candidate\",") else {
            continue;
        };
        let v: Value =
            serde_json::from_str(body.trim_end_matches(']')).map_err(|e| e.to_string())?;
        let seq = v["seq"].as_u64().ok_or("no seq")?;
        if seq != expected {
            return Err(format!(
                "sentinel relay #{seq} arrived when #{expected} was due"
            ));
        }
        let late = epoch
            .elapsed()
            .as_millis()
            .saturating_sub(u128::from(v["t"].as_u64().unwrap_or(0)));
        if late > 2000 {
            return Err(format!("sentinel relay #{seq} took {late} ms"));
        }
        expected += 1;
        shared.counts.relayed.fetch_add(1, Ordering::Relaxed);
    }
    let sent = sender.await.map_err(|e| e.to_string())??;
    if sent.saturating_sub(expected) > 5 {
        return Err(format!("sentinel: {sent} sent, {expected} received"));
    }
    Ok(())
}

pub(crate) async fn run(launch: Launch, seconds: u64, seed: u64) -> Result<(), String> {
    let node = Node::start(&launch, "fuzz.log").await?;
    println!("fuzzing {} for {seconds} s (seed {seed})", node.url(""));
    let shared = Arc::new(Shared {
        base: node.url(""),
        secret: launch.secret.clone(),
        deadline: Instant::now() + Duration::from_secs(seconds),
        ids: Mutex::new(Vec::new()),
        counts: Counts::default(),
        violations: Mutex::new(Vec::new()),
    });
    let sentinel_task = tokio::spawn(sentinel(shared.clone()));
    let mut workers = Vec::new();
    for i in 0..3 {
        workers.push(tokio::spawn(rest_worker(shared.clone(), seed + i)));
        workers.push(tokio::spawn(event_worker(shared.clone(), seed + 100 + i)));
        workers.push(tokio::spawn(frame_worker(shared.clone(), seed + 200 + i)));
    }
    for w in workers {
        let _ = w.await;
    }
    match sentinel_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => shared.violation(e),
        Err(e) => shared.violation(format!("sentinel: {e}")),
    }
    let mut node = node;
    if !node.alive() {
        shared.violation("consultd exited during the fuzzing".into());
    }
    let log = node.log_text();
    for p in panics(&log) {
        shared.violation(format!("log: {p}"));
    }
    if let Err(e) = node.terminate(Duration::from_secs(20)).await {
        shared.violation(format!("SIGTERM after fuzzing: {e}"));
    }
    let (checked, broken) = invariants::check(&launch.database_url, None).await?;
    for b in broken {
        shared.violation(format!("invariant: {b}"));
    }
    let c = &shared.counts;
    let tried = c.rest.load(Ordering::Relaxed)
        + c.events.load(Ordering::Relaxed)
        + c.frames.load(Ordering::Relaxed);
    println!(
        "fuzz: {tried} inputs tried — {} REST requests, {} socket events ({} acks answered), {} raw Engine.IO frames; \
         sentinel relayed {} in order; database: {} calls, {} queue entries, {} schedules, {} chats, {} audit rows checked",
        c.rest.load(Ordering::Relaxed),
        c.events.load(Ordering::Relaxed),
        c.acks.load(Ordering::Relaxed),
        c.frames.load(Ordering::Relaxed),
        c.relayed.load(Ordering::Relaxed),
        checked.calls,
        checked.entries,
        checked.schedules,
        checked.chats,
        checked.audit_rows,
    );
    let violations = shared
        .violations
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    crate::verdict("fuzz", &violations)
}
