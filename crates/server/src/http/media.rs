//! The media path's REST side (CONTRACT §9): ICE servers with expiring
//! TURN credentials, and tickets for the PeerJS broker.

use super::AuthUser;
use crate::error::{ApiError, ApiResult, Ok200};
use crate::ice::IceServers;
use crate::peerjs::Ticket;
use crate::state::AppState;
use axum::extract::State;

/// `GET /api/ice-servers`: `{ iceServers, ttl }` for `RTCPeerConnection`.
#[utoipa::path(
    get,
    path = "/api/ice-servers",
    tag = "media path",
    summary = "STUN and TURN servers with expiring coturn REST credentials",
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<crate::ice::IceServers>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn ice_servers(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> Ok200<IceServers> {
    let now = u64::try_from(s.clock.now().timestamp()).unwrap_or(0);
    Ok200(s.ice.for_user(&p.user_id, now))
}

/// `POST /api/peerjs/ticket`: `{ token, ttl }`, the PeerJS `token` to use
/// instead of the JWT, which would otherwise sit in the websocket URL.
#[utoipa::path(
    post,
    path = "/api/peerjs/ticket",
    tag = "media path",
    summary = "A short-lived ticket for the PeerJS broker's token",
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<crate::peerjs::Ticket>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn peerjs_ticket(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> ApiResult<Ticket> {
    let pj = s
        .peerjs
        .as_deref()
        .ok_or_else(|| ApiError::not_found("the PeerJS broker is switched off (PEERJS_PATH)"))?;
    pj.tickets().mint(&p).map(Ok200).map_err(|e| {
        tracing::error!(error = %e, "PeerJS ticket not minted");
        ApiError::Internal
    })
}
