//! The REST API: routes, the auth extractor, and the layers every route
//! shares (body limit, metrics). Handlers stay thin: parse, authorise, call
//! one service function, map its result.

mod body;
mod chat;
mod consult;
mod demo;
mod health;
mod me;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use consultd_domain::Principal;

use crate::auth::bearer_token;
use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::{HTTP_DURATION, HTTP_REQUESTS};

pub(crate) use demo::announce as announce_demo;

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let demo = if state.config.demo {
        demo::routes(&state.config.effective_demo_dir())
    } else {
        Router::new()
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
        .merge(demo)
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(from_fn_with_state(state.clone(), limit_body))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn(track))
        .with_state(state)
}

/// The caller, from `Authorization: Bearer` (CONTRACT §1: same rules as sockets).
pub struct AuthUser(pub Principal);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        Ok(Self(state.auth.verify(&token)?))
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

/// Refuses a declared body over the limit before anything reads it; bodies
/// without a length are cut by `DefaultBodyLimit` when an extractor reads them.
async fn limit_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = state.config.max_body_bytes;
    if declared.is_some_and(|len| len > limit as u64) {
        return ApiError::TooLarge(format!("the body is larger than {limit} bytes"))
            .into_response();
    }
    next.run(req).await
}

/// Counts requests by route template (never the raw path, whose ids would
/// explode the label set) and records their latency.
async fn track(req: Request, next: Next) -> Response {
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
