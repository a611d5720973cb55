//! CONTRACT §7: chat session intake, accept, end, and message history.
//! Each handler parses, calls one service function, and maps its result.

use axum::extract::State;
use consultd_domain::{ChatDuration, ChatStatus, Concern, Status};
use serde::Deserialize;

use super::AuthUser;
use super::body::{JsonBody, PathId, QueryParams};
use crate::error::{ApiError, ApiResult, Created, Ok200};
use crate::service::views::{ChatMessageView, ChatSessionView};
use crate::service::{ChatCommand, HISTORY_DEFAULT, HISTORY_MAX};
use crate::state::AppState;

/// the support chat app's intake: both fields optional.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct CreateChat {
    #[serde(default)]
    concern: Option<String>,
    #[serde(default, alias = "durationMinutes")]
    duration_minutes: Option<f64>,
}

#[utoipa::path(
    post,
    path = "/api/chat-sessions",
    tag = "support chat",
    summary = "A customer opens a chat session (pending)",
    request_body = CreateChat,
    security(("bearer" = [])),
    responses((status = 201, description = "success", body = crate::http::envelope::Envelope<ChatSessionView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn create(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    JsonBody(req): JsonBody<CreateChat>,
) -> Result<Created<ChatSessionView>, ApiError> {
    let concern = match req.concern.as_deref() {
        Some(raw) => Concern::parse(raw).map_err(ApiError::bad_request)?,
        None => None,
    };
    let duration = req
        .duration_minutes
        .map(|m| {
            ChatDuration::from_minutes(m).ok_or_else(|| {
                ApiError::bad_request("duration_minutes must be a number above 0, at most 1440")
            })
        })
        .transpose()?;
    s.services
        .chat
        .create_chat(&p, concern, duration)
        .await
        .map(Created)
}

/// `?status=pending|waiting|live|ended`, or every status.
#[utoipa::path(
    get,
    path = "/api/chat-sessions",
    tag = "support chat",
    summary = "Sessions the caller may see (a mechanic: pending ones and their own)",
    params(("status" = Option<String>, Query, description = "pending, waiting, live or ended")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<Vec<ChatSessionView>>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn list(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    query: QueryParams,
) -> ApiResult<Vec<ChatSessionView>> {
    let status = match query.text(&["status"]) {
        None => None,
        Some(raw) => Some(ChatStatus::parse(raw).ok_or_else(|| {
            ApiError::bad_request("status must be one of pending, waiting, live, ended")
        })?),
    };
    s.services.chat.chat_sessions(&p, status).await.map(Ok200)
}

#[utoipa::path(
    get,
    path = "/api/chat-sessions/{id}",
    tag = "support chat",
    summary = "One chat session",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<ChatSessionView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn one(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<ChatSessionView> {
    s.services.chat.chat_session(&p, &id).await.map(Ok200)
}

#[utoipa::path(
    post,
    path = "/api/chat-sessions/{id}/accept",
    tag = "support chat",
    summary = "A mechanic takes the session",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<ChatSessionView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn accept(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<ChatSessionView> {
    s.services
        .chat
        .chat_command(&p, &id, ChatCommand::Accept)
        .await
        .map(Ok200)
}

#[utoipa::path(
    post,
    path = "/api/chat-sessions/{id}/end",
    tag = "support chat",
    summary = "Either participant ends the session",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<ChatSessionView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn end(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<ChatSessionView> {
    s.services
        .chat
        .chat_command(&p, &id, ChatCommand::End)
        .await
        .map(Ok200)
}

/// `?before=<messageId>&limit=` (default 50; above 200 is capped at 200).
#[utoipa::path(
    get,
    path = "/api/chat/{id}/messages",
    tag = "support chat",
    summary = "A chat room's messages, oldest first (its participants)",
    params(("id" = String, Path, description = "the id"), ("before" = Option<String>, Query, description = "a message id: only older ones"), ("limit" = Option<u32>, Query, description = "1 to 200; default 50")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<Vec<ChatMessageView>>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn history(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(room_id): PathId,
    query: QueryParams,
) -> ApiResult<Vec<ChatMessageView>> {
    let before = query.text(&["before"]);
    let limit = match query.text(&["limit"]) {
        None => HISTORY_DEFAULT,
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|l| *l >= 1)
            .ok_or_else(|| ApiError::bad_request("limit must be a whole number from 1"))?
            .min(HISTORY_MAX),
    };
    s.services
        .chat
        .chat_history(&p, &room_id, before, limit)
        .await
        .map(Ok200)
}
