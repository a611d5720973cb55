//! The single event handler of a socket: limits, parsing, routing, replies.
//!
//! Order is the contract's (§3): one socket's events are handled in the
//! order they arrived. Most events are handled inline, synchronously, in
//! the socket's read task (no task per event). An event that must wait on
//! the database (a room join) runs in a task; while it runs, the socket's
//! later events queue behind it in its [`Lane`] and are handled when it is
//! done — so an offer sent right after a join is relayed, not refused.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::value::RawValue;
use serde_json::{Value as Json, json};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::{FromMessageParts, MessageHandler, Value};

use super::admin;
use super::chat::{self, ChatEvent};
use super::ctx::SocketCtx;
use super::node::SocketState;
use super::reply::Reply;
use super::rooms::{Signal, Sock};
use super::signal::{self, SignalEvent};
use crate::error::ApiError;
use crate::sync::lock;
use crate::telemetry::SOCKET_EVENTS;

/// The events with a handler of their own, by family.
#[derive(Debug, Clone, Copy)]
enum Route {
    Identify,
    Signal(SignalEvent),
    Chat(ChatEvent),
    /// The admin view's feed (`true`: subscribe).
    Admin {
        subscribe: bool,
    },
}

/// Every client event consultd answers, each name written once; other
/// names are "unknown" (and counted under that label, so clients cannot
/// grow the metric set).
const ROUTES: [(&str, Route); 17] = {
    use ChatEvent as C;
    use Route::{Chat, Identify, Signal as S};
    use SignalEvent as E;
    const fn relay(signal: Signal, legacy: bool) -> Route {
        Route::Signal(SignalEvent::Relay { signal, legacy })
    }
    [
        ("identify_as_doctor", Identify),
        ("webrtc:join_room", S(E::Join { legacy: false })),
        ("webrtc:offer", relay(Signal::Offer, false)),
        ("webrtc:answer", relay(Signal::Answer, false)),
        ("webrtc:ice_candidate", relay(Signal::IceCandidate, false)),
        ("webrtc:leave_room", S(E::Leave)),
        ("join_consultation_room", S(E::Join { legacy: true })),
        ("webrtc_offer", relay(Signal::Offer, true)),
        ("webrtc_answer", relay(Signal::Answer, true)),
        ("webrtc_ice_candidate", relay(Signal::IceCandidate, true)),
        ("chat:join_room", Chat(C::Join)),
        ("chat:send_message", Chat(C::Send)),
        ("chat:typing", Chat(C::Typing)),
        ("chat:read", Chat(C::Read)),
        ("chat:leave_room", Chat(C::Leave)),
        ("admin:subscribe", Route::Admin { subscribe: true }),
        ("admin:unsubscribe", Route::Admin { subscribe: false }),
    ]
};

const fn names<const N: usize>(routes: &[(&'static str, Route); N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = routes[i].0;
        i += 1;
    }
    out
}

/// The names of [`ROUTES`], for metrics, docs and tests.
pub const EVENTS: &[&str] = &names(&ROUTES);

fn route(name: &str) -> Option<Route> {
    ROUTES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// Events a socket may have waiting behind a slow one; more is flooding.
const LANE_CAPACITY: usize = 256;

/// Events waiting behind one that is still running.
#[derive(Default)]
struct LaneState {
    busy: bool,
    waiting: VecDeque<(Incoming, Reply)>,
    /// Runs once the lane drains (the socket's disconnect cleanup).
    after: Option<Box<dyn FnOnce() + Send>>,
}

/// A socket's ordered lane; shared by its dispatcher and its disconnect
/// handler.
#[derive(Clone, Default)]
pub(crate) struct Lane(Arc<Mutex<LaneState>>);

impl Lane {
    /// Runs `f` once every event already received has been handled: now if
    /// none is running, else when the lane drains. A disconnect uses it, so
    /// a message read just before the connection dropped is still stored
    /// and delivered, not refused because its sender already left the room.
    pub(crate) fn after_received(&self, f: impl FnOnce() + Send + 'static) {
        let mut lane = lock(&self.0);
        if lane.busy {
            lane.after = Some(Box::new(f));
            return;
        }
        drop(lane);
        f();
    }
}

/// Handles every event of one socket.
pub(crate) struct Dispatcher {
    ctx: Arc<SocketCtx>,
    state: SocketState,
    lane: Lane,
}

impl Dispatcher {
    pub(crate) fn new(ctx: Arc<SocketCtx>, state: SocketState, lane: Lane) -> Self {
        Self { ctx, state, lane }
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
            let mut lane = lock(&self.lane.0);
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
            let (ctx, state, lane) = (self.ctx.clone(), self.state.clone(), self.lane.clone());
            tokio::spawn(async move {
                run_lane(ctx, state, lane, s, event, reply).await;
            });
        } else {
            handle_inline(&self.ctx, &self.state, event, reply);
        }
    }
}

/// Runs a slow event, then everything that queued behind it, in order,
/// until the lane is empty.
async fn run_lane(
    ctx: Arc<SocketCtx>,
    state: SocketState,
    lane: Lane,
    s: Sock,
    first: Incoming,
    reply: Reply,
) {
    let mut next = Some((first, reply));
    while let Some((event, reply)) = next.take() {
        if event.needs_task() {
            handle_slow(&ctx, &state, &s, event, reply).await;
        } else {
            let _entered = ctx.span.enter();
            handle_inline(&ctx, &state, event, reply);
        }
        let after = {
            let mut lane = lock(&lane.0);
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
            Some(Route::Admin { subscribe }) => subscribe,
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

fn handle_inline(ctx: &SocketCtx, state: &SocketState, event: Incoming, reply: Reply) {
    count(&event.name);
    let wants_ack = reply.wants_ack;
    let hub = &*state.hub;
    let mut slot = Some(reply);
    let result = match event.route {
        Some(Route::Signal(SignalEvent::Relay { signal, legacy })) => {
            signal::relay(hub, ctx, signal, legacy, &event.payload, &mut slot)
        }
        Some(Route::Signal(SignalEvent::Leave)) => {
            signal::leave(hub, ctx, &event.payload).map(Some)
        }
        Some(Route::Chat(ChatEvent::Typing)) => chat::typing(state, ctx, &event.payload).map(Some),
        Some(Route::Chat(ChatEvent::Leave)) => chat::leave(state, ctx, &event.payload).map(Some),
        Some(Route::Identify) => identify(ctx).map(Some),
        Some(Route::Admin { subscribe: false }) => {
            Ok(slot.as_ref().map(|r| admin::unsubscribe(&r.socket)))
        }
        Some(
            Route::Signal(SignalEvent::Join { .. })
            | Route::Chat(_)
            | Route::Admin { subscribe: true },
        ) => unreachable_slow(),
        None => unknown(&event.name, wants_ack),
    };
    // Taken by a hub that answers once the relay is stored.
    let Some(reply) = slot else {
        return;
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

async fn handle_slow(
    ctx: &SocketCtx,
    state: &SocketState,
    s: &Sock,
    event: Incoming,
    reply: Reply,
) {
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
        Some(Route::Admin { subscribe: true }) => admin::subscribe(state, ctx, s).await.map(Some),
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

/// The WebRTC signaling app: the payload is ignored; hosts only.
fn identify(ctx: &SocketCtx) -> Result<Json, ApiError> {
    if ctx.principal.is_host() {
        Ok(json!({ "ok": true }))
    } else {
        Err(ApiError::forbidden("only a host may identify as a doctor"))
    }
}

/// socket.io ignores events nobody listens to; so do we, unless the client
/// waits for an answer. `Ok(None)`: nothing to answer.
fn unknown(name: &str, wants_ack: bool) -> Result<Option<Json>, ApiError> {
    if !wants_ack {
        tracing::debug!(event = truncate(name, 64), "unknown event ignored");
        return Ok(None);
    }
    Err(ApiError::bad_request(format!(
        "unknown event `{}`",
        truncate(name, 64)
    )))
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
        if !self.ctx.try_take(Instant::now()) {
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
        let route = route(&name);
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
