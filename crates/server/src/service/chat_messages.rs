//! Chat messages (CONTRACT §7): history pages, posting with idempotent
//! resend, read markers.

use consultd_domain::{ChatSession, MessageContent, Principal};
use consultd_persistence::{ChatMessage, ChatRepo};

use super::chat::ChatService;
use super::context::new_id;
use super::outbox::{Audience, Notices, Push};
use super::views::ChatMessageView;
use crate::error::ApiError;
use crate::telemetry::CHAT_MESSAGES;

/// Messages in a join ack and a history page by default.
pub const HISTORY_DEFAULT: u64 = 50;
/// The largest history page.
pub const HISTORY_MAX: u64 = 200;

/// A message as stored, and whether this request stored it (`false`: a
/// resend of one stored before).
pub struct Posted {
    pub message: ChatMessageView,
    pub created: bool,
}

impl ChatService {
    /// A room's participant (or an admin, who reads everything), or 404.
    async fn readable_room(&self, p: &Principal, room_id: &str) -> Result<ChatSession, ApiError> {
        ChatRepo
            .find(self.ctx.db.conn(), room_id)
            .await?
            .filter(|s| p.is_admin() || s.may_join(&p.user_id))
            .ok_or_else(|| ApiError::not_found("no such chat room"))
    }

    /// `GET /api/chat/:roomId/messages`: the newest `limit` before the
    /// cursor (a message of this room), oldest first.
    pub async fn chat_history(
        &self,
        p: &Principal,
        room_id: &str,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<ChatMessageView>, ApiError> {
        let session = self.readable_room(p, room_id).await?;
        let conn = self.ctx.db.conn();
        let cursor = match before {
            Some(id) => Some(
                ChatRepo
                    .message(conn, session.id.as_str(), id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::bad_request("`before` is not a message of this room")
                    })?,
            ),
            None => None,
        };
        let page = ChatRepo
            .page(conn, session.id.as_str(), cursor.as_ref(), limit)
            .await?;
        Ok(page.iter().map(ChatMessageView::from).collect())
    }

    /// `chat:send_message`: stores the message, then pushes it to the room
    /// (under the room's order lock, so a room's messages leave in commit
    /// order).
    /// A resend with the same client message id returns the stored message
    /// and pushes nothing.
    pub async fn post_message(
        &self,
        p: &Principal,
        room_id: &str,
        content: MessageContent,
        client_message_id: Option<String>,
    ) -> Result<Posted, ApiError> {
        let me = p.user_id.as_str();
        let txn = self.ctx.db.begin_write().await?;
        let session = ChatRepo
            .lock(&*txn, room_id)
            .await?
            .filter(|s| s.may_join(&p.user_id))
            .ok_or_else(|| ApiError::forbidden("you may not post in this chat room"))?;
        // A resend is found by its client message id only when the insert
        // says so (or the session is over): one round trip less per message.
        let tx = &*txn;
        let resent = |cmid: String| async move {
            let stored = ChatRepo.by_client_id(tx, room_id, me, &cmid).await?;
            Ok::<_, ApiError>(stored.map(|m| Posted {
                message: ChatMessageView::from(&m),
                created: false,
            }))
        };
        if !session.accepts_messages() {
            // A message stored before the end still gets its answer.
            if let Some(cmid) = client_message_id
                && let Some(posted) = resent(cmid).await?
            {
                return Ok(posted);
            }
            return Err(ApiError::Conflict("the chat session has ended".into()));
        }
        let message = ChatMessage {
            id: new_id(),
            room_id: session.id.as_str().to_owned(),
            sender_id: me.to_owned(),
            sender_role: p.role.to_string(),
            content: content.into_string(),
            client_message_id,
            created_at: self.ctx.now(),
        };
        if !ChatRepo.insert_message(&*txn, &message).await? {
            // A resend (or another tab's, or another node's, at the same time).
            let cmid = message.client_message_id.clone().unwrap_or_default();
            return resent(cmid)
                .await?
                .ok_or_else(|| ApiError::internal("a conflicting message vanished"));
        }
        let view = ChatMessageView::from(&message);
        let room = Audience::ChatRoom(session.id.clone());
        let notices = Notices::new().push(room, Push::ChatMessage(view.clone()));
        self.ctx
            .commit_with(txn, session.id.as_str(), notices)
            .await?;
        metrics::counter!(CHAT_MESSAGES).increment(1);
        Ok(Posted {
            message: view,
            created: true,
        })
    }

    /// `chat:read`: moves the user's read marker forward to `message_id`
    /// (a message of this room). `true` if it moved.
    pub async fn mark_read(
        &self,
        p: &Principal,
        room_id: &str,
        message_id: &str,
    ) -> Result<bool, ApiError> {
        let me = p.user_id.as_str();
        let conn = self.ctx.db.conn();
        let target = ChatRepo
            .message(conn, room_id, message_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such message in this room"))?;
        let txn = self.ctx.db.begin_write().await?;
        // Locking the session row serialises two tabs marking at once, so
        // the compare below sees the other's marker (PostgreSQL; SQLite's
        // write transaction already does).
        ChatRepo.lock(&*txn, room_id).await?;
        if let Some(current) = ChatRepo.read_marker(&*txn, room_id, me).await?
            && let Some(current) = ChatRepo.message(&*txn, room_id, &current).await?
            && (current.created_at, &current.id) >= (target.created_at, &target.id)
        {
            return Ok(false);
        }
        ChatRepo
            .set_read_marker(&*txn, room_id, me, message_id, self.ctx.now())
            .await?;
        self.ctx.commit(txn).await?;
        Ok(true)
    }
}
