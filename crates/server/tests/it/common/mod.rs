//! Test harness: the real server on an ephemeral port with a throwaway
//! database, and a small real Socket.IO client speaking Engine.IO over
//! websocket, so tests see exactly what goes over the wire.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consultd_persistence::testing::TestDatabase;
use consultd_server::Server;
use consultd_server::clock::ManualClock;
use consultd_server::config::Config;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const SECRET: &str = "test-secret-test-secret-test-secret!";
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestApp {
    pub server: Option<Server>,
    pub addr: std::net::SocketAddr,
    pub http: reqwest::Client,
    pub config: Config,
    /// The server's clock: the wall clock plus whatever a test advanced,
    /// so an expiry test jumps over a deadline instead of sleeping to it.
    pub clock: ManualClock,
    db: Option<TestDatabase>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts consultd on 127.0.0.1:0 on a fresh database (PostgreSQL when
    /// `TEST_DATABASE_URL` is set), after `tweak` adjusts the config.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDatabase::from_env().await.expect("test database");
        let mut config = Config {
            host: "127.0.0.1".into(),
            port: 0,
            database_url: Some(db.url.clone()),
            jwt_secret: Some(SECRET.into()),
            data_dir: std::env::temp_dir().join(format!("consultd-data-{}", uuid::Uuid::new_v4())),
            log_level: "warn".into(),
            shutdown_grace_secs: 5,
            ..Config::default()
        };
        tweak(&mut config);
        let clock = ManualClock::following_wall();
        let server = consultd_server::start_with_clock(config.clone(), Arc::new(clock.clone()))
            .await
            .expect("server starts");
        Self {
            clock,
            addr: server.local_addr(),
            server: Some(server),
            http: reqwest::Client::new(),
            config,
            db: Some(db),
        }
    }

    /// A second node on the same database and settings, with its own port
    /// and its own clock (the database is dropped with the first node).
    pub async fn another_node(&self) -> Self {
        self.another_node_with(|_| {}).await
    }

    /// [`another_node`](Self::another_node), after `tweak` adjusts its config.
    pub async fn another_node_with(&self, tweak: impl FnOnce(&mut Config)) -> Self {
        let clock = ManualClock::following_wall();
        let mut config = self.config.clone();
        tweak(&mut config);
        let server = consultd_server::start_with_clock(config.clone(), Arc::new(clock.clone()))
            .await
            .expect("second node starts");
        Self {
            clock,
            addr: server.local_addr(),
            server: Some(server),
            http: reqwest::Client::new(),
            config,
            db: None,
        }
    }

    /// Stops the server and starts a new one on the same database (and a
    /// new port), as an operator's restart would.
    pub async fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
        self.start_again().await;
    }

    /// Stops the server without starting it again.
    pub async fn halt(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }

    /// Moves the server's clock forward: every deadline now due fires.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub async fn start_again(&mut self) {
        let server =
            consultd_server::start_with_clock(self.config.clone(), Arc::new(self.clock.clone()))
                .await
                .expect("server restarts");
        self.addr = server.local_addr();
        self.server = Some(server);
    }

    /// `POST path` with a JSON body as `token`; the status and the JSON answer.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `n` identical POSTs sent at once; each one's status and JSON answer,
    /// in the order they were spawned.
    pub async fn post_many(
        &self,
        n: usize,
        path: &str,
        token: &str,
        body: Value,
    ) -> Vec<(u16, Value)> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (http, url) = (self.http.clone(), self.url(path));
                let (token, body) = (token.to_owned(), body.clone());
                tokio::spawn(async move {
                    let res = http.post(url).bearer_auth(token).json(&body).send();
                    let res = res.await.unwrap();
                    let status = res.status().as_u16();
                    (status, res.json().await.unwrap_or(Value::Null))
                })
            })
            .collect();
        let mut answers = vec![];
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        answers
    }

    /// The audit log's actions for one entity, oldest first (read as admin).
    pub async fn audit_actions(&self, entity: &str) -> Vec<String> {
        let admin = self.token("root", "admin");
        let (status, body) = self
            .get(&format!("/api/audit-logs?entityId={entity}"), &admin)
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `POST path` with a raw body (for malformed input).
    pub async fn post_raw(&self, path: &str, token: &str, body: &str) -> (u16, Value) {
        let res = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `GET path` as `token`; the status and the JSON answer.
    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let res = self.get_as(path, token).await;
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `GET path` with `Authorization: Bearer token`.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub fn token(&self, sub: &str, role: &str) -> String {
        self.server()
            .state()
            .auth
            .mint(sub, role, Some(&format!("{role} {sub}")), 3600)
            .unwrap()
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
    }

    /// A Socket.IO v5 (client 3.x/4.x) connection over websocket with `auth.token`.
    pub async fn connect(&self, token: &str) -> SioClient {
        SioClient::connect(self.addr, Handshake::auth(token))
            .await
            .expect("connected")
    }
}

/// Signs arbitrary claims with the test secret (or another one).
/// A row's `id`.
pub fn id_of(row: &Value) -> String {
    row["id"].as_str().unwrap().to_owned()
}

/// A contract timestamp as milliseconds since the epoch.
pub fn millis(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// A refused ack's error code (`<ok>` for a success).
pub fn code(ack: &Value) -> &str {
    ack["error"]["code"].as_str().unwrap_or("<ok>")
}

pub fn sign(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// How a client presents its token, and which protocol it speaks.
#[derive(Clone, Debug, Default)]
pub struct Handshake {
    /// `auth` payload of the CONNECT packet (v5 only).
    pub auth: Option<Value>,
    /// Extra query string, e.g. `token=…`.
    pub query: Option<String>,
    pub bearer: Option<String>,
    /// Engine.IO v3 / Socket.IO v4 protocol, as socket.io-client 2.x speaks.
    pub legacy: bool,
    /// Extra request headers (e.g. `X-Forwarded-For`).
    pub headers: Vec<(String, String)>,
}

impl Handshake {
    pub fn auth(token: &str) -> Self {
        Self {
            auth: Some(json!({ "token": token })),
            ..Self::default()
        }
    }
    pub fn query(token: &str) -> Self {
        Self {
            query: Some(format!("token={token}")),
            ..Self::default()
        }
    }
    pub fn bearer(token: &str) -> Self {
        Self {
            bearer: Some(token.to_owned()),
            ..Self::default()
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    pub fn legacy(mut self) -> Self {
        self.legacy = true;
        self.auth = None;
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConnectOutcome {
    Connected(String),
    /// The `connect_error` payload.
    Refused(Value),
}

type AckMap = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A minimal Socket.IO client over a real websocket.
pub struct SioClient {
    pub sid: String,
    out: mpsc::UnboundedSender<Message>,
    events: mpsc::UnboundedReceiver<(String, Vec<Value>)>,
    acks: AckMap,
    next_ack: u64,
    closed: Arc<tokio::sync::Notify>,
}

impl SioClient {
    pub async fn connect(addr: std::net::SocketAddr, hs: Handshake) -> Result<SioClient, Value> {
        match Self::try_connect(addr, hs).await {
            (ConnectOutcome::Connected(_), Some(c)) => Ok(c),
            (ConnectOutcome::Refused(v), _) => Err(v),
            (other, _) => panic!("unexpected {other:?}"),
        }
    }

    /// Connects and returns as soon as the CONNECT answer is read, so the
    /// caller's next emit is as early as one from a `connect` callback.
    pub async fn try_connect(
        addr: std::net::SocketAddr,
        hs: Handshake,
    ) -> (ConnectOutcome, Option<SioClient>) {
        let eio = if hs.legacy { 3 } else { 4 };
        let mut url = format!("ws://{addr}/socket.io/?EIO={eio}&transport=websocket");
        if let Some(q) = &hs.query {
            url.push('&');
            url.push_str(q);
        }
        let mut req = url.into_client_request().unwrap();
        if let Some(b) = &hs.bearer {
            req.headers_mut()
                .insert("authorization", format!("Bearer {b}").parse().unwrap());
        }
        for (name, value) in &hs.headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket upgrade");
        let (mut sink, mut stream) = ws.split();

        let open = next_text(&mut stream).await.expect("engine.io open");
        assert!(open.starts_with('0'), "open packet: {open}");

        // Engine.IO v3 clients are connected to "/" implicitly; v4 clients ask.
        if !hs.legacy {
            let connect = match &hs.auth {
                Some(a) => format!("40{a}"),
                None => "40".to_owned(),
            };
            sink.send(Message::text(connect)).await.unwrap();
        }

        // The first socket.io packet answers the CONNECT.
        let answer = loop {
            let t = next_text(&mut stream).await.expect("connect answer");
            if t == "2" {
                sink.send(Message::text("3")).await.unwrap();
                continue;
            }
            break t;
        };
        let outcome = if let Some(rest) = answer.strip_prefix("40") {
            let sid = serde_json::from_str::<Value>(rest)
                .ok()
                .and_then(|v| v["sid"].as_str().map(str::to_owned))
                .unwrap_or_default();
            ConnectOutcome::Connected(sid)
        } else if let Some(rest) = answer.strip_prefix("44") {
            return (
                ConnectOutcome::Refused(serde_json::from_str(rest).unwrap_or(Value::Null)),
                None,
            );
        } else {
            panic!("unexpected connect answer {answer}");
        };
        let ConnectOutcome::Connected(sid) = &outcome else {
            unreachable!()
        };

        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let acks: AckMap = Arc::default();
        let closed = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let reader_acks = acks.clone();
        let reader_out = out_tx.clone();
        let reader_closed = closed.clone();
        tokio::spawn(async move {
            while let Some(text) = next_text(&mut stream).await {
                if text == "2" {
                    let _ = reader_out.send(Message::text("3"));
                } else if let Some(rest) = text.strip_prefix("42") {
                    if let Ok(Value::Array(mut parts)) = serde_json::from_str::<Value>(rest) {
                        if parts.is_empty() {
                            continue;
                        }
                        let name = parts.remove(0).as_str().unwrap_or_default().to_owned();
                        let _ = ev_tx.send((name, parts));
                    }
                } else if let Some(rest) = text.strip_prefix("43") {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let id: u64 = digits.parse().unwrap_or(u64::MAX);
                    let body: Value =
                        serde_json::from_str(&rest[digits.len()..]).unwrap_or(Value::Null);
                    let first = body.get(0).cloned().unwrap_or(Value::Null);
                    if let Some(tx) = reader_acks.lock().unwrap().remove(&id) {
                        let _ = tx.send(first);
                    }
                } else if text.starts_with("41") || text == "1" {
                    break;
                }
            }
            reader_closed.notify_waiters();
            reader_closed.notify_one();
        });
        let client = SioClient {
            sid: sid.clone(),
            out: out_tx,
            events: ev_rx,
            acks,
            next_ack: 1000,
            closed,
        };
        (outcome, Some(client))
    }

    /// Sends a raw Engine.IO text frame.
    pub fn send_raw(&self, frame: impl Into<String>) {
        let _ = self.out.send(Message::text(frame.into()));
    }

    pub fn emit(&self, event: &str, data: Value) {
        self.send_raw(format!("42{}", json!([event, data])));
    }

    /// Emits with an ack and waits for the answer.
    pub async fn emit_ack(&mut self, event: &str, data: Value) -> Value {
        let rx = self.emit_ack_later(event, data);
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("ack in time")
            .expect("ack")
    }

    pub fn emit_ack_later(&mut self, event: &str, data: Value) -> oneshot::Receiver<Value> {
        let id = self.next_ack;
        self.next_ack += 1;
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        self.send_raw(format!("42{id}{}", json!([event, data])));
        rx
    }

    /// The next event with this name (others are skipped), within [`WAIT`].
    pub async fn expect_event(&mut self, name: &str) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (n, args) = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no `{name}` event in time"))
                .expect("connection open");
            if n == name {
                return args;
            }
        }
    }

    /// Asserts that no event at all arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(Some(ev)) = tokio::time::timeout(wait, self.events.recv()).await {
            panic!("expected nothing, got {ev:?}");
        }
    }

    /// Asserts that no `name` event arrives within `wait` (others are skipped).
    pub async fn expect_no_event(&mut self, name: &str, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some((n, args))) = tokio::time::timeout_at(deadline, self.events.recv()).await
        {
            assert_ne!(n, name, "unexpected `{name}`: {args:?}");
        }
    }

    /// Every event received within `wait`, in order.
    pub async fn drain(&mut self, wait: Duration) -> Vec<(String, Vec<Value>)> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut all = vec![];
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            all.push(ev);
        }
        all
    }

    /// Waits until the server closes the connection.
    pub async fn closed(&self) {
        tokio::time::timeout(WAIT, self.closed.notified())
            .await
            .expect("closed in time");
    }

    pub fn disconnect(self) {
        self.send_raw("41");
    }
}

async fn next_text<S>(stream: &mut S) -> Option<String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    None
}
