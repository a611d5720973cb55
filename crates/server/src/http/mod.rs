//! The REST API: routes, the auth extractor, and the layers every route
//! shares (body limit, metrics). Handlers stay thin: parse, authorise, call
//! one service function, map its result.

mod admin_page;
pub mod api_doc;
mod body;
mod chat;
mod consult;
mod demo;
pub mod envelope;
mod health;
mod me;
mod media;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use consultd_domain::Principal;
use futures_util::StreamExt;

use crate::auth::bearer_token;
use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::{HTTP_DURATION, HTTP_REQUESTS};

pub(crate) use demo::announce as announce_demo;

/// Every route: method and path template. The router serves exactly these
/// (a unit test checks each one is routed), and the input-order tests walk
/// them all.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/me"),
    ("POST", "/api/schedules"),
    ("GET", "/api/schedules"),
    ("GET", "/api/schedules/{id}"),
    ("POST", "/api/schedules/{id}/start"),
    ("POST", "/api/schedules/{id}/end"),
    ("POST", "/api/schedules/{id}/join-queue"),
    ("GET", "/api/schedules/{id}/queue"),
    ("POST", "/api/schedules/{id}/start-call"),
    ("GET", "/api/queue/{id}"),
    ("POST", "/api/queue/{id}/toggle-ready"),
    ("POST", "/api/queue/{id}/reset"),
    ("GET", "/api/call-sessions/status"),
    ("POST", "/api/call-sessions/start"),
    ("GET", "/api/call-sessions/{id}"),
    ("POST", "/api/call-sessions/{id}/confirm"),
    ("POST", "/api/call-sessions/{id}/decline"),
    ("POST", "/api/call-sessions/{id}/cancel"),
    ("POST", "/api/call-sessions/{id}/activate"),
    ("POST", "/api/call-sessions/{id}/end"),
    ("POST", "/api/call-sessions/{id}/set-peer-id"),
    ("GET", "/api/pending-invitation"),
    ("GET", "/api/audit-logs"),
    ("POST", "/api/sessions"),
    ("GET", "/api/sessions"),
    ("GET", "/api/sessions/{id}"),
    ("POST", "/api/sessions/{id}/accept"),
    ("POST", "/api/sessions/{id}/reject"),
    ("POST", "/api/sessions/{id}/cancel"),
    ("POST", "/api/sessions/{id}/end"),
    ("POST", "/api/chat-sessions"),
    ("GET", "/api/chat-sessions"),
    ("GET", "/api/chat-sessions/{id}"),
    ("POST", "/api/chat-sessions/{id}/accept"),
    ("POST", "/api/chat-sessions/{id}/end"),
    ("GET", "/api/chat/{id}/messages"),
    ("GET", "/api/ice-servers"),
    ("POST", "/api/peerjs/ticket"),
    ("GET", "/openapi.json"),
    ("GET", "/asyncapi.json"),
];

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let demo = if state.config.demo {
        demo::routes(&state.config.effective_demo_dir())
    } else {
        Router::new()
    };
    let peerjs = match (&state.peerjs, state.config.media.peerjs_path()) {
        (Some(broker), Ok(Some(path))) => crate::peerjs::routes(
            &path,
            broker.clone(),
            state.auth.clone(),
            state.limits.clone(),
        ),
        _ => Router::new(),
    };
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/me", get(me::me))
        .route(
            "/api/schedules",
            post(consult::create_schedule).get(consult::my_schedules),
        )
        .route("/api/schedules/{id}", get(consult::schedule))
        .route("/api/schedules/{id}/start", post(consult::start_schedule))
        .route("/api/schedules/{id}/end", post(consult::end_schedule))
        .route("/api/schedules/{id}/join-queue", post(consult::join_queue))
        .route("/api/schedules/{id}/queue", get(consult::queue))
        .route("/api/schedules/{id}/start-call", post(consult::start_call))
        .route("/api/queue/{id}", get(consult::entry))
        .route("/api/queue/{id}/toggle-ready", post(consult::toggle_ready))
        .route("/api/queue/{id}/reset", post(consult::reset_entry))
        .route("/api/call-sessions/status", get(consult::host_status))
        .route("/api/call-sessions/start", post(consult::start_direct_call))
        .route("/api/call-sessions/{id}", get(consult::call))
        .route("/api/call-sessions/{id}/confirm", post(consult::confirm))
        .route("/api/call-sessions/{id}/decline", post(consult::decline))
        .route("/api/call-sessions/{id}/cancel", post(consult::cancel))
        .route("/api/call-sessions/{id}/activate", post(consult::activate))
        .route("/api/call-sessions/{id}/end", post(consult::end_call))
        .route(
            "/api/call-sessions/{id}/set-peer-id",
            post(consult::set_peer_id),
        )
        .route("/api/pending-invitation", get(consult::pending_invitation))
        .route("/api/audit-logs", get(consult::audit_logs))
        .route(
            "/api/sessions",
            post(consult::create_session).get(consult::sessions),
        )
        .route("/api/sessions/{id}", get(consult::session))
        .route("/api/sessions/{id}/accept", post(consult::accept_session))
        .route("/api/sessions/{id}/reject", post(consult::reject_session))
        .route("/api/sessions/{id}/cancel", post(consult::cancel_session))
        .route("/api/sessions/{id}/end", post(consult::end_session))
        .route("/api/chat-sessions", post(chat::create).get(chat::list))
        .route("/api/chat-sessions/{id}", get(chat::one))
        .route("/api/chat-sessions/{id}/accept", post(chat::accept))
        .route("/api/chat-sessions/{id}/end", post(chat::end))
        .route("/api/chat/{id}/messages", get(chat::history))
        .route("/api/ice-servers", get(media::ice_servers))
        .route("/api/peerjs/ticket", post(media::peerjs_ticket))
        // `GET /openapi.json` and the Swagger UI under `/docs/`.
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs")
                .url("/openapi.json", api_doc::openapi().clone()),
        )
        .route("/asyncapi.json", get(api_doc::asyncapi_json))
        .merge(admin_page::routes())
        .merge(peerjs)
        .merge(demo)
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(from_fn_with_state(state.clone(), limit_body))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// The caller, from `Authorization: Bearer` (CONTRACT §1: same rules as sockets).
pub struct AuthUser(pub Principal);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let p = state.auth.verify(&token)?;
        if !state.limits.rest.try_take(&p.user_id, Instant::now()) {
            return Err(ApiError::RateLimited);
        }
        // A request is a sign of life: a call whose clients only poll REST
        // is not abandoned.
        state.presence.touch(&p.user_id);
        Ok(Self(p))
    }
}

/// Unknown paths and methods get the envelope too, never an empty body.
async fn no_route(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// How much of a refused body is read and thrown away, as a multiple of
/// the limit, and for how long, so the client sees the 413 (see below).
const DRAIN_FACTOR: usize = 4;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Refuses a body over the limit with 413. Answering while the client is
/// still uploading and then closing makes most clients (Node's fetch,
/// curl) report a broken pipe instead of the answer, so the rest of the
/// body is read and discarded first, up to [`DRAIN_FACTOR`] times the
/// limit or [`DRAIN_TIME`]; only a body larger than that (or slower) gets
/// its answer before the upload ends. A declared length is refused without
/// reading; a chunked body is read up to the limit and passed on if it fits.
async fn limit_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.config.max_body_bytes;
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > limit as u64 => too_large(req.into_body(), limit, 0).await,
        Some(_) => next.run(req).await,
        None if axum::body::HttpBody::is_end_stream(req.body()) => next.run(req).await,
        None => {
            let (parts, body) = req.into_parts();
            let mut stream = body.into_data_stream();
            let mut kept: Vec<u8> = Vec::new();
            while let Some(chunk) = stream.next().await {
                let Ok(chunk) = chunk else {
                    return ApiError::bad_request("the body could not be read").into_response();
                };
                if kept.len() + chunk.len() > limit {
                    let read = kept.len() + chunk.len();
                    return too_large(Body::from_stream(stream), limit, read).await;
                }
                kept.extend_from_slice(&chunk);
            }
            next.run(Request::from_parts(parts, Body::from(kept))).await
        }
    }
}

/// Drains what is left of `body` (`read` bytes of it are gone already),
/// within bounds, then answers 413; `Connection: close` if it had to stop early.
async fn too_large(body: Body, limit: usize, read: usize) -> Response {
    let bound = limit.saturating_mul(DRAIN_FACTOR).max(64 * 1024);
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut stream = body.into_data_stream();
    let mut read = read;
    let drained = loop {
        if read > bound {
            break false;
        }
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len(),
            Ok(None) => break true,
            Ok(Some(Err(_))) | Err(_) => break false,
        }
    };
    let mut res =
        ApiError::TooLarge(format!("the body is larger than {limit} bytes")).into_response();
    if !drained {
        res.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    res
}

/// Counts requests by route template (never the raw path, whose ids would
/// explode the label set) and records their latency.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let _in_flight = state.in_flight.enter();
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    res
}
