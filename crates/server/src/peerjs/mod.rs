//! The PeerJS server protocol (CONTRACT §9) beside REST and Socket.IO, on
//! the same port and the same identity. With the default path `/peerjs`:
//! - `GET /peerjs`: the server's description;
//! - `GET /peerjs/{key}/id`: a fresh id;
//! - `GET /peerjs/{key}/peers`: every id held, only with discovery on;
//! - websocket `/peerjs/peerjs?key&id&token&version`: the broker.
//!
//! The `token` is a consultd JWT or a ticket from `POST
//! /api/peerjs/ticket`. What the broker relays, and to whom, is
//! [`broker`]'s business; this module speaks HTTP and websockets.

pub mod broker;
pub mod mesh;
pub mod ticket;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use consultd_domain::{Principal, TokenBucket};
use tracing::Instrument;

pub use broker::{Broker, BrokerSettings};
pub use mesh::Mesh;
pub use ticket::{Ticket, Tickets};

use crate::auth::{AuthError, Authenticator};
use crate::limits::Limits;
use crate::telemetry::PEERJS_DROPPED;
use broker::{Refused, errors};

/// The largest frame a peer may send (an SDP with many candidates is a
/// few KiB).
const MAX_FRAME: usize = 64 * 1024;

/// PeerJS server's own description, as it answers `GET {path}`.
const INFO: &str = r#"{"name":"PeerJS Server","description":"A server side element to broker connections between PeerJS clients.","website":"https://peerjs.com/"}"#;

/// What the broker's routes share: the broker, and the verifier for
/// tokens that are JWTs rather than tickets.
#[derive(Clone)]
pub(crate) struct Shared {
    broker: Arc<Broker>,
    auth: Arc<Authenticator>,
    limits: Arc<Limits>,
}

/// The routes under `path` (no trailing slash), with their state.
pub fn routes<S: Clone + Send + Sync + 'static>(
    path: &str,
    broker: Arc<Broker>,
    auth: Arc<Authenticator>,
    limits: Arc<Limits>,
) -> Router<S> {
    Router::new()
        .route(path, get(info))
        .route(&format!("{path}/"), get(info))
        .route(&format!("{path}/peerjs"), get(upgrade))
        .route(&format!("{path}/{{key}}/id"), get(fresh_id))
        .route(&format!("{path}/{{key}}/peers"), get(peers))
        .with_state(Shared {
            broker,
            auth,
            limits,
        })
}

#[utoipa::path(
    get,
    path = "/peerjs",
    tag = "media path",
    summary = "The PeerJS server's info (at PEERJS_PATH, /peerjs by default)",
    responses((status = 200, description = "PeerJS's server info", content_type = "application/json", body = Object))
)]
pub(crate) async fn info() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], INFO).into_response()
}

/// A fresh id, as text (PeerJS answers it as `text/html`). Any key gets
/// one, as with PeerJS: the key is checked when the id is used.
#[utoipa::path(
    get,
    path = "/peerjs/{key}/id",
    tag = "media path",
    summary = "A fresh PeerJS id, as text (any key)",
    params(("key" = String, Path, description = "the PeerJS key (checked when the id is used)")),
    responses((status = 200, description = "an id", content_type = "text/html", body = String))
)]
pub(crate) async fn fresh_id(State(s): State<Shared>, Path(_key): Path<String>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        s.broker.fresh_id(),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/peerjs/{key}/peers",
    tag = "media path",
    summary = "Every id held (only with PEERJS_ALLOW_DISCOVERY and the right key)",
    params(("key" = String, Path, description = "the PeerJS key")),
    responses(
        (status = 200, description = "the ids", body = Vec<String>),
        (status = 401, description = "discovery is off, or a wrong key")
    )
)]
pub(crate) async fn peers(State(s): State<Shared>, Path(key): Path<String>) -> Response {
    let settings = s.broker.settings();
    if settings.discovery && key == settings.key {
        axum::Json(s.broker.ids().await).into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

/// The query of the websocket URL. The token never goes in a log.
#[derive(Default)]
struct Query {
    key: Option<String>,
    id: Option<String>,
    token: Option<String>,
}

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        let mut q = Self::default();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let slot = match &*k {
                "key" => &mut q.key,
                "id" => &mut q.id,
                "token" => &mut q.token,
                _ => continue,
            };
            if slot.is_none() && !v.is_empty() {
                *slot = Some(v.into_owned());
            }
        }
        q
    }
}

#[utoipa::path(
    get,
    path = "/peerjs/peerjs",
    tag = "media path",
    summary = "The PeerJS websocket (docs/media.md): OPEN, then OFFER/ANSWER/CANDIDATE relayed between authorised peers",
    params(
        ("key" = String, Query, description = "PEERJS_KEY"),
        ("id" = String, Query, description = "the peer id to hold (1-128 of A-Z a-z 0-9 space _ -)"),
        ("token" = String, Query, description = "a consultd JWT or a ticket from POST /api/peerjs/ticket"),
        ("version" = Option<String>, Query, description = "the client's version (ignored)")
    ),
    responses(
        (status = 101, description = "switched to the PeerJS websocket protocol"),
        (status = 429, description = "this client IP's handshake rate is spent")
    )
)]
pub(crate) async fn upgrade(
    State(s): State<Shared>,
    RawQuery(raw): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // The Socket.IO handshake's per-IP rate, before any token is verified.
    if let Some(Extension(ConnectInfo(peer))) = peer
        && !s.limits.may_connect(peer.ip(), &headers)
    {
        metrics::counter!(PEERJS_DROPPED).increment(1);
        return (StatusCode::TOO_MANY_REQUESTS, "rate_limited").into_response();
    }
    let query = Query::parse(raw.as_deref());
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| connected(socket, s, query))
}

/// Who a token stands for: a ticket first (the cheaper check), then a JWT.
fn identify(s: &Shared, token: &str) -> Result<Principal, &'static str> {
    let refusal = |e: AuthError| match e {
        AuthError::Expired => errors::EXPIRED_TOKEN,
        AuthError::Unauthorized => errors::INVALID_TOKEN,
    };
    match s.broker.tickets().verify(token) {
        Ok(p) => Ok(p),
        Err(AuthError::Expired) => Err(errors::EXPIRED_TOKEN),
        Err(AuthError::Unauthorized) => s.auth.verify(token).map_err(refusal),
    }
}

/// Sends one frame and closes, as PeerJS refuses a socket.
async fn refuse(mut ws: WebSocket, text: String) {
    let _ = ws.send(Message::Text(text.into())).await;
    let _ = ws.send(Message::Close(None)).await;
}

async fn connected(ws: WebSocket, s: Shared, query: Query) {
    let pj = &s.broker;
    let (Some(key), Some(id), Some(token)) = (query.key, query.id, query.token) else {
        return refuse(ws, broker::error_frame(errors::INVALID_WS_PARAMETERS)).await;
    };
    if key != pj.settings().key {
        return refuse(ws, broker::error_frame(errors::INVALID_KEY)).await;
    }
    if !broker::valid_id(&id) {
        return refuse(ws, broker::error_frame(errors::INVALID_ID)).await;
    }
    let principal = match identify(&s, &token) {
        Ok(p) => p,
        Err(msg) => return refuse(ws, broker::error_frame(msg)).await,
    };
    let (me, outlet) = match pj.register(&id, &token, &principal.user_id).await {
        Ok(registered) => registered,
        Err(Refused::IdTaken) => return refuse(ws, broker::id_taken_frame()).await,
        Err(Refused::Full) => {
            return refuse(ws, broker::error_frame(errors::CONNECTION_LIMIT_EXCEED)).await;
        }
        Err(Refused::Unavailable) => {
            return refuse(ws, broker::error_frame(errors::UNAVAILABLE)).await;
        }
    };
    drop(token);
    let span = tracing::info_span!("peerjs", user = %me.user, conn = me.conn);
    serve_peer(ws, pj, me, outlet).instrument(span).await;
}

async fn serve_peer(
    mut ws: WebSocket,
    broker: &Broker,
    me: broker::Session,
    mut outlet: broker::Outlet,
) {
    tracing::debug!("peer connected");
    let (rate, burst) = broker.settings().rate;
    let mut bucket = TokenBucket::new(rate, burst, std::time::Instant::now());
    broker.claimed(&me).await;
    loop {
        tokio::select! {
            biased;
            () = outlet.close.notified() => break,
            frame = outlet.frames.recv() => {
                let Some(text) = frame else { break };
                if ws.send(Message::Text((&*text).into())).await.is_err() {
                    break;
                }
            }
            inbound = ws.recv() => match inbound {
                Some(Ok(Message::Text(text))) => {
                    // Each refused frame costs a database read: a flood is
                    // dropped here, as a Socket.IO socket's is.
                    if bucket.try_take(std::time::Instant::now()) {
                        broker.on_text(&me, text.as_str()).await;
                    } else {
                        metrics::counter!(PEERJS_DROPPED).increment(1);
                    }
                }
                Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
        }
    }
    broker.unregister(&me).await;
    let _ = ws.send(Message::Close(None)).await;
    tracing::debug!("peer gone");
}
