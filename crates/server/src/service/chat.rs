//! Chat sessions (CONTRACT §7, seed 004): intake, accept, the presence-driven
//! start, the timer, messages with idempotent resend, read markers.
//!
//! Every status change commits, then — under the session's order lock — is
//! pushed as `session:status` to both users; messages of a room are pushed
//! under the same lock, so a room's events leave in commit order.

use consultd_domain::{
    ChatDuration, ChatError, ChatSession, ChatStatus, Concern, MessageContent, Principal, Status,
    Timestamp, Transition, UserId,
};
use consultd_persistence::{ChatMessage, ChatRepo, ChatScope, DatabaseTransaction};

use super::consult::{ConsultService, commit, record_creation, record_transition, require_guest};
use super::views::{ChatMessageView, ChatSessionView, ChatStatusView};
use super::{new_id, now};
use crate::error::ApiError;
use crate::telemetry::{CHAT_MESSAGES, CHAT_TRANSITIONS};
use crate::timers::Deadline;

/// The most sessions one list returns.
pub const CHAT_LIST_LIMIT: u64 = 100;
/// Messages in a join ack and a history page by default.
pub const HISTORY_DEFAULT: u64 = 50;
/// The largest history page.
pub const HISTORY_MAX: u64 = 200;

const ENTITY: &str = "chat_session";

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::NotParticipant => ApiError::not_found("no such chat session"),
            ChatError::WrongRole(m) => ApiError::forbidden(m),
            ChatError::Taken | ChatError::Illegal { .. } => ApiError::Conflict(e.to_string()),
        }
    }
}

/// What a chat command asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatCommand {
    Accept,
    End,
}

/// Admission to a chat room: the session as it was read, the latest
/// messages and everyone's read marker.
pub struct ChatGrant {
    pub session: ChatSession,
    pub messages: Vec<ChatMessageView>,
    pub read_markers: Vec<(String, String)>,
}

/// A message as stored, and whether this request stored it (`false`: a
/// resend of one stored before).
pub struct Posted {
    pub message: ChatMessageView,
    pub created: bool,
}

impl ConsultService {
    /// `POST /api/chat-sessions` by a customer: `pending`.
    #[tracing::instrument(name = "chat", skip_all)]
    pub async fn create_chat(
        &self,
        p: &Principal,
        concern: Option<Concern>,
        duration: Option<ChatDuration>,
    ) -> Result<ChatSessionView, ApiError> {
        require_guest(p)?;
        let now = now();
        let session = ChatSession::open(
            new_id(),
            p.user_id.clone(),
            concern,
            duration.unwrap_or(self.inner.chat_duration),
            now,
        );
        let txn = self.db().begin_write().await?;
        ChatRepo.insert(&*txn, &session).await?;
        record_creation(
            &txn,
            Some(p),
            "chat.create",
            ENTITY,
            &session.id,
            session.status.as_str(),
            now,
        )
        .await?;
        commit(txn).await?;
        tracing::info!(chat = %session.id, "chat session requested");
        Ok(ChatSessionView::from(&session))
    }

    /// accept (a host; first wins) / end (either participant).
    #[tracing::instrument(name = "chat", skip_all, fields(id = %id))]
    pub async fn chat_command(
        &self,
        p: &Principal,
        id: &str,
        command: ChatCommand,
    ) -> Result<ChatSessionView, ApiError> {
        let now = now();
        let txn = self.db().begin_write().await?;
        let mut session = ChatRepo
            .lock(&*txn, id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such chat session"))?;
        let step = match command {
            ChatCommand::Accept => session.accept(p, now),
            ChatCommand::End => session.end(p, now),
        };
        let Some(t) = step? else {
            return Ok(ChatSessionView::from(&session));
        };
        let action = match command {
            ChatCommand::Accept => "chat.accept",
            ChatCommand::End => "chat.end",
        };
        self.commit_chat(txn, Some(p), action, &session, t, now)
            .await?;
        Ok(ChatSessionView::from(&session))
    }

    /// Writes a transition with its audit row, commits, and announces it.
    async fn commit_chat(
        &self,
        txn: consultd_persistence::WriteTxn,
        actor: Option<&Principal>,
        action: &str,
        session: &ChatSession,
        t: Transition<ChatStatus>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        ChatRepo.apply(&*txn, session, t).await?;
        record_transition(&txn, actor, action, ENTITY, &session.id, t, now).await?;
        let _ordered = self.inner.order.lock(&session.id).await;
        commit(txn).await?;
        metrics::counter!(CHAT_TRANSITIONS, "to" => t.to.as_str()).increment(1);
        tracing::info!(chat = %session.id, from = t.from.as_str(), to = t.to.as_str(), "chat transition");
        match t.to {
            ChatStatus::Live => {
                if let Some(at) = session.ends_at {
                    self.inner
                        .timer
                        .at(at, Deadline::ChatEnd(session.id.clone()));
                }
            }
            ChatStatus::Ended => self.inner.rooms.chat_ended(&session.id),
            ChatStatus::Pending | ChatStatus::Waiting => {}
        }
        let view = ChatStatusView::from(session);
        let users: Vec<&UserId> = std::iter::once(&session.customer)
            .chain(session.mechanic.as_ref())
            .collect();
        self.inner
            .notify
            .users(&users, "session:status", &view)
            .await;
        Ok(())
    }

    /// Both participants are in the room: a `waiting` session goes live.
    /// Called by a join with the users present; the session decides.
    pub async fn chat_presence(&self, id: &str, present: &[UserId]) -> Result<(), ApiError> {
        self.server_move(id, ChatStatus::Waiting, "chat.start", |s, now| {
            s.on_presence(present, now)
        })
        .await
        .map(drop)
    }

    /// The timer: a live session whose time is up ends, once.
    #[tracing::instrument(name = "chat", skip_all, fields(id = %id))]
    pub(super) async fn chat_timeout(&self, id: &str) -> Result<(), ApiError> {
        let unmoved = self
            .server_move(id, ChatStatus::Live, "chat.expire", |s, now| {
                s.on_timeout(now)
            })
            .await?;
        if let Some(at) = unmoved.and_then(|s| s.next_deadline()) {
            // Woken early (a clock step): look again when it is due.
            self.inner.timer.at(at, Deadline::ChatEnd(id.to_owned()));
        }
        Ok(())
    }

    /// A move the server makes by itself, from `from`: a plain read first
    /// (most calls find the session elsewhere and need no write
    /// transaction), then lock, `step`, commit and announce. Returns the
    /// locked session when `step` did not move it.
    async fn server_move(
        &self,
        id: &str,
        from: ChatStatus,
        action: &str,
        step: impl FnOnce(&mut ChatSession, Timestamp) -> Option<Transition<ChatStatus>>,
    ) -> Result<Option<ChatSession>, ApiError> {
        let looks_right = ChatRepo
            .find(self.db().conn(), id)
            .await?
            .is_some_and(|s| s.status == from);
        if !looks_right {
            return Ok(None);
        }
        let now = now();
        let txn = self.db().begin_write().await?;
        let Some(mut session) = ChatRepo.lock(&*txn, id).await? else {
            return Ok(None);
        };
        let Some(t) = step(&mut session, now) else {
            return Ok(Some(session));
        };
        self.commit_chat(txn, None, action, &session, t, now)
            .await?;
        Ok(None)
    }

    /// One session: its participants, an admin, or any host while it is
    /// an open request.
    pub async fn chat_session(&self, p: &Principal, id: &str) -> Result<ChatSessionView, ApiError> {
        ChatRepo
            .find(self.db().conn(), id)
            .await?
            .filter(|s| s.visible_to(p))
            .map(|s| ChatSessionView::from(&s))
            .ok_or_else(|| ApiError::not_found("no such chat session"))
    }

    /// A customer's own sessions; a host's own and the open requests; all
    /// for an admin. Newest first.
    pub async fn chat_sessions(
        &self,
        p: &Principal,
        status: Option<ChatStatus>,
    ) -> Result<Vec<ChatSessionView>, ApiError> {
        let me = p.user_id.as_str();
        let scope = if p.is_admin() {
            ChatScope::All
        } else if p.is_host() {
            ChatScope::Host(me)
        } else {
            ChatScope::Customer(me)
        };
        let rows = ChatRepo
            .list(self.db().conn(), scope, status, CHAT_LIST_LIMIT)
            .await?;
        Ok(rows.iter().map(ChatSessionView::from).collect())
    }

    /// A room's participant (or an admin, who reads everything), or 404.
    async fn readable_room(&self, p: &Principal, room_id: &str) -> Result<ChatSession, ApiError> {
        ChatRepo
            .find(self.db().conn(), room_id)
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
        let conn = self.db().conn();
        let cursor =
            match before {
                Some(id) => Some(ChatRepo.message(conn, &session.id, id).await?.ok_or_else(
                    || ApiError::bad_request("`before` is not a message of this room"),
                )?),
                None => None,
            };
        let page = ChatRepo
            .page(conn, &session.id, cursor.as_ref(), limit)
            .await?;
        Ok(page.iter().map(ChatMessageView::from).collect())
    }

    /// `chat:join_room`: the customer (from `pending`) or the assigned
    /// host. One answer for everyone else, whether the room exists or not.
    pub async fn chat_grant(&self, p: &Principal, room_id: &str) -> Result<ChatGrant, ApiError> {
        let refused = || ApiError::forbidden("you may not join this chat room");
        if p.is_admin() {
            return Err(ApiError::forbidden("admins do not join rooms"));
        }
        let conn = self.db().conn();
        let session = ChatRepo
            .find(conn, room_id)
            .await?
            .filter(|s| s.may_join(&p.user_id))
            .ok_or_else(refused)?;
        let messages = ChatRepo
            .page(conn, &session.id, None, HISTORY_DEFAULT)
            .await?;
        let read_markers = ChatRepo.read_markers(conn, &session.id).await?;
        Ok(ChatGrant {
            messages: messages.iter().map(ChatMessageView::from).collect(),
            read_markers,
            session,
        })
    }

    /// Whether the session is over (or gone), read now.
    pub async fn chat_has_ended(&self, id: &str) -> Result<bool, ApiError> {
        Ok(ChatRepo
            .find(self.db().conn(), id)
            .await?
            .is_none_or(|s| !s.accepts_messages()))
    }

    /// `chat:send_message`: stores the message, then `broadcast`s it (under
    /// the room's order lock, so a room's messages leave in commit order).
    /// A resend with the same client message id returns the stored message
    /// and broadcasts nothing.
    pub async fn post_message(
        &self,
        p: &Principal,
        room_id: &str,
        content: MessageContent,
        client_message_id: Option<String>,
        broadcast: impl FnOnce(&ChatMessageView),
    ) -> Result<Posted, ApiError> {
        let me = p.user_id.as_str();
        let txn = self.db().begin_write().await?;
        let session = ChatRepo
            .lock(&*txn, room_id)
            .await?
            .filter(|s| s.may_join(&p.user_id))
            .ok_or_else(|| ApiError::forbidden("you may not post in this chat room"))?;
        // A resend is found by its client message id only when the insert
        // says so (or the session is over): one round trip less per message.
        let tx: &DatabaseTransaction = &txn;
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
            room_id: session.id.clone(),
            sender_id: me.to_owned(),
            sender_role: p.role.to_string(),
            content: content.into_string(),
            client_message_id,
            created_at: now(),
        };
        if !ChatRepo.insert_message(&*txn, &message).await? {
            // A resend (or another tab's, or another node's, at the same time).
            let cmid = message.client_message_id.clone().unwrap_or_default();
            return resent(cmid)
                .await?
                .ok_or_else(|| ApiError::internal("a conflicting message vanished"));
        }
        let view = ChatMessageView::from(&message);
        let _ordered = self.inner.order.lock(&session.id).await;
        commit(txn).await?;
        metrics::counter!(CHAT_MESSAGES).increment(1);
        broadcast(&view);
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
        let conn = self.db().conn();
        let target = ChatRepo
            .message(conn, room_id, message_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such message in this room"))?;
        let txn = self.db().begin_write().await?;
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
            .set_read_marker(&*txn, room_id, me, message_id, now())
            .await?;
        commit(txn).await?;
        Ok(true)
    }

    /// The user's sessions in progress (`waiting`, `live`) for the connect
    /// resync, each re-read under its order lock so that a status pushed
    /// meanwhile is never followed by an older one. Only those that last
    /// changed before `joined_at` are given to `emit`: later changes reached
    /// the socket live.
    ///
    /// This reads under the order lock, against that lock's rule: a
    /// committer holds a connection while it waits for the lock, so with
    /// every pool connection held by committers of the same stripe this
    /// read would wait for the pool timeout (then fail and log). That takes
    /// a pool's worth of concurrent commits on one stripe; the stale
    /// status it prevents is far likelier.
    pub async fn resync_chat(
        &self,
        p: &Principal,
        joined_at: Timestamp,
        emit: impl Fn(&ChatStatusView),
    ) -> Result<(), ApiError> {
        if p.is_admin() {
            return Ok(());
        }
        let conn = self.db().conn();
        let in_progress = ChatRepo
            .in_progress_for(conn, p.user_id.as_str(), p.is_host())
            .await?;
        for listed in in_progress {
            let _ordered = self.inner.order.lock(&listed.id).await;
            let Some(session) = ChatRepo.find(conn, &listed.id).await? else {
                continue;
            };
            if session.updated_at <= joined_at {
                emit(&ChatStatusView::from(&session));
            }
        }
        Ok(())
    }

    /// Every live chat session's end, for the timer's start.
    pub(super) async fn chat_deadlines(
        &self,
    ) -> Result<Vec<(Timestamp, Deadline)>, consultd_persistence::RepoError> {
        Ok(ChatRepo
            .deadlines(self.db().conn())
            .await?
            .into_iter()
            .map(|(id, at)| (at, Deadline::ChatEnd(id)))
            .collect())
    }
}
