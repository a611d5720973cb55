//! Who may enter a room: a call's signaling room (CONTRACT §3) or a chat
//! session's room (§7). Decided once, at join; relaying and chatting after
//! that never ask the database who may.

use consultd_domain::{CallId, CallKind, CallOrigin, CallStatus, ChatSession, Principal, UserId};
use consultd_persistence::{CallRecord, CallRepo, ChatRepo, Db};

use super::chat_messages::HISTORY_DEFAULT;
use super::views::ChatMessageView;
use crate::error::ApiError;

/// Admission to a chat room: the session as it was read, the latest
/// messages and everyone's read marker.
pub struct ChatGrant {
    pub session: ChatSession,
    pub messages: Vec<ChatMessageView>,
    pub read_markers: Vec<(String, String)>,
}

/// Reads only: it moves nothing, so it needs only the database.
#[derive(Clone)]
pub struct RoomAccess {
    db: Db,
}

/// The call a participant may signal in.
#[derive(Debug, Clone)]
pub struct RoomGrant {
    pub call_id: CallId,
}

fn refused() -> ApiError {
    // One answer for "no such room", "not yours" and "not live": a stranger
    // learns nothing about which calls exist.
    ApiError::forbidden("you may not join this room")
}

/// Live for signaling: a call that is not over; a tutoring session once
/// it is accepted (a pending request has no room yet).
fn joinable(r: &CallRecord) -> bool {
    match r.origin.kind() {
        CallKind::Tutoring => matches!(r.call.status, CallStatus::Confirmed | CallStatus::Active),
        CallKind::Queue | CallKind::Direct => r.call.status.is_live(),
    }
}

impl RoomAccess {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Resolves a room id — a call's id, its `room_id`, its `appointment_id`
    /// (a live direct call's), or an accepted tutoring session's `room_id` —
    /// and admits `p` if they take part in it while it is live.
    pub async fn room_grant(&self, p: &Principal, room: &str) -> Result<RoomGrant, ApiError> {
        if p.is_admin() {
            return Err(ApiError::forbidden("admins do not join rooms"));
        }
        let found = CallRepo.room_candidates(self.db.conn(), room).await?;
        // Precedence: a call's own id, then a `room_id`, then an
        // `appointment_id` (a session's id is not a room).
        let record = found
            .iter()
            .find(|r| r.call.id.as_str() == room && r.origin.kind().is_call())
            .or_else(|| found.iter().find(|r| r.room_id == room))
            .or_else(|| {
                found.iter().find(|r| {
                    matches!(&r.origin, CallOrigin::Direct { appointment_id } if appointment_id.as_str() == room)
                })
            })
            .cloned();
        let record = record
            .filter(|r| r.call.side_of(&p.user_id).is_some() && joinable(r))
            .ok_or_else(refused)?;
        Ok(RoomGrant {
            call_id: record.call.id,
        })
    }

    /// The calls that let `a` and `b` signal each other outside a room (the
    /// PeerJS broker): the ones whose room both could join now. Empty for
    /// strangers, for one user with themself, and once every shared call
    /// is over.
    pub async fn shared_calls(&self, a: &UserId, b: &UserId) -> Result<Vec<CallId>, ApiError> {
        if a == b {
            return Ok(Vec::new());
        }
        Ok(CallRepo
            .live_between(self.db.conn(), a.as_str(), b.as_str())
            .await?
            .into_iter()
            .filter(joinable)
            .map(|r| r.call.id)
            .collect())
    }

    /// Whether the call is still joinable, read again after its room was
    /// set up (see the socket layer's `Rooms::enter` for why).
    pub async fn room_still_live(&self, call_id: &CallId) -> Result<bool, ApiError> {
        Ok(CallRepo
            .find(self.db.conn(), call_id.as_str())
            .await?
            .is_some_and(|r| joinable(&r)))
    }

    /// `chat:join_room`: the customer (from `pending`) or the assigned
    /// host. One answer for everyone else, whether the room exists or not.
    pub async fn chat_grant(&self, p: &Principal, room_id: &str) -> Result<ChatGrant, ApiError> {
        let refused = || ApiError::forbidden("you may not join this chat room");
        if p.is_admin() {
            return Err(ApiError::forbidden("admins do not join rooms"));
        }
        let conn = self.db.conn();
        let session = ChatRepo
            .find(conn, room_id)
            .await?
            .filter(|s| s.may_join(&p.user_id))
            .ok_or_else(refused)?;
        let messages = ChatRepo
            .page(conn, session.id.as_str(), None, HISTORY_DEFAULT)
            .await?;
        let read_markers = ChatRepo.read_markers(conn, session.id.as_str()).await?;
        Ok(ChatGrant {
            messages: messages.iter().map(ChatMessageView::from).collect(),
            read_markers,
            session,
        })
    }

    /// Whether the session is over (or gone), read now.
    pub async fn chat_has_ended(&self, id: &str) -> Result<bool, ApiError> {
        Ok(ChatRepo
            .find(self.db.conn(), id)
            .await?
            .is_none_or(|s| !s.accepts_messages()))
    }
}
