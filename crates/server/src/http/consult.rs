//! CONTRACT §4: schedules, the queue, call sessions, the poll fallbacks and
//! the audit log. Each handler parses, calls one service function, and maps
//! its result.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use consultd_domain::{CallCommand, ScheduleCommand};
use serde::Deserialize;

use super::AuthUser;
use super::body::{IdInput, JsonBody, PathId, query_pairs, query_value};
use crate::error::{ApiError, ApiResult, Created, Ok200};
use crate::service::consult::CallType;
use crate::service::views::{AuditView, CallView, EntryView, ScheduleView};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateSchedule {
    date: String,
    #[serde(alias = "start_time")]
    start_time: String,
    #[serde(alias = "end_time")]
    end_time: String,
}

pub(super) async fn create_schedule(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    JsonBody(req): JsonBody<CreateSchedule>,
) -> Result<Created<ScheduleView>, ApiError> {
    s.consult
        .create_schedule(&p, &req.date, &req.start_time, &req.end_time)
        .await
        .map(Created)
}

pub(super) async fn my_schedules(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> ApiResult<Vec<ScheduleView>> {
    s.consult.my_schedules(&p).await.map(Ok200)
}

pub(super) async fn schedule(
    State(s): State<AppState>,
    AuthUser(_): AuthUser,
    PathId(id): PathId,
) -> ApiResult<ScheduleView> {
    s.consult.schedule(&id).await.map(Ok200)
}

pub(super) async fn start_schedule(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<ScheduleView> {
    s.consult
        .schedule_command(&p, &id, ScheduleCommand::Start)
        .await
        .map(Ok200)
}

pub(super) async fn end_schedule(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<ScheduleView> {
    s.consult
        .schedule_command(&p, &id, ScheduleCommand::End)
        .await
        .map(Ok200)
}

/// 201 with the new entry, or 200 with the live one on a second join.
pub(super) async fn join_queue(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let (entry, created) = s.consult.join_queue(&p, &id).await?;
    Ok(if created {
        Created(entry).into_response()
    } else {
        Ok200(entry).into_response()
    })
}

pub(super) async fn queue(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<Vec<EntryView>> {
    s.consult.queue(&p, &id).await.map(Ok200)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ToggleReady {
    #[serde(alias = "is_ready")]
    is_ready: bool,
}

pub(super) async fn toggle_ready(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
    JsonBody(req): JsonBody<ToggleReady>,
) -> ApiResult<EntryView> {
    s.consult
        .toggle_ready(&p, &id, req.is_ready)
        .await
        .map(Ok200)
}

pub(super) async fn reset_entry(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<EntryView> {
    s.consult.reset_entry(&p, &id).await.map(Ok200)
}

pub(super) async fn entry(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<EntryView> {
    s.consult.entry(&p, &id).await.map(Ok200)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartCall {
    #[serde(alias = "patient_id")]
    patient_id: IdInput,
    #[serde(default, alias = "call_type")]
    call_type: Option<String>,
}

pub(super) async fn start_call(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
    JsonBody(req): JsonBody<StartCall>,
) -> Result<Created<CallView>, ApiError> {
    let call_type = match req.call_type.as_deref() {
        None => CallType::default(),
        Some(raw) => CallType::parse(raw)
            .ok_or_else(|| ApiError::bad_request("callType must be `video` or `voice`"))?,
    };
    s.consult
        .start_call(&p, &id, &req.patient_id.0, call_type)
        .await
        .map(Created)
}

async fn call_command(
    s: AppState,
    p: AuthUser,
    id: String,
    cmd: CallCommand,
) -> ApiResult<CallView> {
    s.consult.call_command(&p.0, &id, cmd).await.map(Ok200)
}

pub(super) async fn confirm(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    call_command(s, p, id, CallCommand::Confirm).await
}

pub(super) async fn decline(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    call_command(s, p, id, CallCommand::Decline).await
}

pub(super) async fn cancel(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    call_command(s, p, id, CallCommand::Cancel).await
}

pub(super) async fn activate(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    call_command(s, p, id, CallCommand::Activate).await
}

pub(super) async fn end_call(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    call_command(s, p, id, CallCommand::End).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SetPeerId {
    #[serde(alias = "peer_id")]
    peer_id: String,
}

pub(super) async fn set_peer_id(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
    JsonBody(req): JsonBody<SetPeerId>,
) -> ApiResult<CallView> {
    s.consult
        .set_peer_id(&p, &id, &req.peer_id)
        .await
        .map(Ok200)
}

pub(super) async fn call(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    s.consult.call(&p, &id).await.map(Ok200)
}

/// The host's poll: their latest call, or `null`.
pub(super) async fn host_status(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> ApiResult<Option<CallView>> {
    s.consult.host_status(&p).await.map(Ok200)
}

/// The invitee's poll: their live invitation, or `null`.
pub(super) async fn pending_invitation(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> ApiResult<Option<CallView>> {
    s.consult.pending_invitation(&p.user_id).await.map(Ok200)
}

const AUDIT_DEFAULT_LIMIT: u64 = 100;
const AUDIT_MAX_LIMIT: u64 = 1000;

/// `?entityId=` (or `entity_id`) and `?limit=` (default 100, at most 1000).
pub(super) async fn audit_logs(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    RawQuery(query): RawQuery,
) -> ApiResult<Vec<AuditView>> {
    let pairs = query_pairs(query.as_deref());
    let entity = query_value(&pairs, &["entityId", "entity_id"]).filter(|v| !v.is_empty());
    let limit = match query_value(&pairs, &["limit"]) {
        None => AUDIT_DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|l| (1..=AUDIT_MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be 1 to {AUDIT_MAX_LIMIT}"))
            })?,
    };
    s.consult.audit_logs(&p, entity, limit).await.map(Ok200)
}
