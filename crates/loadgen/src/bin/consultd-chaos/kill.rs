//! Crash safety: real clients run the queue, direct, tutoring and chat
//! flows while the server is killed with SIGKILL at a random moment, again
//! and again on the same database. After each restart:
//! - every transition a client got an answer for is in the database (its
//!   audit row is there; a chat message it got an ack for is stored);
//! - the invariants hold, and no invitation is left overdue;
//! - an invitation issued before the kill expires on time after the
//!   restart, exactly once: one `call_expired` to each participant, one
//!   `call.expire` audit row.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use consultd_loadgen::eio::{Conn, ws_url};
use consultd_persistence::entity::{audit_log, chat_message};
use fastrand::Rng;
use sea_orm::{Database, EntityTrait};
use serde_json::{Value, json};

use crate::invariants;
use crate::node::{Launch, Node, panics, token};

/// The invitation TTL the kill runs use: long enough for a restart and
/// the reconnects, short enough to check the expiry each round.
pub(crate) const INVITE_TTL_SECS: u64 = 3;

/// What a client was told was done: an entity reached a status, or a
/// chat message was stored.
#[derive(Debug, Clone)]
enum Acked {
    Status {
        id: String,
        status: String,
        what: &'static str,
    },
    Message {
        id: String,
    },
}

type Ledger = Arc<Mutex<Vec<Acked>>>;

struct Flow {
    base: String,
    secret: String,
    http: reqwest::Client,
    ledger: Ledger,
}

impl Flow {
    fn token(&self, sub: &str, role: &str) -> String {
        token(&self.secret, sub, role)
    }

    fn note(&self, id: &str, status: &str, what: &'static str) {
        if let Ok(mut l) = self.ledger.lock() {
            l.push(Acked::Status {
                id: id.to_owned(),
                status: status.to_owned(),
                what,
            });
        }
    }

    /// A REST call; `Some(data)` on a 2xx answer, `None` once the server
    /// is gone (the flow stops there).
    async fn post(&self, path: &str, token: &str, body: Value) -> Option<Value> {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .ok()?;
        if !res.status().is_success() {
            return None;
        }
        res.json::<Value>().await.ok().map(|v| v["data"].clone())
    }

    async fn get(&self, path: &str, token: &str) -> Option<Value> {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .ok()?;
        res.json::<Value>().await.ok().map(|v| v["data"].clone())
    }

    async fn queue(&self, u: &str) -> Option<()> {
        let (d, p) = (
            self.token(&format!("{u}-d"), "doctor"),
            self.token(&format!("{u}-p"), "patient"),
        );
        let s = self
            .post(
                "/api/schedules",
                &d,
                json!({ "date": "2026-12-02", "startTime": "09:00", "endTime": "17:00" }),
            )
            .await?;
        let sid = s["id"].as_str()?.to_owned();
        self.note(&sid, "UPCOMING", "schedule");
        self.post(&format!("/api/schedules/{sid}/start"), &d, json!({}))
            .await?;
        self.note(&sid, "ONLINE", "schedule");
        let e = self
            .post(&format!("/api/schedules/{sid}/join-queue"), &p, json!({}))
            .await?;
        let eid = e["id"].as_str()?.to_owned();
        self.note(&eid, "WAITING", "queue entry");
        self.post(
            &format!("/api/queue/{eid}/toggle-ready"),
            &p,
            json!({ "isReady": true }),
        )
        .await?;
        self.note(&eid, "READY", "queue entry");
        let c = self
            .post(
                &format!("/api/schedules/{sid}/start-call"),
                &d,
                json!({ "patientId": format!("{u}-p") }),
            )
            .await?;
        let cid = c["id"].as_str()?.to_owned();
        self.note(&cid, "INVITED", "queue call");
        self.post(&format!("/api/call-sessions/{cid}/confirm"), &p, json!({}))
            .await?;
        self.note(&cid, "CONFIRMED", "queue call");
        self.note(&eid, "IN_CALL", "queue entry");
        self.post(&format!("/api/call-sessions/{cid}/activate"), &d, json!({}))
            .await?;
        self.note(&cid, "ACTIVE", "queue call");
        self.post(&format!("/api/call-sessions/{cid}/end"), &p, json!({}))
            .await?;
        self.note(&cid, "ENDED", "queue call");
        self.note(&eid, "DONE", "queue entry");
        self.post(&format!("/api/schedules/{sid}/end"), &d, json!({}))
            .await?;
        self.note(&sid, "COMPLETED", "schedule");
        Some(())
    }

    async fn direct(&self, u: &str) -> Option<()> {
        let (d, p) = (
            self.token(&format!("{u}-d"), "doctor"),
            self.token(&format!("{u}-p"), "patient"),
        );
        let c = self
            .post(
                "/api/call-sessions/start",
                &p,
                json!({ "doctor_id": format!("{u}-d"), "call_type": "voice" }),
            )
            .await?;
        let cid = c["call_session_id"].as_str()?.to_owned();
        self.note(&cid, "INVITED", "direct call");
        self.post(&format!("/api/call-sessions/{cid}/confirm"), &d, json!({}))
            .await?;
        self.note(&cid, "CONFIRMED", "direct call");
        self.post(&format!("/api/call-sessions/{cid}/activate"), &p, json!({}))
            .await?;
        self.note(&cid, "ACTIVE", "direct call");
        self.post(&format!("/api/call-sessions/{cid}/end"), &d, json!({}))
            .await?;
        self.note(&cid, "ENDED", "direct call");
        Some(())
    }

    async fn tutoring(&self, u: &str) -> Option<()> {
        let (t, l) = (
            self.token(&format!("{u}-t"), "teacher"),
            self.token(&format!("{u}-l"), "learner"),
        );
        let s = self
            .post(
                "/api/sessions",
                &l,
                json!({ "host_id": format!("{u}-t"), "skill_name": "Chess" }),
            )
            .await?;
        let id = s["id"].as_str()?.to_owned();
        self.note(&id, "INVITED", "tutoring session");
        self.post(&format!("/api/sessions/{id}/accept"), &t, json!({}))
            .await?;
        self.note(&id, "CONFIRMED", "tutoring session");
        self.post(&format!("/api/sessions/{id}/end"), &l, json!({}))
            .await?;
        self.note(&id, "ENDED", "tutoring session");
        Some(())
    }

    async fn chat(&self, u: &str) -> Option<()> {
        let (c, m) = (
            self.token(&format!("{u}-c"), "customer"),
            self.token(&format!("{u}-m"), "mechanic"),
        );
        let s = self
            .post("/api/chat-sessions", &c, json!({ "concern": "brakes" }))
            .await?;
        let id = s["id"].as_str()?.to_owned();
        self.note(&id, "pending", "chat session");
        self.post(&format!("/api/chat-sessions/{id}/accept"), &m, json!({}))
            .await?;
        self.note(&id, "waiting", "chat session");
        let url = ws_url(&self.base);
        let mut cc = Conn::connect(&url, &c).await.ok()?;
        let mut mc = Conn::connect(&url, &m).await.ok()?;
        let join = format!("{{\"roomId\":\"{id}\"}}");
        cc.request("chat:join_room", &join).await.ok()?;
        mc.request("chat:join_room", &join).await.ok()?;
        let started = Instant::now();
        loop {
            let now = self.get(&format!("/api/chat-sessions/{id}"), &c).await?;
            if now["status"] == "live" {
                self.note(&id, "live", "chat session");
                break;
            }
            if started.elapsed() > Duration::from_secs(5) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for n in 0..5 {
            let body = format!(
                "{{\"roomId\":\"{id}\",\"content\":\"message {n}\",\"clientMessageId\":\"{u}-{n}\"}}"
            );
            let ack = cc.request("chat:send_message", &body).await.ok()?;
            let ack: Value = serde_json::from_str(&ack).ok()?;
            let mid = ack["message"]["id"].as_str()?.to_owned();
            if let Ok(mut l) = self.ledger.lock() {
                l.push(Acked::Message { id: mid });
            }
        }
        self.post(&format!("/api/chat-sessions/{id}/end"), &m, json!({}))
            .await?;
        self.note(&id, "ended", "chat session");
        Some(())
    }
}

/// An invitation left unanswered across the kill.
struct Probe {
    call: String,
    doctor: String,
    patient: String,
    expires_at: DateTime<Utc>,
}

async fn probe(flow: &Flow, round: usize) -> Option<Probe> {
    let (doctor, patient) = (format!("r{round}-probe-d"), format!("r{round}-probe-p"));
    let c = flow
        .post(
            "/api/call-sessions/start",
            &flow.token(&patient, "patient"),
            json!({ "doctor_id": doctor }),
        )
        .await?;
    let expires_at = c["expires_at"].as_str()?.parse().ok()?;
    Some(Probe {
        call: c["call_session_id"].as_str()?.to_owned(),
        doctor,
        patient,
        expires_at,
    })
}

/// Counts `call_expired` for `call` on `conn` until `until`; the arrival times.
async fn expiries(mut conn: Conn, call: String, until: Instant) -> Vec<DateTime<Utc>> {
    let mut seen = Vec::new();
    while let Ok(Ok(frame)) = tokio::time::timeout_at(until.into(), conn.next_text()).await {
        if frame.starts_with("42[\"call_expired\"") && frame.contains(&call) {
            seen.push(Utc::now());
        }
    }
    seen
}

/// Checks, on the restarted `node`, what the round before it was told.
async fn verify(
    url: &str,
    node: &Node,
    secret: &str,
    ledger: &[Acked],
    probe: Option<&Probe>,
) -> Vec<String> {
    let mut bad = Vec::new();
    // The probe's participants come back first: the expiry is due soon.
    let watch = match probe {
        Some(p) => {
            let ws = ws_url(&node.url(""));
            let until = Instant::now()
                + (p.expires_at - Utc::now()).to_std().unwrap_or_default()
                + Duration::from_millis(2200);
            let mut tasks = Vec::new();
            for (user, role) in [(&p.doctor, "doctor"), (&p.patient, "patient")] {
                match Conn::connect(&ws, &token(secret, user, role)).await {
                    Ok(conn) => tasks.push(tokio::spawn(expiries(conn, p.call.clone(), until))),
                    Err(e) => bad.push(format!("probe {user} could not reconnect: {e}")),
                }
            }
            Some(tasks)
        }
        None => None,
    };

    let Ok(db) = Database::connect(url).await else {
        return vec!["the database is unreachable".into()];
    };
    let audit = audit_log::Entity::find().all(&db).await.unwrap_or_default();
    let messages: HashSet<String> = chat_message::Entity::find()
        .all(&db)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.id)
        .collect();
    let _ = db.close().await;
    let mut states: HashMap<&str, Vec<&str>> = HashMap::new();
    for row in &audit {
        states
            .entry(row.entity_id.as_str())
            .or_default()
            .push(row.to_state.as_str());
    }
    for acked in ledger {
        match acked {
            Acked::Status { id, status, what } => {
                if !states
                    .get(id.as_str())
                    .is_some_and(|s| s.contains(&status.as_str()))
                {
                    bad.push(format!(
                        "lost: {what} {id} was answered {status}, the database has {:?}",
                        states.get(id.as_str())
                    ));
                }
            }
            Acked::Message { id } => {
                if !messages.contains(id) {
                    bad.push(format!(
                        "lost: chat message {id} was acknowledged but is not stored"
                    ));
                }
            }
        }
    }

    if let (Some(p), Some(tasks)) = (probe, watch) {
        for (task, who) in tasks.into_iter().zip(["doctor", "patient"]) {
            let seen = task.await.unwrap_or_default();
            match seen.as_slice() {
                [at] => {
                    let early = p.expires_at - *at;
                    let late = *at - p.expires_at;
                    if early > chrono::Duration::milliseconds(100) {
                        bad.push(format!(
                            "probe {} expired {early} early for the {who}",
                            p.call
                        ));
                    }
                    if late > chrono::Duration::milliseconds(2000) {
                        bad.push(format!(
                            "probe {} expired {late} late for the {who}",
                            p.call
                        ));
                    }
                }
                other => bad.push(format!(
                    "probe {}: the {who} got {} call_expired",
                    p.call,
                    other.len()
                )),
            }
        }
        match invariants::audit_of(url, &p.call).await {
            Ok(rows) => {
                let n = rows.iter().filter(|(a, _)| a == "call.expire").count();
                if n != 1 {
                    bad.push(format!(
                        "probe {}: {n} call.expire audit rows: {rows:?}",
                        p.call
                    ));
                }
            }
            Err(e) => bad.push(e),
        }
    }
    bad
}

pub(crate) async fn run(launch: Launch, kills: usize, seed: u64) -> Result<(), String> {
    let mut rng = Rng::with_seed(seed);
    let mut violations = Vec::new();
    let mut answered = 0usize;
    let mut previous: Option<(Vec<Acked>, Option<Probe>)> = None;
    let started = Instant::now();
    for round in 0..=kills {
        let node = Node::start(&launch, &format!("kill-{round}.log")).await?;
        if let Some((ledger, probe)) = previous.take() {
            answered += ledger.len();
            for v in verify(
                &launch.database_url,
                &node,
                &launch.secret,
                &ledger,
                probe.as_ref(),
            )
            .await
            {
                violations.push(format!("round {round}: {v}"));
            }
            match invariants::check(&launch.database_url, Some(chrono::Duration::seconds(3))).await
            {
                Ok((_, broken)) => violations.extend(
                    broken
                        .into_iter()
                        .map(|b| format!("round {round}: invariant: {b}")),
                ),
                Err(e) => violations.push(e),
            }
        }
        if round == kills {
            let log = node.log_text();
            violations.extend(panics(&log).into_iter().map(|p| format!("log: {p}")));
            node.terminate(Duration::from_secs(20)).await?;
            break;
        }
        let flow = Arc::new(Flow {
            base: node.url(""),
            secret: launch.secret.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            ledger: Ledger::default(),
        });
        let probe = probe(&flow, round).await;
        let mut actors = Vec::new();
        for kind in 0..4u8 {
            let flow = flow.clone();
            actors.push(tokio::spawn(async move {
                for n in 0.. {
                    let u = format!("r{round}k{kind}n{n}");
                    let done = match kind {
                        0 => flow.queue(&u).await,
                        1 => flow.direct(&u).await,
                        2 => flow.tutoring(&u).await,
                        _ => flow.chat(&u).await,
                    };
                    if done.is_none() {
                        break;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(300..1500))).await;
        let log = node.log_text();
        violations.extend(
            panics(&log)
                .into_iter()
                .map(|p| format!("round {round} log: {p}")),
        );
        node.kill().await;
        for a in actors {
            let _ = tokio::time::timeout(Duration::from_secs(10), a).await;
        }
        let ledger = flow.ledger.lock().map(|l| l.clone()).unwrap_or_default();
        println!(
            "kill {}/{kills}: {} answers before SIGKILL{}",
            round + 1,
            ledger.len(),
            if probe.is_some() {
                ", an invitation pending"
            } else {
                ""
            }
        );
        previous = Some((ledger, probe));
    }
    println!(
        "kill: {kills} SIGKILLs survived in {:.0} s; {answered} answered transitions and messages checked after restarts",
        started.elapsed().as_secs_f64()
    );
    crate::verdict("kill", &violations)
}
