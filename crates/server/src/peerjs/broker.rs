//! The PeerJS broker's state: who holds which peer id, the messages waiting
//! for an id nobody holds yet, and which pairs of users may signal each
//! other. Transport-free: a connection hands it text frames and reads what
//! to send from its [`Outlet`].
//!
//! The protocol is PeerJS server 1.0's, read from its source; where
//! consultd differs it says so here and in docs/media.md:
//! - **Relay is authorised.** `OFFER`/`ANSWER`/`CANDIDATE` (and `LEAVE`,
//!   `EXPIRE`) pass only between two users who share a call or tutoring
//!   session whose room both could join (CONTRACT §3). A refused message
//!   is treated exactly as one for an id nobody holds: after the expire
//!   timeout the sender gets one `EXPIRE`. A stranger cannot tell a
//!   refusal from an offline id.
//! - **`src` is the sender's id**, set here; a client's own `src` is
//!   ignored (as PeerJS does).
//! - **Replacing a socket** (same id, same token) answers `OPEN` again and
//!   closes the old socket; PeerJS swaps silently.
//! - **`LEAVE` when a peer goes**: its socket closing (not replaced) sends
//!   `LEAVE` to every peer it exchanged messages with. PeerJS 1.0 sends
//!   nothing then.
//!
//! **Order.** One sender's frames reach their destination in the order
//! sent: a connection hands the broker one frame at a time; a frame for an
//! id that has messages waiting joins the back of that queue; the queue is
//! handed over front first when the id is claimed, and only then do frames
//! flow directly. With several nodes ([`Mesh`]) the same holds: the queue
//! is the sender's node's, and each node publishes over one connection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use consultd_domain::{CallId, ChatId, UserId};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::mesh::{Claimed, Envelope, Mesh};
use super::ticket::Tickets;
use crate::service::RoomAccess;
use crate::service::outbox::RoomControl;
use crate::service::peers::PeerDirectory;
use crate::sync::lock;
use crate::telemetry::{PEERJS_EXPIRED, PEERJS_PEERS, PEERJS_REFUSED, PEERJS_RELAYED};

/// What the broker needs from the configuration.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub key: String,
    pub expire: Duration,
    pub alive: Duration,
    pub limit: usize,
    pub discovery: bool,
    /// Frames per second one socket may send, and its burst (`EVENT_RATE`,
    /// `EVENT_BURST`, as for a Socket.IO socket); `0` = unlimited.
    pub rate: (u32, u32),
}

/// Messages one sender may have waiting for ids nobody holds.
const MAX_WAITING_PER_SENDER: usize = 64;
/// Frames queued to one socket that it has not taken; a socket this far
/// behind is closed (PeerJS closes a peer it cannot write to).
const OUTLET_DEPTH: usize = 256;

pub(crate) const OPEN: &str = r#"{"type":"OPEN"}"#;

/// PeerJS's error texts, which its client shows as they are.
pub(crate) mod errors {
    pub(crate) const INVALID_KEY: &str = "Invalid key provided";
    pub(crate) const INVALID_TOKEN: &str = "Invalid token provided";
    pub(crate) const EXPIRED_TOKEN: &str = "Invalid token provided: token_expired";
    pub(crate) const INVALID_WS_PARAMETERS: &str =
        "No id, token, or key supplied to websocket server";
    pub(crate) const INVALID_ID: &str = "Invalid id: 1 to 128 letters, digits, spaces, - or _";
    pub(crate) const CONNECTION_LIMIT_EXCEED: &str = "Server has reached its concurrent user limit";
    pub(crate) const UNAVAILABLE: &str = "The broker cannot reach its other nodes (Redis); retry";
}

/// A frame for the server to send.
pub(crate) fn error_frame(msg: &str) -> String {
    serde_json::json!({ "type": "ERROR", "payload": { "msg": msg } }).to_string()
}

pub(crate) fn id_taken_frame() -> String {
    serde_json::json!({ "type": "ID-TAKEN", "payload": { "msg": "ID is taken" } }).to_string()
}

/// Whether PeerJS's client would accept `id` (its `validateId`, plus a
/// length bound).
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-' || b == b'_')
}

#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    #[serde(default, borrow)]
    dst: Option<&'a RawValue>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct Outbound<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    src: &'a str,
    dst: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
}

fn frame(kind: &str, src: &str, dst: &str, payload: Option<&RawValue>) -> Arc<str> {
    let text = serde_json::to_string(&Outbound {
        kind,
        src,
        dst,
        payload,
    })
    .unwrap_or_default();
    text.into()
}

/// The message types that are relayed; anything else is ignored, as
/// PeerJS ignores it.
fn relayed(kind: &str) -> bool {
    matches!(kind, "OFFER" | "ANSWER" | "CANDIDATE" | "LEAVE" | "EXPIRE")
}

/// What a connection sends, and the signal to close it.
pub(crate) struct Outlet {
    pub(crate) frames: mpsc::Receiver<Arc<str>>,
    pub(crate) close: Arc<Notify>,
}

struct Client {
    user: UserId,
    token: Box<str>,
    conn: u64,
    out: mpsc::Sender<Arc<str>>,
    close: Arc<Notify>,
    last_seen: Instant,
    /// Ids this peer exchanged messages with, told `LEAVE` when it goes.
    partners: HashSet<Arc<str>>,
    /// Its messages waiting for ids nobody holds.
    waiting: usize,
}

impl Client {
    /// Queues a frame; a socket that stopped reading is closed.
    fn send(&self, text: Arc<str>) -> bool {
        match self.out.try_send(text) {
            Ok(()) => true,
            Err(_) => {
                self.close.notify_one();
                false
            }
        }
    }
}

/// A message waiting for its id to be held.
struct Waiting {
    src: Arc<str>,
    src_user: UserId,
    text: Arc<str>,
    due: Instant,
}

/// A refused message's `EXPIRE`: when, to which sender, for which id.
type Refusal = (Instant, Arc<str>, Arc<str>);

/// A connection's identity, once registered.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) id: Arc<str>,
    pub(crate) user: UserId,
    pub(crate) conn: u64,
}

/// Why a registration was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    IdTaken,
    Full,
    /// Several nodes, and Redis does not answer.
    Unavailable,
}

/// Where an id's holder is.
#[derive(Debug, Clone)]
enum Place {
    Here,
    Node(String),
}

/// Two users in a fixed order, so that `(a, b)` and `(b, a)` are one key.
fn pair(a: &UserId, b: &UserId) -> (UserId, UserId) {
    if a <= b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

pub struct Broker {
    settings: BrokerSettings,
    access: RoomAccess,
    /// What `POST /api/peerjs/ticket` mints and connections may present.
    tickets: Tickets,
    clients: DashMap<Arc<str>, Client>,
    /// Messages from this node's peers for ids nobody held when sent. A
    /// queue stays while it is handed over, so later frames line up behind.
    waiting: std::sync::Mutex<HashMap<Arc<str>, VecDeque<Waiting>>>,
    /// Refused messages, answered with `EXPIRE` when due, as if their
    /// destination were offline.
    refused: std::sync::Mutex<Vec<Refusal>>,
    /// Pairs of users known to share a live call, and which calls.
    allowed: DashMap<(UserId, UserId), Vec<CallId>>,
    /// Bumped by every call's end: an answer read before it is not cached.
    ends: AtomicU64,
    next_conn: AtomicU64,
    /// Several nodes: ids and frames across them.
    mesh: Option<Arc<Mesh>>,
}

impl Broker {
    pub fn new(
        settings: BrokerSettings,
        access: RoomAccess,
        tickets: Tickets,
        mesh: Option<Arc<Mesh>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            access,
            tickets,
            clients: DashMap::new(),
            waiting: std::sync::Mutex::default(),
            refused: std::sync::Mutex::default(),
            allowed: DashMap::new(),
            ends: AtomicU64::new(0),
            next_conn: AtomicU64::new(1),
            mesh,
        })
    }

    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    pub fn tickets(&self) -> &Tickets {
        &self.tickets
    }

    /// Every id held now, on every node (discovery).
    pub async fn ids(&self) -> Vec<String> {
        if let Some(mesh) = &self.mesh {
            match mesh.ids().await {
                Ok(ids) => return ids,
                Err(e) => tracing::warn!(error = %e, "PeerJS discovery: Redis did not answer"),
            }
        }
        self.clients.iter().map(|c| c.key().to_string()).collect()
    }

    /// Peers connected to this node.
    pub fn peers(&self) -> usize {
        self.clients.len()
    }

    /// A fresh id (a v4 UUID: no node needs to ask another).
    pub fn fresh_id(&self) -> String {
        loop {
            let id = uuid::Uuid::new_v4().to_string();
            if !self.clients.contains_key(id.as_str()) {
                return id;
            }
        }
    }

    /// Takes `id` for `user` with `token`. The same token replaces its
    /// earlier socket (which is closed), on this node or another; another
    /// token is refused while the id is held. `OPEN` is the first frame of
    /// the new outlet; then call [`Broker::claimed`].
    pub(crate) async fn register(
        &self,
        id: &str,
        token: &str,
        user: &UserId,
    ) -> Result<(Session, Outlet), Refused> {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Some(held) = self.clients.get(id)
            && *held.token != *token
        {
            return Err(Refused::IdTaken);
        }
        if !self.clients.contains_key(id) && self.clients.len() >= self.settings.limit {
            return Err(Refused::Full);
        }
        if let Some(mesh) = &self.mesh {
            match mesh.claim(id, conn, token, user).await {
                Ok(Claimed::Refused) => return Err(Refused::IdTaken),
                Ok(Claimed::Taken(Some(before))) if before.node != mesh.node() => {
                    mesh.send(
                        &before.node,
                        &Envelope::Kick {
                            id: id.to_owned(),
                            conn: before.conn,
                        },
                    );
                }
                Ok(Claimed::Taken(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "PeerJS registration refused: Redis did not answer");
                    return Err(Refused::Unavailable);
                }
            }
        }
        let (out, frames) = mpsc::channel(OUTLET_DEPTH);
        let close = Arc::new(Notify::new());
        // Never fails: the channel is new.
        let _ = out.try_send(Arc::from(OPEN));
        let key: Arc<str> = Arc::from(id);
        match self.clients.entry(key.clone()) {
            dashmap::Entry::Occupied(mut held) => {
                let c = held.get_mut();
                if *c.token != *token {
                    // Taken meanwhile by another token on this node.
                    return Err(Refused::IdTaken);
                }
                c.close.notify_one();
                c.conn = conn;
                c.out = out;
                c.close = close.clone();
                c.last_seen = Instant::now();
            }
            dashmap::Entry::Vacant(free) => {
                free.insert(Client {
                    user: user.clone(),
                    token: token.into(),
                    conn,
                    out,
                    close: close.clone(),
                    last_seen: Instant::now(),
                    partners: HashSet::new(),
                    waiting: 0,
                });
                metrics::gauge!(PEERJS_PEERS).increment(1.0);
            }
        }
        Ok((
            Session {
                id: key,
                user: user.clone(),
                conn,
            },
            Outlet { frames, close },
        ))
    }

    /// The id is held now: what waited for it on this node is handed over
    /// and, with several nodes, every other node is told to do the same.
    pub(crate) async fn claimed(&self, me: &Session) {
        match &self.mesh {
            Some(mesh) => mesh.broadcast(&Envelope::Claim {
                id: me.id.to_string(),
                user: me.user.to_string(),
                node: mesh.node().to_owned(),
            }),
            None => self.hand_over(&me.id, &me.user, Place::Here).await,
        }
    }

    /// Hands what waited for `id` to its holder `user`, front first: each
    /// message whose sender may signal the holder; the rest are refused.
    async fn hand_over(&self, id: &str, user: &UserId, place: Place) {
        loop {
            let next = {
                let mut waiting = lock(&self.waiting);
                match waiting.get_mut(id).map(VecDeque::pop_front) {
                    Some(Some(w)) => w,
                    Some(None) => {
                        waiting.remove(id);
                        return;
                    }
                    None => return,
                }
            };
            self.unwait(&next.src);
            if self.may_signal(&next.src_user, user).await {
                self.deliver(&next.src, id, &place, next.text);
            } else {
                // EXPIRE when it would have come had nobody claimed the id:
                // the sender cannot tell who did, nor when.
                metrics::counter!(PEERJS_REFUSED).increment(1);
                self.refuse(&next.src, id, next.due);
            }
        }
    }

    /// The socket closed. Unless it was replaced, the id is free again and
    /// its partners are told `LEAVE`.
    pub(crate) async fn unregister(&self, me: &Session) {
        let Some((_, gone)) = self.clients.remove_if(&me.id, |_, c| c.conn == me.conn) else {
            return;
        };
        metrics::gauge!(PEERJS_PEERS).decrement(1.0);
        if let Some(mesh) = &self.mesh {
            mesh.release(&me.id, me.conn, &gone.token, &gone.user);
        }
        for partner in &gone.partners {
            if let Some((_, place)) = self.locate(partner).await {
                self.deliver(
                    &me.id,
                    partner,
                    &place,
                    frame("LEAVE", &me.id, partner, None),
                );
            }
        }
    }

    /// Closes every socket (shutdown).
    pub fn close_all(&self) {
        for c in &self.clients {
            c.close.notify_one();
        }
    }

    /// One text frame from `me`'s socket.
    pub(crate) async fn on_text(&self, me: &Session, text: &str) {
        let mine = match self.clients.get_mut(&me.id) {
            Some(mut c) if c.conn == me.conn => {
                c.last_seen = Instant::now();
                true
            }
            _ => false,
        };
        if !mine {
            return;
        }
        // Malformed frames are dropped, as PeerJS drops them.
        let Ok(msg) = serde_json::from_str::<Inbound<'_>>(text) else {
            return;
        };
        let Some(kind) = msg.kind else { return };
        if !relayed(kind) {
            return; // HEARTBEAT (already noted) and unknown types.
        }
        let dst = msg
            .dst
            .and_then(|d| serde_json::from_str::<&str>(d.get()).ok());
        match dst {
            Some(dst) if !dst.is_empty() => self.relay(me, kind, dst, msg.payload).await,
            // PeerJS: `LEAVE` without a destination gives the id up.
            _ if kind == "LEAVE" => {
                if let Some(c) = self.clients.get(&me.id)
                    && c.conn == me.conn
                {
                    c.close.notify_one();
                }
            }
            _ => {}
        }
    }

    async fn relay(&self, me: &Session, kind: &str, dst: &str, payload: Option<&RawValue>) {
        let text = frame(kind, &me.id, dst, payload);
        // Behind what already waits for `dst`, whoever holds it now.
        let answers = kind == "LEAVE" || kind == "EXPIRE";
        if !answers && self.wait_behind(me, dst, &text) {
            return;
        }
        let Some((holder, place)) = self.locate(dst).await else {
            // Nobody holds it: wait for its holder, as PeerJS does, except
            // for the two types that only answer something.
            if !answers {
                self.wait(me, dst, text);
                // Claimed between the look and the wait: hand it over now.
                if let Some((holder, place)) = self.locate(dst).await {
                    self.hand_over(dst, &holder, place).await;
                }
            }
            return;
        };
        if !self.may_signal(&me.user, &holder).await {
            metrics::counter!(PEERJS_REFUSED).increment(1);
            if !answers {
                self.refuse(&me.id, dst, Instant::now() + self.settings.expire);
            }
            return;
        }
        self.deliver(&me.id, dst, &place, text);
    }

    /// Who holds `id` and where: this node first, then (several nodes) Redis.
    async fn locate(&self, id: &str) -> Option<(UserId, Place)> {
        if let Some(c) = self.clients.get(id) {
            return Some((c.user.clone(), Place::Here));
        }
        let mesh = self.mesh.as_ref()?;
        match mesh.holder(id).await {
            // Ours in Redis but not here: it just left.
            Ok(Some(h)) if h.node == mesh.node() => None,
            Ok(Some(h)) => Some((h.user, Place::Node(h.node))),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "PeerJS relay: Redis did not answer; treated as offline");
                None
            }
        }
    }

    /// Sends to the holder of `dst`: this node's socket, or its node.
    fn deliver(&self, src: &Arc<str>, dst: &str, place: &Place, text: Arc<str>) {
        let sent = match place {
            Place::Here => match self.clients.get_mut(dst) {
                Some(mut d) => {
                    d.partners.insert(src.clone());
                    d.send(text)
                }
                None => false,
            },
            Place::Node(node) => {
                if let Some(mesh) = &self.mesh {
                    mesh.send(
                        node,
                        &Envelope::Frame {
                            dst: dst.to_owned(),
                            src: src.to_string(),
                            text: text.to_string(),
                        },
                    );
                }
                true
            }
        };
        if sent {
            metrics::counter!(PEERJS_RELAYED).increment(1);
            if let Some(mut s) = self.clients.get_mut(src) {
                s.partners.insert(Arc::from(dst));
            }
        }
    }

    /// What another node sent this node.
    pub fn on_envelope(self: &Arc<Self>, envelope: Envelope) {
        match envelope {
            Envelope::Frame { dst, src, text } => {
                if let Some(mut d) = self.clients.get_mut(dst.as_str()) {
                    d.partners.insert(Arc::from(src));
                    d.send(Arc::from(text));
                }
            }
            Envelope::Kick { id, conn } => {
                // Moved to another node with the same token: this socket
                // closes without a LEAVE (the id lives on).
                if let Some((_, c)) = self.clients.remove_if(id.as_str(), |_, c| c.conn == conn) {
                    metrics::gauge!(PEERJS_PEERS).decrement(1.0);
                    c.close.notify_one();
                }
            }
            Envelope::Claim { id, user, node } => {
                let Some(user) = UserId::new(user) else {
                    return;
                };
                let place = match &self.mesh {
                    Some(mesh) if node != mesh.node() => Place::Node(node),
                    _ => Place::Here,
                };
                if lock(&self.waiting).contains_key(id.as_str()) {
                    let broker = self.clone();
                    tokio::spawn(async move { broker.hand_over(&id, &user, place).await });
                }
            }
        }
    }

    /// Joins the queue for `dst` if there is one (being handed over, or
    /// waiting for a holder).
    fn wait_behind(&self, me: &Session, dst: &str, text: &Arc<str>) -> bool {
        let mut waiting = lock(&self.waiting);
        let Some(queue) = waiting.get_mut(dst) else {
            return false;
        };
        queue.push_back(Waiting {
            src: me.id.clone(),
            src_user: me.user.clone(),
            text: text.clone(),
            due: Instant::now() + self.settings.expire,
        });
        drop(waiting);
        if let Some(mut c) = self.clients.get_mut(&me.id) {
            c.waiting += 1;
        }
        true
    }

    fn wait(&self, me: &Session, dst: &str, text: Arc<str>) {
        {
            let Some(mut c) = self.clients.get_mut(&me.id) else {
                return;
            };
            if c.waiting >= MAX_WAITING_PER_SENDER {
                return;
            }
            c.waiting += 1;
        }
        lock(&self.waiting)
            .entry(Arc::from(dst))
            .or_default()
            .push_back(Waiting {
                src: me.id.clone(),
                src_user: me.user.clone(),
                text,
                due: Instant::now() + self.settings.expire,
            });
    }

    fn unwait(&self, src: &str) {
        if let Some(mut c) = self.clients.get_mut(src) {
            c.waiting = c.waiting.saturating_sub(1);
        }
    }

    /// `EXPIRE` to `src` for `dst` at `due`, once per pair.
    fn refuse(&self, src: &Arc<str>, dst: &str, due: Instant) {
        let mut refused = lock(&self.refused);
        if refused.iter().any(|(_, s, d)| s == src && &**d == dst) {
            return;
        }
        refused.push((due, src.clone(), Arc::from(dst)));
    }

    /// Tells `src` (a peer of this node) that nobody took its message for `dst`.
    fn expire(&self, src: &str, dst: &str) {
        if let Some(s) = self.clients.get(src) {
            metrics::counter!(PEERJS_EXPIRED).increment(1);
            s.send(frame("EXPIRE", dst, src, None));
        }
    }

    /// Whether `a` and `b` share a call whose room both may join now.
    async fn may_signal(&self, a: &UserId, b: &UserId) -> bool {
        let key = pair(a, b);
        if self.allowed.contains_key(&key) {
            return true;
        }
        let ends = self.ends.load(Ordering::Acquire);
        match self.access.shared_calls(a, b).await {
            Ok(calls) if calls.is_empty() => false,
            Ok(calls) => {
                // A call that ended while this read ran may be among them.
                if self.ends.load(Ordering::Acquire) == ends {
                    self.allowed.insert(key, calls);
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "PeerJS relay refused: the database did not answer");
                false
            }
        }
    }

    /// Once a period: `EXPIRE` for what waited too long, and closing the
    /// sockets silent for the alive timeout.
    pub(crate) fn sweep(&self, now: Instant) {
        let mut expired: Vec<(Arc<str>, Arc<str>)> = Vec::new();
        {
            let mut waiting = lock(&self.waiting);
            waiting.retain(|dst, q| {
                while q.front().is_some_and(|w| w.due <= now) {
                    if let Some(w) = q.pop_front() {
                        if !expired.iter().any(|(s, d)| *s == w.src && d == dst) {
                            expired.push((w.src.clone(), dst.clone()));
                        }
                        self.unwait(&w.src);
                    }
                }
                !q.is_empty()
            });
        }
        {
            let mut refused = lock(&self.refused);
            refused.retain(|(due, src, dst)| {
                if *due <= now {
                    if !expired.iter().any(|(s, d)| s == src && d == dst) {
                        expired.push((src.clone(), dst.clone()));
                    }
                    false
                } else {
                    true
                }
            });
        }
        for (src, dst) in expired {
            self.expire(&src, &dst);
        }
        for c in &self.clients {
            if now.saturating_duration_since(c.last_seen) >= self.settings.alive {
                c.close.notify_one();
            }
        }
    }

    /// Runs [`Broker::sweep`] until the process ends; with several nodes,
    /// also keeps this node's ids alive in Redis.
    pub async fn run(self: Arc<Self>) {
        let period =
            (self.settings.expire / 5).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let refresh_every = self.settings.alive / 3;
        let mut refreshed = Instant::now();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Instant::now();
            self.sweep(now);
            if let Some(mesh) = &self.mesh
                && now.saturating_duration_since(refreshed) >= refresh_every
            {
                refreshed = now;
                let held: Vec<_> = self
                    .clients
                    .iter()
                    .map(|c| {
                        (
                            c.key().to_string(),
                            c.conn,
                            c.token.to_string(),
                            c.user.clone(),
                        )
                    })
                    .collect();
                if let Err(e) = mesh.refresh(&held).await {
                    tracing::warn!(error = %e, "PeerJS ids not refreshed in Redis; retrying");
                    refreshed = now - refresh_every;
                }
            }
        }
    }
}

impl RoomControl for Broker {
    /// The call's end closes its pair's authorisation: the next message
    /// between them reads the database again.
    fn close_call(&self, call: &CallId) {
        self.ends.fetch_add(1, Ordering::AcqRel);
        self.allowed.retain(|_, calls| !calls.contains(call));
    }

    fn chat_ended(&self, _chat: &ChatId) {}
}

#[async_trait::async_trait]
impl PeerDirectory for Broker {
    async fn holder(&self, peer_id: &str) -> Option<UserId> {
        self.locate(peer_id).await.map(|(user, _)| user)
    }
}

#[cfg(test)]
mod tests {
    use consultd_domain::{Call, CallCommand, CallOrigin, EntryId, Party, ScheduleId, Side};
    use consultd_persistence::testing::TestDatabase;
    use consultd_persistence::{CallRecord, CallRepo, Db};

    use super::*;

    const EXPIRE: Duration = Duration::from_secs(5);
    const ALIVE: Duration = Duration::from_secs(60);

    fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }

    async fn broker(limit: usize) -> (Arc<Broker>, Db, TestDatabase) {
        let tdb = TestDatabase::sqlite();
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let settings = BrokerSettings {
            key: "peerjs".into(),
            expire: EXPIRE,
            alive: ALIVE,
            limit,
            discovery: false,
            rate: (0, 0),
        };
        let roles = consultd_domain::RoleMap::new::<&str>(&[], &[], &[]).unwrap();
        let tickets = Tickets::load(&db, roles, 60, chrono::Utc::now())
            .await
            .unwrap();
        let broker = Broker::new(settings, RoomAccess::new(db.clone()), tickets, None);
        (broker, db, tdb)
    }

    /// A live queue call between `host` and `guest`.
    async fn call(db: &Db, id: &str, host: &str, guest: &str) -> CallRecord {
        let now = chrono::Utc::now();
        let call = Call::invite(
            CallId::new(id),
            Party::new(user(host), None),
            Party::new(user(guest), None),
            Side::Host,
            now,
            chrono::Duration::seconds(60),
        )
        .unwrap();
        let record = CallRecord {
            room_id: id.to_owned(),
            call,
            origin: CallOrigin::Queue {
                schedule_id: ScheduleId::new(format!("s-{id}")),
                entry_id: EntryId::new(format!("e-{id}")),
            },
            call_type: "video".into(),
        };
        CallRepo.insert(db.conn(), &record).await.unwrap();
        record
    }

    fn frames(outlet: &mut Outlet) -> Vec<serde_json::Value> {
        let mut got = Vec::new();
        while let Ok(text) = outlet.frames.try_recv() {
            got.push(serde_json::from_str(&text).unwrap());
        }
        got
    }

    async fn connect(b: &Broker, id: &str, token: &str, who: &str) -> (Session, Outlet) {
        let (s, mut o) = b.register(id, token, &user(who)).await.unwrap();
        b.claimed(&s).await;
        assert_eq!(&*o.frames.try_recv().unwrap(), OPEN);
        (s, o)
    }

    #[tokio::test]
    async fn an_id_is_one_tokens_until_its_socket_goes_and_the_limit_counts_ids() {
        let (b, _db, _tdb) = broker(2).await;
        let (first, first_out) = connect(&b, "a", "tok-1", "u1").await;
        assert_eq!(
            b.register("a", "tok-2", &user("u2")).await.err(),
            Some(Refused::IdTaken)
        );
        // The same token replaces the socket: the old one is told to close,
        // and its late unregister frees nothing.
        let (second, _out) = connect(&b, "a", "tok-1", "u1").await;
        tokio::time::timeout(Duration::from_millis(10), first_out.close.notified())
            .await
            .expect("the replaced socket is closed");
        b.unregister(&first).await;
        assert_eq!(b.holder("a").await, Some(user("u1")));
        let _b = connect(&b, "b", "tok-3", "u3").await;
        assert_eq!(
            b.register("c", "tok-4", &user("u4")).await.err(),
            Some(Refused::Full)
        );
        b.unregister(&second).await;
        assert_eq!(b.holder("a").await, None);
        let _c = connect(&b, "c", "tok-4", "u4").await;
    }

    #[tokio::test]
    async fn relay_needs_a_shared_live_call_and_its_end_closes_the_pair() {
        let (b, db, _tdb) = broker(10).await;
        let mut live = call(&db, "c1", "doc", "pat").await;
        let (doc, mut doc_out) = connect(&b, "d", "t-d", "doc").await;
        let (_pat, mut pat_out) = connect(&b, "p", "t-p", "pat").await;
        let (stranger, mut stranger_out) = connect(&b, "s", "t-s", "eve").await;

        b.on_text(
            &doc,
            r#"{"type":"OFFER","src":"forged","dst":"p","payload":{"x":1}}"#,
        )
        .await;
        let got = frames(&mut pat_out);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0],
            serde_json::json!({"type":"OFFER","src":"d","dst":"p","payload":{"x":1}})
        );

        b.on_text(&stranger, r#"{"type":"OFFER","dst":"p","payload":{}}"#)
            .await;
        b.on_text(&stranger, r#"{"type":"CANDIDATE","dst":"p","payload":{}}"#)
            .await;
        assert!(frames(&mut pat_out).is_empty());
        // As for an offline id: one EXPIRE, once the expire time is up.
        b.sweep(Instant::now() + EXPIRE / 2);
        assert!(frames(&mut stranger_out).is_empty());
        b.sweep(Instant::now() + EXPIRE);
        assert_eq!(
            frames(&mut stranger_out),
            [serde_json::json!({"type":"EXPIRE","src":"p","dst":"s"})]
        );

        // The call ends: its row and the broker's cached pair both close.
        let t = live
            .call
            .handle(&user("pat"), CallCommand::Decline, chrono::Utc::now())
            .unwrap()
            .unwrap();
        CallRepo.apply(db.conn(), &live.call, t).await.unwrap();
        b.on_text(&doc, r#"{"type":"CANDIDATE","dst":"p","payload":{}}"#)
            .await;
        assert_eq!(
            frames(&mut pat_out).len(),
            1,
            "still cached until the end is told"
        );
        b.close_call(&live.call.id);
        b.on_text(&doc, r#"{"type":"CANDIDATE","dst":"p","payload":{}}"#)
            .await;
        assert!(frames(&mut pat_out).is_empty());
        b.sweep(Instant::now() + EXPIRE);
        assert_eq!(frames(&mut doc_out)[0]["type"], "EXPIRE");
    }

    #[tokio::test]
    async fn what_waits_for_an_id_goes_to_its_holder_in_order_or_expires() {
        let (b, db, _tdb) = broker(10).await;
        call(&db, "c2", "doc", "pat").await;
        let (doc, mut doc_out) = connect(&b, "d", "t-d", "doc").await;
        for n in 0..5 {
            b.on_text(
                &doc,
                &format!(r#"{{"type":"CANDIDATE","dst":"p","payload":{{"n":{n}}}}}"#),
            )
            .await;
        }
        b.on_text(&doc, r#"{"type":"OFFER","dst":"nobody","payload":{}}"#)
            .await;
        // LEAVE and EXPIRE for an offline id are dropped, not queued.
        b.on_text(&doc, r#"{"type":"LEAVE","dst":"nobody2"}"#).await;
        let (_pat, mut pat_out) = connect(&b, "p", "t-p", "pat").await;
        let ns: Vec<_> = frames(&mut pat_out)
            .iter()
            .map(|f| f["payload"]["n"].clone())
            .collect();
        assert_eq!(ns, [0, 1, 2, 3, 4]);
        b.sweep(Instant::now() + EXPIRE);
        assert_eq!(
            frames(&mut doc_out),
            [serde_json::json!({"type":"EXPIRE","src":"nobody","dst":"d"})]
        );
        // A stranger who claims a waited-for id is handed none of it.
        b.on_text(&doc, r#"{"type":"OFFER","dst":"q","payload":{"secret":1}}"#)
            .await;
        let (_q, mut q_out) = connect(&b, "q", "t-q", "eve").await;
        assert!(frames(&mut q_out).is_empty());
        // Told when an unclaimed id's message would have been: not sooner.
        assert!(frames(&mut doc_out).is_empty());
        b.sweep(Instant::now() + EXPIRE);
        assert_eq!(
            frames(&mut doc_out),
            [serde_json::json!({"type":"EXPIRE","src":"q","dst":"d"})]
        );
        assert!(frames(&mut q_out).is_empty());
    }

    #[tokio::test]
    async fn a_silent_socket_is_closed_at_the_alive_timeout_and_its_partners_told_leave() {
        let (b, db, _tdb) = broker(10).await;
        call(&db, "c3", "doc", "pat").await;
        let (doc, mut doc_out) = connect(&b, "d", "t-d", "doc").await;
        let (pat, pat_out) = connect(&b, "p", "t-p", "pat").await;
        b.on_text(&doc, r#"{"type":"OFFER","dst":"p","payload":{}}"#)
            .await;
        b.sweep(Instant::now() + ALIVE);
        tokio::time::timeout(Duration::from_millis(10), pat_out.close.notified())
            .await
            .expect("closed at the alive timeout");
        b.unregister(&pat).await;
        assert_eq!(
            frames(&mut doc_out),
            [serde_json::json!({"type":"LEAVE","src":"p","dst":"d"})]
        );
    }

    #[test]
    fn ids_as_peerjs_accepts_them() {
        assert!(valid_id("abc-123_x y"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(129)));
    }
}
