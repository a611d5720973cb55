use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ConnectInfo;
use consultd_domain::{Principal, TutoringStatus};
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::socket::DisconnectReason;

use consultd_domain::TokenBucket;

use super::ctx::SocketCtx;
use super::dispatch::{Dispatcher, Lane};
use super::node::SocketState;
use super::outbox::GUESTS_ROOM;
use super::owed::{Kinds, OwedIndex, Reading};
use super::told::Said;
use crate::auth::{AuthError, handshake_token};
use crate::service::outbox::Owed;
use crate::state::AppState;
use crate::telemetry::{SOCKET_CONNECTIONS, SOCKET_REFUSED, SOCKETS_CONNECTED};

/// Why a connection was refused; the `Display` form is the word the
/// client's `connect_error` (2.x: `error`) carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refusal {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// This client IP's handshakes came faster than `HANDSHAKE_RATE`.
    #[error("rate_limited")]
    RateLimited,
    /// The user already has `MAX_SOCKETS_PER_USER` sockets open.
    #[error("too_many_connections")]
    TooManyConnections,
}

/// The connect middleware: the client IP's handshake rate, the token, the
/// user's socket cap, and on success it wires the socket up completely
/// before socketioxide sends CONNECT.
pub(super) async fn authenticate(
    state: SocketState,
    socket: SocketRef,
    auth: Option<Value>,
) -> Result<(), Refusal> {
    let (principal, expires) = match admit(&state, &socket, auth.unwrap_or(Value::Null)) {
        Ok(p) => p,
        Err(e) => {
            metrics::counter!(SOCKET_REFUSED, "reason" => e.to_string()).increment(1);
            tracing::info!(sid = %socket.id, reason = %e, "socket refused");
            return Err(e);
        }
    };
    let config = &state.config;
    let bucket = TokenBucket::new(config.event_rate, config.event_burst, Instant::now());
    let ctx = Arc::new(SocketCtx::new(socket.id, principal, bucket));
    // Before the joins: a push that finds the socket in its user room must
    // find what it was told too.
    socket.extensions.insert(ctx.clone());
    if ctx.principal.is_admin() {
        // Only admins' sockets carry it: the admin feed ends with the token.
        socket.extensions.insert(super::admin::TokenExpiry(expires));
    }
    socket.join(ctx.principal.user_id.room());
    if ctx.principal.is_guest() {
        socket.join(GUESTS_ROOM);
    }
    let lane = Lane::default();
    socket.on_fallback(Dispatcher::new(ctx.clone(), state.clone(), lane.clone()));
    let hub = state.hub.clone();
    let presence = state.presence.clone();
    let activity = state.activity.clone();
    activity.socket_opened(ctx.principal.role.as_str());
    socket.on_disconnect(async move |reason: DisconnectReason| {
        metrics::gauge!(SOCKETS_CONNECTED).decrement(1.0);
        activity.socket_closed(ctx.principal.role.as_str());
        presence.socket_closed(&ctx.principal.user_id);
        let _entered = ctx.span.enter();
        tracing::info!(%reason, "socket disconnected");
        // After the events it sent before going: they are still handled.
        let leaving = ctx.clone();
        lane.after_received(move || {
            let _entered = leaving.span.enter();
            hub.leave_all(&leaving);
        });
    });
    Ok(())
}

/// The checks in order: the cheap per-IP rate before any token is
/// verified, then the token, then the user's socket count (counted here,
/// released by the disconnect handler).
fn admit(
    state: &SocketState,
    socket: &SocketRef,
    auth: Value,
) -> Result<(Principal, i64), Refusal> {
    let parts = socket.req_parts();
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>()
        && !state.limits.may_connect(peer.ip(), &parts.headers)
    {
        return Err(Refusal::RateLimited);
    }
    let token = handshake_token(&auth, parts.uri.query(), &parts.headers)?
        .ok_or(AuthError::Unauthorized)?;
    let (principal, expires) = state.auth.verify_until(&token)?;
    if !state
        .presence
        .socket_opened(&principal.user_id, state.config.max_sockets_per_user)
    {
        return Err(Refusal::TooManyConnections);
    }
    Ok((principal, expires))
}

/// Runs after CONNECT has been sent; nothing the client may send depends on
/// it. Re-sends what the user must know now (CONTRACT §1: reconnection
/// restores state).
pub(super) async fn on_connect(state: SocketState, socket: SocketRef) {
    metrics::gauge!(SOCKETS_CONNECTED).increment(1.0);
    metrics::counter!(SOCKET_CONNECTIONS).increment(1);
    let Some(ctx) = socket.extensions.get::<Arc<SocketCtx>>() else {
        return;
    };
    {
        let _entered = ctx.span.enter();
        tracing::info!(transport = ?socket.transport_type(), protocol = ?socket.protocol(), "socket connected");
    }
    // The socket is in its user room already (the middleware joined it).
    let reading = state.owed.read(&ctx.principal.user_id);
    resync(&state, &state.owed, &socket, &ctx, reading).await;
}

/// Re-sends what the user must know now: a still-live `call_invitation`,
/// the `session:status` of each chat session in progress, and, for a
/// teacher, each still-answerable `session:incoming`. Only the kinds
/// `reading` says the user may be owed are read ([`super::owed`]). What the
/// socket was already told, live or by an earlier resync, is not sent
/// again ([`super::told`]).
pub(crate) async fn resync(
    app: &AppState,
    owed: &OwedIndex,
    socket: &SocketRef,
    ctx: &SocketCtx,
    reading: Reading,
) {
    let p = &ctx.principal;
    let kinds = reading.kinds.and(Kinds::read_for(p));
    if kinds.is_empty() {
        ctx.set_resyncing(false);
        return;
    }
    ctx.set_resyncing(true);
    let services = &app.services;
    // The kinds whose query answered, and answered nothing.
    let mut nothing = Kinds::NONE;
    if kinds.has(Owed::Invitation) {
        match services.calls.pending_invitation(&p.user_id).await {
            Ok(Some(call)) => resend(socket, ctx, "call_invitation", &call),
            Ok(None) => nothing = nothing.with(Owed::Invitation),
            Err(e) => tracing::warn!(error = %e, "invitation resync failed"),
        }
    }
    let chat = if p.is_host() {
        Owed::ChatAsHost
    } else {
        Owed::ChatAsCustomer
    };
    if kinds.has(chat) {
        let found = services
            .chat
            .resync_chat(p, |status| {
                resend(socket, ctx, "session:status", status);
            })
            .await;
        match found {
            Ok(0) => nothing = nothing.with(chat),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "chat status resync failed"),
        }
    }
    if kinds.has(Owed::TutoringRequest) {
        match services
            .tutoring
            .sessions(p, Some(TutoringStatus::Pending))
            .await
        {
            Ok(pending) if pending.is_empty() => nothing = nothing.with(Owed::TutoringRequest),
            Ok(pending) => {
                // Oldest first, as they arrived.
                for session in pending.iter().rev() {
                    resend(socket, ctx, "session:incoming", session);
                }
            }
            Err(e) => tracing::warn!(error = %e, "session resync failed"),
        }
    }
    owed.found_nothing(&p.user_id, reading, nothing);
    ctx.set_resyncing(false);
}

fn resend<T: serde::Serialize>(socket: &SocketRef, ctx: &SocketCtx, event: &'static str, body: &T) {
    let said = serde_json::to_value(body)
        .ok()
        .and_then(|v| Said::of(event, &v));
    let send = || {
        if let Err(e) = socket.emit(event, body) {
            tracing::debug!(event, error = %e, "resync not sent");
        }
    };
    match said {
        Some(said) => ctx.tell_once(said, true, send),
        None => send(),
    }
}

/// [`resync`] for every socket of this node, with nothing left out
/// (whatever the index says: pushes may have gone unheard).
pub async fn resync_everyone(io: &SocketIo, app: &AppState, owed: &OwedIndex) {
    let Some(root) = io.of("/") else {
        return;
    };
    for socket in root.sockets() {
        if let Some(ctx) = socket.extensions.get::<Arc<SocketCtx>>() {
            resync(app, owed, &socket, &ctx, owed.read_all()).await;
        }
    }
}
