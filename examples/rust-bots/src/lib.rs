//! Two bots, a doctor and a patient, that run the queue consultation app's consultation
//! against a running consultd with `rust_socketio` (an independent
//! Socket.IO client, not consultd's code), the way an app's clients would:
//! one socket per user, listeners first, REST for actions, events for news.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// How long a bot waits for an event or an answer before giving up.
pub const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("socket.io: {0}")]
    Socket(Box<rust_socketio::Error>),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{method} {path}: {status} {body}")]
    Refused {
        method: &'static str,
        path: String,
        status: u16,
        body: Value,
    },
    #[error("{0}: no answer within {WAIT:?}")]
    Timeout(String),
    #[error("{0}")]
    Unexpected(String),
}

pub type Result<T> = std::result::Result<T, BotError>;

impl From<rust_socketio::Error> for BotError {
    fn from(e: rust_socketio::Error) -> Self {
        // Boxed: rust_socketio's error is large, and every result carries it.
        Self::Socket(Box::new(e))
    }
}

/// One user's socket and REST access.
pub struct Bot {
    pub name: &'static str,
    url: String,
    token: String,
    http: reqwest::Client,
    socket: Client,
    events: mpsc::UnboundedReceiver<(String, Value)>,
    unread: VecDeque<(String, Value)>,
}

impl Bot {
    /// Connects with the token in the handshake's `auth.token`, recording
    /// every event from the start so none is missed; resolves once the
    /// server accepted the connection (or says why it did not).
    pub async fn connect(name: &'static str, url: &str, token: &str) -> Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let (answer_tx, accepted) = oneshot::channel::<std::result::Result<(), String>>();
        let answer_tx = Arc::new(Mutex::new(Some(answer_tx)));
        let on_error = answer_tx.clone();
        let socket = ClientBuilder::new(url)
            .auth(json!({ "token": token }))
            .reconnect(false)
            .on(Event::Connect, move |_, _| {
                answer(&answer_tx, Ok(()));
                async {}.boxed()
            })
            .on(Event::Error, move |payload, _| {
                answer(&on_error, Err(format!("{payload:?}")));
                async {}.boxed()
            })
            .on_any(move |event, payload, _| {
                if let (Event::Custom(name), Payload::Text(mut values)) = (event, payload) {
                    let first = if values.is_empty() {
                        Value::Null
                    } else {
                        values.swap_remove(0)
                    };
                    let _ = tx.send((name, first));
                }
                async {}.boxed()
            })
            .connect()
            .await?;
        match tokio::time::timeout(WAIT, accepted).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(why))) => return Err(BotError::Unexpected(format!("{name} refused: {why}"))),
            _ => return Err(BotError::Timeout(format!("{name} connecting"))),
        }
        Ok(Self {
            name,
            url: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
            socket,
            events,
            unread: VecDeque::new(),
        })
    }

    /// The first `event` not yet taken, waiting up to [`WAIT`] for it.
    pub async fn next(&mut self, event: &str) -> Result<Value> {
        if let Some(i) = self.unread.iter().position(|(name, _)| name == event) {
            return Ok(self.unread.remove(i).map(|(_, v)| v).unwrap_or_default());
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some((name, value))) if name == event => return Ok(value),
                Ok(Some(other)) => self.unread.push_back(other),
                Ok(None) => {
                    return Err(BotError::Unexpected(format!(
                        "{}: socket closed",
                        self.name
                    )));
                }
                Err(_) => {
                    return Err(BotError::Timeout(format!(
                        "{} waiting for {event}",
                        self.name
                    )));
                }
            }
        }
    }

    /// Emits without an ack (as relays usually are).
    pub async fn emit(&self, event: &str, data: Value) -> Result<()> {
        Ok(self.socket.emit(event, data).await?)
    }

    /// Emits with an ack and returns it; a refusal (`ok: false`) is an error.
    pub async fn request(&self, event: &str, data: Value) -> Result<Value> {
        let (tx, rx) = oneshot::channel();
        let tx = Mutex::new(Some(tx));
        self.socket
            .emit_with_ack(event, data, WAIT, move |payload, _| {
                if let (Payload::Text(values), Ok(mut slot)) = (payload, tx.lock())
                    && let Some(tx) = slot.take()
                {
                    let _ = tx.send(first_ack_argument(values));
                }
                async {}.boxed()
            })
            .await?;
        let ack = tokio::time::timeout(WAIT, rx)
            .await
            .map_err(|_| BotError::Timeout(format!("{} ack of {event}", self.name)))?
            .map_err(|_| BotError::Timeout(format!("{} ack of {event}", self.name)))?;
        if ack["ok"] == true {
            Ok(ack)
        } else {
            Err(BotError::Unexpected(format!("{event} refused: {ack}")))
        }
    }

    /// A REST call in consultd's envelope; returns `data`.
    pub async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.url);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let res = req.bearer_auth(&self.token).send().await?;
        let status = res.status().as_u16();
        let mut envelope: Value = res.json().await?;
        if envelope["success"] == true {
            Ok(envelope["data"].take())
        } else {
            Err(BotError::Refused {
                method,
                path: path.to_owned(),
                status,
                body: envelope,
            })
        }
    }

    pub async fn disconnect(self) -> Result<()> {
        Ok(self.socket.disconnect().await?)
    }
}

/// rust_socketio 0.6 hands an ack's arguments over as one JSON array inside
/// the payload; consultd acks with one object.
fn first_ack_argument(mut values: Vec<Value>) -> Value {
    match values.pop() {
        Some(Value::Array(mut args)) if !args.is_empty() => args.swap_remove(0),
        Some(other) => other,
        None => Value::Null,
    }
}

/// Sends the first answer about a connection; later ones have no listener.
fn answer(
    slot: &Mutex<Option<oneshot::Sender<std::result::Result<(), String>>>>,
    value: std::result::Result<(), String>,
) {
    if let Some(tx) = slot.lock().ok().and_then(|mut s| s.take()) {
        let _ = tx.send(value);
    }
}

fn field(v: &Value, name: &str) -> Result<String> {
    match &v[name] {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Err(BotError::Unexpected(format!("no `{name}` in {v}"))),
        other => Ok(other.to_string()),
    }
}

/// the queue consultation app's consultation, start to end. `report(phase, text)` hears each
/// phase as it completes.
pub async fn run_consultation(
    url: &str,
    doctor_token: &str,
    patient_token: &str,
    mut report: impl FnMut(&str, String),
) -> Result<()> {
    let mut doctor = Bot::connect("doctor", url, doctor_token).await?;
    let mut patient = Bot::connect("patient", url, patient_token).await?;
    // Emitted straight after connecting, as the seeds' hooks do in `connect`.
    doctor.request("identify_as_doctor", json!({})).await?;

    let schedule = doctor
        .call(
            "POST",
            "/api/schedules",
            Some(json!({ "date": "2026-11-21", "startTime": "09:00", "endTime": "17:00" })),
        )
        .await?;
    let sid = field(&schedule, "id")?;
    doctor
        .call("POST", &format!("/api/schedules/{sid}/start"), None)
        .await?;
    let online = patient.next("doctor_online").await?;
    report(
        "1 setup",
        format!(
            "doctor {} is ONLINE on schedule {}",
            field(&online, "doctorId")?,
            field(&online, "scheduleId")?
        ),
    );

    let entry = patient
        .call("POST", &format!("/api/schedules/{sid}/join-queue"), None)
        .await?;
    let eid = field(&entry, "id")?;
    let queue = doctor.next("queue_updated").await?;
    report(
        "2 queue join",
        format!("the doctor sees {}", describe_queue(&queue)),
    );

    patient
        .call(
            "POST",
            &format!("/api/queue/{eid}/toggle-ready"),
            Some(json!({ "isReady": true })),
        )
        .await?;
    let queue = doctor.next("queue_updated").await?;
    report(
        "3 ready",
        format!("the doctor sees {}", describe_queue(&queue)),
    );

    let call = doctor
        .call(
            "POST",
            &format!("/api/schedules/{sid}/start-call"),
            Some(json!({ "patientId": entry["patientId"] })),
        )
        .await?;
    let cid = field(&call, "id")?;
    let invitation = patient.next("call_invitation").await?;
    report(
        "4 invitation",
        format!(
            "the patient is invited to call {}, until {}",
            field(&invitation, "id")?,
            field(&invitation, "expiresAt")?
        ),
    );

    patient
        .call("POST", &format!("/api/call-sessions/{cid}/confirm"), None)
        .await?;
    for bot in [&mut doctor, &mut patient] {
        bot.next("call_confirmed").await?;
    }
    report("5 confirmation", "both heard call_confirmed".into());

    let room = field(&call, "roomId")?;
    let joined_doctor = doctor
        .request("webrtc:join_room", json!({ "roomId": room }))
        .await?;
    let joined_patient = patient
        .request("webrtc:join_room", json!({ "roomId": room }))
        .await?;
    report(
        "6 call room",
        format!(
            "both joined room {room}; peers seen: {} then {}",
            joined_doctor["peers"], joined_patient["peers"]
        ),
    );

    doctor
        .call(
            "POST",
            &format!("/api/call-sessions/{cid}/set-peer-id"),
            Some(json!({ "peerId": "doctor-bot-peer" })),
        )
        .await?;
    let peer = patient.next("peer_id_updated").await?;
    report(
        "7 peer ids",
        format!(
            "the patient learned the doctor's peer id {}",
            field(&peer, "peerId")?
        ),
    );

    doctor
        .emit(
            "webrtc:offer",
            json!({ "roomId": room, "sdp": { "type": "offer", "sdp": "v=0\r\n" } }),
        )
        .await?;
    doctor
        .emit(
            "webrtc:ice_candidate",
            json!({ "roomId": room, "candidate": { "candidate": "c-doctor" } }),
        )
        .await?;
    let offer = patient.next("webrtc:offer").await?;
    let candidate = patient.next("webrtc:ice_candidate").await?;
    patient
        .emit(
            "webrtc:answer",
            json!({ "roomId": room, "sdp": { "type": "answer", "sdp": "v=0\r\n" } }),
        )
        .await?;
    let answer = doctor.next("webrtc:answer").await?;
    report(
        "8 signaling",
        format!(
            "offer from {} with candidate {}, answer from {}",
            field(&offer, "from")?,
            candidate["candidate"]["candidate"],
            field(&answer, "from")?
        ),
    );

    patient
        .call("POST", &format!("/api/call-sessions/{cid}/activate"), None)
        .await?;
    let active = doctor.next("call_activated").await?;
    report("9 active", format!("call {}", field(&active, "status")?));

    doctor
        .call("POST", &format!("/api/call-sessions/{cid}/end"), None)
        .await?;
    let ended = patient.next("call_ended").await?;
    doctor.next("call_ended").await?;
    doctor
        .call("POST", &format!("/api/schedules/{sid}/end"), None)
        .await?;
    patient.next("doctor_offline").await?;
    report(
        "10 end",
        format!(
            "call {}; schedule COMPLETED, the patient heard doctor_offline",
            field(&ended, "status")?
        ),
    );

    doctor.disconnect().await?;
    patient.disconnect().await?;
    Ok(())
}

fn describe_queue(update: &Value) -> String {
    let entries: Vec<String> = update["queue"]
        .as_array()
        .map(|q| {
            q.iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["patientName"].as_str().unwrap_or("?"),
                        e["status"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!("[{}]", entries.join(", "))
}
