//! CONTRACT §4–§6: schedules, the queue, call sessions, the poll fallbacks,
//! the audit log, direct calls and tutoring sessions. Each handler parses,
//! calls one service function, and maps its result.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use consultd_domain::{
    AppointmentId, CallCommand, ScheduleCommand, SkillName, Status, TutoringCommand, TutoringStatus,
};
use serde::Deserialize;

use super::AuthUser;
use super::body::{IdInput, JsonBody, PathId, QueryParams};
use crate::error::{ApiError, ApiResult, Created, Ok200};
use crate::service::CallType;
use crate::service::views::{AuditView, CallView, EntryView, ScheduleView, SessionView};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateSchedule {
    date: String,
    #[serde(alias = "start_time")]
    start_time: String,
    #[serde(alias = "end_time")]
    end_time: String,
}

#[utoipa::path(
    post,
    path = "/api/schedules",
    tag = "queue consultation",
    summary = "A host creates a schedule (UPCOMING)",
    request_body = CreateSchedule,
    security(("bearer" = [])),
    responses((status = 201, description = "success", body = crate::http::envelope::Envelope<ScheduleView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn create_schedule(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    JsonBody(req): JsonBody<CreateSchedule>,
) -> Result<Created<ScheduleView>, ApiError> {
    s.services
        .schedules
        .create_schedule(&p, &req.date, &req.start_time, &req.end_time)
        .await
        .map(Created)
}

#[utoipa::path(
    get,
    path = "/api/schedules",
    tag = "queue consultation",
    summary = "The caller's schedules, newest first",
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<Vec<ScheduleView>>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn my_schedules(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> ApiResult<Vec<ScheduleView>> {
    s.services.schedules.my_schedules(&p).await.map(Ok200)
}

#[utoipa::path(
    get,
    path = "/api/schedules/{id}",
    tag = "queue consultation",
    summary = "One schedule",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<ScheduleView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn schedule(
    State(s): State<AppState>,
    AuthUser(_): AuthUser,
    PathId(id): PathId,
) -> ApiResult<ScheduleView> {
    s.services.schedules.schedule(&id).await.map(Ok200)
}

#[utoipa::path(
    post,
    path = "/api/schedules/{id}/start",
    tag = "queue consultation",
    summary = "Its host opens the schedule (ONLINE)",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<ScheduleView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn start_schedule(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<ScheduleView> {
    s.services
        .schedules
        .schedule_command(&p, &id, ScheduleCommand::Start)
        .await
        .map(Ok200)
}

#[utoipa::path(
    post,
    path = "/api/schedules/{id}/end",
    tag = "queue consultation",
    summary = "Its host ends the schedule (COMPLETED); waiting entries close",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<ScheduleView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn end_schedule(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<ScheduleView> {
    s.services
        .schedules
        .schedule_command(&p, &id, ScheduleCommand::End)
        .await
        .map(Ok200)
}

/// 201 with the new entry, or 200 with the live one on a second join.
#[utoipa::path(
    post,
    path = "/api/schedules/{id}/join-queue",
    tag = "queue consultation",
    summary = "A guest joins the queue: 201 with the new entry, 200 with the live one on a second join",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the live one, on a second request", body = crate::http::envelope::Envelope<EntryView>), (status = 201, description = "success", body = crate::http::envelope::Envelope<EntryView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn join_queue(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let (entry, created) = s.services.queue.join_queue(&p, &id).await?;
    Ok(if created {
        Created(entry).into_response()
    } else {
        Ok200(entry).into_response()
    })
}

#[utoipa::path(
    get,
    path = "/api/schedules/{id}/queue",
    tag = "queue consultation",
    summary = "The schedule's queue in join order (its host, or an admin)",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<Vec<EntryView>>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn queue(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<Vec<EntryView>> {
    s.services.queue.queue(&p, &id).await.map(Ok200)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ToggleReady {
    #[serde(alias = "is_ready")]
    is_ready: bool,
}

#[utoipa::path(
    post,
    path = "/api/queue/{id}/toggle-ready",
    tag = "queue consultation",
    summary = "The patient marks the entry ready or not",
    params(("id" = String, Path, description = "the id")),
    request_body = ToggleReady,
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<EntryView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn toggle_ready(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
    JsonBody(req): JsonBody<ToggleReady>,
) -> ApiResult<EntryView> {
    s.services
        .queue
        .toggle_ready(&p, &id, req.is_ready)
        .await
        .map(Ok200)
}

#[utoipa::path(
    post,
    path = "/api/queue/{id}/reset",
    tag = "queue consultation",
    summary = "The patient puts the entry back to WAITING",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<EntryView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn reset_entry(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<EntryView> {
    s.services.queue.reset_entry(&p, &id).await.map(Ok200)
}

#[utoipa::path(
    get,
    path = "/api/queue/{id}",
    tag = "queue consultation",
    summary = "One queue entry",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<EntryView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn entry(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<EntryView> {
    s.services.queue.entry(&p, &id).await.map(Ok200)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartCall {
    #[serde(alias = "patient_id")]
    patient_id: IdInput,
    #[serde(default, alias = "call_type")]
    call_type: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/schedules/{id}/start-call",
    tag = "queue consultation",
    summary = "The host invites a READY patient: a call INVITED",
    params(("id" = String, Path, description = "the id")),
    request_body = StartCall,
    security(("bearer" = [])),
    responses((status = 201, description = "success", body = crate::http::envelope::Envelope<CallView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn start_call(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
    JsonBody(req): JsonBody<StartCall>,
) -> Result<Created<CallView>, ApiError> {
    let call_type = call_type(req.call_type.as_deref())?;
    s.services
        .queue
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
    s.services
        .calls
        .call_command(&p.0, &id, cmd)
        .await
        .map(Ok200)
}

#[utoipa::path(
    post,
    path = "/api/call-sessions/{id}/confirm",
    tag = "queue consultation",
    summary = "The invitee accepts: CONFIRMED",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<CallView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn confirm(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    call_command(s, p, id, CallCommand::Confirm).await
}

#[utoipa::path(
    post,
    path = "/api/call-sessions/{id}/decline",
    tag = "queue consultation",
    summary = "The invitee declines: DECLINED",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<CallView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn decline(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    call_command(s, p, id, CallCommand::Decline).await
}

#[utoipa::path(
    post,
    path = "/api/call-sessions/{id}/cancel",
    tag = "queue consultation",
    summary = "The inviter withdraws: CANCELLED",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<CallView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn cancel(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    call_command(s, p, id, CallCommand::Cancel).await
}

#[utoipa::path(
    post,
    path = "/api/call-sessions/{id}/activate",
    tag = "queue consultation",
    summary = "Media is flowing: ACTIVE",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<CallView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn activate(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    call_command(s, p, id, CallCommand::Activate).await
}

#[utoipa::path(
    post,
    path = "/api/call-sessions/{id}/end",
    tag = "queue consultation",
    summary = "Either participant ends the call: ENDED",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<CallView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn end_call(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    call_command(s, p, id, CallCommand::End).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SetPeerId {
    #[serde(alias = "peer_id")]
    peer_id: String,
}

#[utoipa::path(
    post,
    path = "/api/call-sessions/{id}/set-peer-id",
    tag = "queue consultation",
    summary = "A participant publishes its PeerJS id",
    params(("id" = String, Path, description = "the id")),
    request_body = SetPeerId,
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<CallView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn set_peer_id(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
    JsonBody(req): JsonBody<SetPeerId>,
) -> ApiResult<CallView> {
    s.services
        .calls
        .set_peer_id(&p, &id, &req.peer_id)
        .await
        .map(Ok200)
}

#[utoipa::path(
    get,
    path = "/api/call-sessions/{id}",
    tag = "queue consultation",
    summary = "One call (a participant, or an admin)",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<CallView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn call(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<CallView> {
    s.services.calls.call(&p, &id).await.map(Ok200)
}

/// The host's poll: their latest call, or `null`.
#[utoipa::path(
    get,
    path = "/api/call-sessions/status",
    tag = "queue consultation",
    summary = "The host's live call, if any (poll fallback)",
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<Option<CallView>>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn host_status(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> ApiResult<Option<CallView>> {
    s.services.calls.host_status(&p).await.map(Ok200)
}

/// The invitee's poll: their live invitation, or `null`.
#[utoipa::path(
    get,
    path = "/api/pending-invitation",
    tag = "queue consultation",
    summary = "The caller's unanswered invitation, if any (poll fallback)",
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<Option<CallView>>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn pending_invitation(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> ApiResult<Option<CallView>> {
    s.services
        .calls
        .pending_invitation(&p.user_id)
        .await
        .map(Ok200)
}

const AUDIT_DEFAULT_LIMIT: u64 = 100;
const AUDIT_MAX_LIMIT: u64 = 1000;

/// `?entityId=` (or `entity_id`) and `?limit=` (default 100, at most 1000).
#[utoipa::path(
    get,
    path = "/api/audit-logs",
    tag = "operations",
    summary = "Transitions: one entity's oldest first, or the latest across everything (admin)",
    params(("entityId" = Option<String>, Query, description = "one entity's transitions (alias entity_id)"), ("limit" = Option<u64>, Query, description = "1 to 1000; default 100")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<Vec<AuditView>>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn audit_logs(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    query: QueryParams,
) -> ApiResult<Vec<AuditView>> {
    let entity = query.text(&["entityId", "entity_id"]);
    let limit = match query.get(&["limit"]) {
        None => AUDIT_DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|l| (1..=AUDIT_MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be 1 to {AUDIT_MAX_LIMIT}"))
            })?,
    };
    s.services
        .audit
        .audit_logs(&p, entity, limit)
        .await
        .map(Ok200)
}

/// `callType` / `call_type`: `video` (default) or `voice`.
fn call_type(raw: Option<&str>) -> Result<CallType, ApiError> {
    match raw {
        None => Ok(CallType::default()),
        Some(raw) => CallType::parse(raw)
            .ok_or_else(|| ApiError::bad_request("call_type must be `video` or `voice`")),
    }
}

/// CONTRACT §5's body; the direct call app sends snake_case and `doctor_id` as a number.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct StartDirectCall {
    #[serde(default, alias = "callType")]
    call_type: Option<String>,
    #[serde(default, alias = "appointmentId")]
    appointment_id: Option<serde_json::Value>,
    #[serde(alias = "doctorId")]
    doctor_id: IdInput,
}

/// Absent, `null` or `""` means "generate one"; a string or an integer is
/// the caller's key; anything else is refused.
fn appointment_key(raw: Option<serde_json::Value>) -> Result<Option<AppointmentId>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "appointment_id must be a string or an integer of at most 256 characters",
        )
    };
    match crate::input::optional_id(raw.as_ref()).map_err(|()| bad())? {
        None => Ok(None),
        Some(key) => AppointmentId::parse(key).map(Some).ok_or_else(bad),
    }
}

/// 201 with a new call, 200 with the caller's live one.
#[utoipa::path(
    post,
    path = "/api/call-sessions/start",
    tag = "direct call",
    summary = "A patient calls a doctor directly: 201 with the new call, 200 with the live one for the same appointment",
    request_body = StartDirectCall,
    security(("bearer" = [])),
    responses((status = 200, description = "the live one, on a second request", body = crate::http::envelope::Envelope<CallView>), (status = 201, description = "success", body = crate::http::envelope::Envelope<CallView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn start_direct_call(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    JsonBody(req): JsonBody<StartDirectCall>,
) -> Result<Response, ApiError> {
    let call_type = call_type(req.call_type.as_deref())?;
    let appointment = appointment_key(req.appointment_id)?;
    let (call, created) = s
        .services
        .direct
        .start_direct_call(&p, &req.doctor_id.0, appointment, call_type)
        .await?;
    Ok(if created {
        Created(call).into_response()
    } else {
        Ok200(call).into_response()
    })
}

/// CONTRACT §6's body.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct CreateSession {
    #[serde(alias = "hostId")]
    host_id: IdInput,
    #[serde(alias = "skillName")]
    skill_name: String,
}

#[utoipa::path(
    post,
    path = "/api/sessions",
    tag = "tutoring request",
    summary = "A learner requests a session with a teacher (pending)",
    request_body = CreateSession,
    security(("bearer" = [])),
    responses((status = 201, description = "success", body = crate::http::envelope::Envelope<SessionView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn create_session(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    JsonBody(req): JsonBody<CreateSession>,
) -> Result<Created<SessionView>, ApiError> {
    let skill = SkillName::parse(&req.skill_name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "skill_name must be 1 to {} characters, without control characters",
            SkillName::MAX_CHARS
        ))
    })?;
    s.services
        .tutoring
        .create_session(&p, &req.host_id.0, skill)
        .await
        .map(Created)
}

/// `?status=pending|accepted|rejected|cancelled|ended`, or every status.
#[utoipa::path(
    get,
    path = "/api/sessions",
    tag = "tutoring request",
    summary = "The caller's sessions, newest first",
    params(("status" = Option<String>, Query, description = "pending, accepted, rejected, cancelled or ended")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<Vec<SessionView>>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn sessions(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    query: QueryParams,
) -> ApiResult<Vec<SessionView>> {
    let status = match query.text(&["status"]) {
        None => None,
        Some(raw) => Some(TutoringStatus::parse(raw).ok_or_else(|| {
            ApiError::bad_request(
                "status must be one of pending, accepted, rejected, cancelled, ended",
            )
        })?),
    };
    s.services.tutoring.sessions(&p, status).await.map(Ok200)
}

#[utoipa::path(
    get,
    path = "/api/sessions/{id}",
    tag = "tutoring request",
    summary = "One session",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<SessionView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn session(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    PathId(id): PathId,
) -> ApiResult<SessionView> {
    s.services.tutoring.session(&p, &id).await.map(Ok200)
}

async fn session_command(
    s: AppState,
    p: AuthUser,
    id: String,
    cmd: TutoringCommand,
) -> ApiResult<SessionView> {
    s.services
        .tutoring
        .session_command(&p.0, &id, cmd)
        .await
        .map(Ok200)
}

#[utoipa::path(
    post,
    path = "/api/sessions/{id}/accept",
    tag = "tutoring request",
    summary = "The teacher accepts: accepted, with a room",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<SessionView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn accept_session(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<SessionView> {
    session_command(s, p, id, TutoringCommand::Accept).await
}

#[utoipa::path(
    post,
    path = "/api/sessions/{id}/reject",
    tag = "tutoring request",
    summary = "The teacher rejects",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<SessionView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn reject_session(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<SessionView> {
    session_command(s, p, id, TutoringCommand::Reject).await
}

#[utoipa::path(
    post,
    path = "/api/sessions/{id}/cancel",
    tag = "tutoring request",
    summary = "The learner withdraws",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<SessionView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn cancel_session(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<SessionView> {
    session_command(s, p, id, TutoringCommand::Cancel).await
}

#[utoipa::path(
    post,
    path = "/api/sessions/{id}/end",
    tag = "tutoring request",
    summary = "Either participant ends the session",
    params(("id" = String, Path, description = "the id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<SessionView>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn end_session(
    State(s): State<AppState>,
    p: AuthUser,
    PathId(id): PathId,
) -> ApiResult<SessionView> {
    session_command(s, p, id, TutoringCommand::End).await
}
