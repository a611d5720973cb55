//! The single event handler of a socket: limits, parsing, routing, replies.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use consultd_domain::{Principal, TokenBucket};
use serde_json::{Value as Json, json};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::{FromMessageParts, MessageHandler, Value};
use socketioxide::socket::{Sid, Socket};

use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::SOCKET_EVENTS;

/// Every client event consultd answers; other names are "unknown" (and
/// counted under that label, so clients cannot grow the metric set).
pub const EVENTS: &[&str] = &["identify_as_doctor"];

/// Per-socket state, built once when the socket is authenticated.
pub(crate) struct SocketCtx {
    pub(crate) principal: Principal,
    pub(crate) span: tracing::Span,
    bucket: Mutex<TokenBucket>,
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
            span,
            bucket: Mutex::new(bucket),
        }
    }
}

/// Handles every event of one socket, inline (no task per event), so a
/// socket's events are processed in arrival order.
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

type Sock = Arc<Socket<LocalAdapter>>;

impl MessageHandler<LocalAdapter, RawPacket> for Dispatcher {
    fn call(&self, s: Sock, mut v: Value, ack_id: Option<i64>) {
        let _entered = self.ctx.span.enter();
        let ack = match AckSender::from_message_parts(&s, &mut v, &ack_id) {
            Ok(ack) => ack,
            Err(never) => match never {},
        };
        let reply = Reply {
            socket: &s,
            ack,
            wants_ack: ack_id.is_some(),
        };
        match self.handle(&v, ack_id.is_some()) {
            Ok(Some(ok)) => reply.ok(ok),
            Ok(None) => {}
            Err(e) => reply.err(&e),
        }
    }
}

/// A parsed event: its name and first argument.
struct Incoming {
    name: String,
    #[allow(dead_code)] // read by the handlers of the flows built on this dispatcher
    payload: Json,
}

impl Dispatcher {
    /// `Ok(None)` means "nothing to answer" (an unknown event without an ack).
    fn handle(&self, v: &Value, wants_ack: bool) -> Result<Option<Json>, ApiError> {
        let event = self.admit(v)?;
        let label = EVENTS
            .iter()
            .copied()
            .find(|e| *e == event.name)
            .unwrap_or("unknown");
        metrics::counter!(SOCKET_EVENTS, "event" => label).increment(1);
        match event.name.as_str() {
            // Seed 002: the payload is ignored; hosts only.
            "identify_as_doctor" => {
                if self.ctx.principal.is_host() {
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

    /// The checks every event passes before it is parsed: size, rate, shape.
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
        let allowed = self
            .ctx
            .bucket
            .lock()
            .map(|mut b| b.try_take(Instant::now()))
            .unwrap_or(true);
        if !allowed {
            return Err(ApiError::RateLimited);
        }
        if bins.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(ApiError::bad_request("binary attachments are not accepted"));
        }
        let mut parts: Vec<Json> = serde_json::from_str(text.as_str())
            .map_err(|_| ApiError::bad_request("the event is not valid JSON"))?;
        if parts.is_empty() {
            return Err(ApiError::bad_request("the event has no name"));
        }
        let payload = if parts.len() > 1 {
            parts.swap_remove(1)
        } else {
            Json::Null
        };
        let Json::String(name) = parts.swap_remove(0) else {
            return Err(ApiError::bad_request("the event name must be a string"));
        };
        Ok(Incoming { name, payload })
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
struct Reply<'a> {
    socket: &'a Sock,
    ack: AckSender<LocalAdapter>,
    wants_ack: bool,
}

impl Reply<'_> {
    fn ok(self, body: Json) {
        if let Err(e) = self.ack.send(&body) {
            tracing::debug!(error = %e, "ack not sent");
        }
    }

    fn err(self, e: &ApiError) {
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
