//! The single event handler of a socket: limits, parsing, routing, replies.
//!
//! Order is the contract's (§3): one socket's events are handled in the
//! order they arrived. Most events are handled inline, synchronously, in
//! the socket's read task (no task per event). An event that must wait on
//! the database (a room join) runs in a task; while it runs, the socket's
//! later events queue behind it in its [`Lane`] and are handled when it is
//! done — so an offer sent right after a join is relayed, not refused.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use consultd_domain::{Principal, TokenBucket};
use serde_json::value::RawValue;
use serde_json::{Value as Json, json};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::{FromMessageParts, MessageHandler, Value};
use socketioxide::socket::{Sid, Socket};

use super::chat::{self, ChatEvent};
use super::rooms::{RoomKind, SignalRoom};
use super::signal::{self, SignalEvent};
use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::SOCKET_EVENTS;

/// Every client event consultd answers; other names are "unknown" (and
/// counted under that label, so clients cannot grow the metric set).
pub const EVENTS: &[&str] = &[
    "identify_as_doctor",
    "webrtc:join_room",
    "webrtc:offer",
    "webrtc:answer",
    "webrtc:ice_candidate",
    "webrtc:leave_room",
    "join_consultation_room",
    "webrtc_offer",
    "webrtc_answer",
    "webrtc_ice_candidate",
    "chat:join_room",
    "chat:send_message",
    "chat:typing",
    "chat:read",
    "chat:leave_room",
];

/// Events a socket may have waiting behind a slow one; more is flooding.
const LANE_CAPACITY: usize = 256;

pub(crate) type Sock = Arc<Socket<LocalAdapter>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a push, a pop or a flag: data behind a
    // poisoned lock is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The signaling rooms a socket is in, by the room id it used.
#[derive(Default)]
pub(crate) struct JoinedRooms {
    /// The socket has disconnected: it joins nothing more.
    pub(crate) gone: bool,
    pub(crate) rooms: Vec<(Arc<str>, Arc<SignalRoom>)>,
}

/// Events waiting behind one that is still running.
#[derive(Default)]
struct Lane {
    busy: bool,
    waiting: VecDeque<(Incoming, Reply)>,
    /// Runs once the lane drains (the socket's disconnect cleanup).
    after: Option<Box<dyn FnOnce() + Send>>,
}

/// Per-socket state, built once when the socket is authenticated.
pub(crate) struct SocketCtx {
    pub(crate) principal: Principal,
    pub(crate) socket_id: Sid,
    /// `socket.id` as text, for `fromSocketId`.
    pub(crate) sid: String,
    pub(crate) span: tracing::Span,
    /// When the socket joined its user room: pushes made after this reach
    /// it live, so the connect-time resync re-sends only what is older.
    pub(crate) joined_at: consultd_domain::Timestamp,
    pub(crate) joined: Mutex<JoinedRooms>,
    /// Its send queue overflowed and its connection is being closed.
    pub(crate) overflowed: AtomicBool,
    bucket: Mutex<TokenBucket>,
    lane: Mutex<Lane>,
}

impl SocketCtx {
    pub(crate) fn new(sid: Sid, principal: Principal, state: &AppState) -> Self {
        let span = tracing::info_span!(
            "socket",
            sid = %sid,
            user = %principal.user_id,
            role = %principal.role,
        );
        let bucket = TokenBucket::new(
            state.config.event_rate,
            state.config.event_burst,
            Instant::now(),
        );
        Self {
            principal,
            socket_id: sid,
            sid: sid.to_string(),
            span,
            joined_at: crate::service::now(),
            joined: Mutex::new(JoinedRooms::default()),
            overflowed: AtomicBool::new(false),
            bucket: Mutex::new(bucket),
            lane: Mutex::new(Lane::default()),
        }
    }

    /// The room of `kind` this socket joined as `alias`.
    pub(crate) fn joined_room(&self, kind: RoomKind, alias: &str) -> Option<Arc<SignalRoom>> {
        lock(&self.joined)
            .rooms
            .iter()
            .find(|(a, r)| r.kind == kind && &**a == alias)
            .map(|(_, r)| r.clone())
    }

    /// Runs `f` once every event already received has been handled: now if
    /// none is running, else when the lane drains. A disconnect uses it, so
    /// a message read just before the connection dropped is still stored
    /// and delivered, not refused because its sender already left the room.
    pub(crate) fn after_received(&self, f: impl FnOnce() + Send + 'static) {
        let mut lane = lock(&self.lane);
        if lane.busy {
            lane.after = Some(Box::new(f));
            return;
        }
        drop(lane);
        f();
    }

    /// Drops every alias of `room` from this socket's list.
    pub(crate) fn forget_room(&self, room: &SignalRoom) {
        lock(&self.joined)
            .rooms
            .retain(|(_, r)| !std::ptr::eq(&**r, room));
    }
}

/// Handles every event of one socket.
pub(crate) struct Dispatcher {
    ctx: Arc<SocketCtx>,
    state: AppState,
}

impl Dispatcher {
    pub(crate) fn new(ctx: Arc<SocketCtx>, state: AppState) -> Self {
        Self { ctx, state }
    }
}

/// Marker for socketioxide's handler trait: this handler takes raw packets.
pub(crate) struct RawPacket;

impl MessageHandler<LocalAdapter, RawPacket> for Dispatcher {
    fn call(&self, s: Sock, mut v: Value, ack_id: Option<i64>) {
        let _entered = self.ctx.span.enter();
        let ack = match AckSender::from_message_parts(&s, &mut v, &ack_id) {
            Ok(ack) => ack,
            Err(never) => match never {},
        };
        let reply = Reply {
            socket: s.clone(),
            ack,
            wants_ack: ack_id.is_some(),
        };
        let event = match self.admit(&v) {
            Ok(event) => event,
            Err(e) => return reply.err(&e),
        };
        {
            let mut lane = lock(&self.ctx.lane);
            if lane.busy {
                if lane.waiting.len() >= LANE_CAPACITY {
                    drop(lane);
                    return reply.err(&ApiError::RateLimited);
                }
                lane.waiting.push_back((event, reply));
                return;
            }
            if event.needs_task() {
                lane.busy = true;
            }
        }
        if event.needs_task() {
            let (ctx, state) = (self.ctx.clone(), self.state.clone());
            tokio::spawn(async move {
                run_lane(ctx, state, s, event, reply).await;
            });
        } else {
            handle_inline(&self.ctx, &self.state, event, reply);
        }
    }
}

/// Runs a slow event, then everything that queued behind it, in order,
/// until the lane is empty.
async fn run_lane(ctx: Arc<SocketCtx>, state: AppState, s: Sock, first: Incoming, reply: Reply) {
    let mut next = Some((first, reply));
    while let Some((event, reply)) = next.take() {
        if event.needs_task() {
            handle_slow(&ctx, &state, &s, event, reply).await;
        } else {
            let _entered = ctx.span.enter();
            handle_inline(&ctx, &state, event, reply);
        }
        let after = {
            let mut lane = lock(&ctx.lane);
            next = lane.waiting.pop_front();
            if next.is_none() {
                lane.busy = false;
                lane.after.take()
            } else {
                None
            }
        };
        if let Some(after) = after {
            after();
        }
    }
}

/// The events with a handler of their own, by family.
#[derive(Debug, Clone, Copy)]
enum Route {
    Signal(SignalEvent),
    Chat(ChatEvent),
}

/// A parsed event: its name and first argument, as the client wrote it.
pub(crate) struct Incoming {
    name: String,
    payload: Box<RawValue>,
    route: Option<Route>,
}

impl Incoming {
    fn needs_task(&self) -> bool {
        match self.route {
            Some(Route::Signal(SignalEvent::Join { .. })) => true,
            Some(Route::Chat(chat)) => chat.needs_task(),
            _ => false,
        }
    }
}

fn count(name: &str) {
    let label = EVENTS
        .iter()
        .copied()
        .find(|e| *e == name)
        .unwrap_or("unknown");
    metrics::counter!(SOCKET_EVENTS, "event" => label).increment(1);
}

fn handle_inline(ctx: &SocketCtx, state: &AppState, event: Incoming, reply: Reply) {
    count(&event.name);
    let wants_ack = reply.wants_ack;
    let rooms = &state.rooms;
    let result = match event.route {
        Some(Route::Signal(SignalEvent::Relay { signal, legacy })) => {
            signal::relay(ctx, signal, legacy, &event.payload).map(Some)
        }
        Some(Route::Signal(SignalEvent::Leave)) => {
            signal::leave(ctx, rooms, RoomKind::Call, &event.payload).map(Some)
        }
        Some(Route::Chat(ChatEvent::Typing)) => chat::typing(ctx, &event.payload).map(Some),
        Some(Route::Chat(ChatEvent::Leave)) => {
            signal::leave(ctx, rooms, RoomKind::Chat, &event.payload).map(Some)
        }
        Some(Route::Signal(SignalEvent::Join { .. }) | Route::Chat(_)) => unreachable_slow(),
        None => handle_other(ctx, state, &event, wants_ack),
    };
    match result {
        Ok(Some(ok)) if wants_ack => reply.ok(ok),
        Ok(_) => {}
        Err(e) => reply.err(&e),
    }
}

fn unreachable_slow() -> Result<Option<Json>, ApiError> {
    // Database-bound events always take the slow path; answering here
    // would skip the lane.
    tracing::error!("a database-bound event reached the inline handler");
    Err(ApiError::Internal)
}

async fn handle_slow(ctx: &SocketCtx, state: &AppState, s: &Sock, event: Incoming, reply: Reply) {
    count(&event.name);
    // Joins answer through the slot themselves (their ack must go out
    // before what follows it under the room lock); the rest answer here.
    let mut slot = Some(reply);
    let payload = &event.payload;
    let answered = match event.route {
        Some(Route::Signal(SignalEvent::Join { legacy })) => {
            signal::join(state, ctx, s, legacy, payload, &mut slot)
                .await
                .map(|()| None)
        }
        Some(Route::Chat(ChatEvent::Join)) => chat::join(state, ctx, s, payload, &mut slot)
            .await
            .map(|()| None),
        Some(Route::Chat(ChatEvent::Send)) => chat::send(state, ctx, payload).await.map(Some),
        Some(Route::Chat(ChatEvent::Read)) => chat::read(state, ctx, payload).await.map(Some),
        _ => {
            if let Some(reply) = slot.take() {
                handle_inline(ctx, state, event, reply);
            }
            return;
        }
    };
    let Some(reply) = slot.take() else {
        return;
    };
    match answered {
        Ok(Some(body)) => reply.ok(body),
        Ok(None) => {}
        Err(e) => reply.err(&e),
    }
}

/// `Ok(None)` means "nothing to answer" (an unknown event without an ack).
fn handle_other(
    ctx: &SocketCtx,
    _state: &AppState,
    event: &Incoming,
    wants_ack: bool,
) -> Result<Option<Json>, ApiError> {
    match event.name.as_str() {
        // Seed 002: the payload is ignored; hosts only.
        "identify_as_doctor" => {
            if ctx.principal.is_host() {
                Ok(Some(json!({ "ok": true })))
            } else {
                Err(ApiError::forbidden("only a host may identify as a doctor"))
            }
        }
        // socket.io ignores events nobody listens to; so do we, unless
        // the client waits for an answer.
        other if !wants_ack => {
            tracing::debug!(event = truncate(other, 64), "unknown event ignored");
            Ok(None)
        }
        other => Err(ApiError::bad_request(format!(
            "unknown event `{}`",
            truncate(other, 64)
        ))),
    }
}

impl Dispatcher {
    /// The checks every event passes before it is queued: size, rate, shape.
    fn admit(&self, v: &Value) -> Result<Incoming, ApiError> {
        let Value::Str(text, bins) = v else {
            return Err(ApiError::bad_request(
                "consultd speaks JSON; binary events are not accepted",
            ));
        };
        let size = text.len() + bins.as_ref().map_or(0, |b| b.iter().map(|b| b.len()).sum());
        let max = self.state.config.max_event_bytes;
        if size > max {
            return Err(ApiError::TooLarge(format!(
                "events are limited to {max} bytes"
            )));
        }
        if !lock(&self.ctx.bucket).try_take(Instant::now()) {
            return Err(ApiError::RateLimited);
        }
        if bins.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(ApiError::bad_request("binary attachments are not accepted"));
        }
        // Borrowed pieces: the payload is checked to be JSON but not decoded.
        let parts: Vec<&RawValue> = serde_json::from_str(text.as_str())
            .map_err(|_| ApiError::bad_request("the event is not valid JSON"))?;
        let Some(first) = parts.first() else {
            return Err(ApiError::bad_request("the event has no name"));
        };
        let name: String = serde_json::from_str(first.get())
            .map_err(|_| ApiError::bad_request("the event name must be a string"))?;
        let payload =
            serde_json::value::to_raw_value(parts.get(1).copied().unwrap_or(RawValue::NULL))
                .map_err(|_| ApiError::bad_request("the event is not valid JSON"))?;
        let route = SignalEvent::parse(&name)
            .map(Route::Signal)
            .or_else(|| ChatEvent::parse(&name).map(Route::Chat));
        Ok(Incoming {
            name,
            payload,
            route,
        })
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Answers an event: through its ack when the client asked for one;
/// otherwise a failure becomes an `error` event carrying the same object.
pub(crate) struct Reply {
    socket: Sock,
    ack: AckSender<LocalAdapter>,
    wants_ack: bool,
}

impl Reply {
    pub(crate) fn ok(self, body: Json) {
        if !self.wants_ack {
            return;
        }
        if let Err(e) = self.ack.send(&body) {
            tracing::debug!(error = %e, "ack not sent");
        }
    }

    pub(crate) fn err(self, e: &ApiError) {
        let body = e.to_ack();
        let sent = if self.wants_ack {
            self.ack.send(&body).map_err(|e| e.to_string())
        } else {
            self.socket.emit("error", &body).map_err(|e| e.to_string())
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "error reply not sent");
        }
    }
}
