//! Chat sessions (CONTRACT §7, the support chat): intake, accept, the
//! presence-driven start, the timer, the reconnect resync. Messages are in
//! [`super::chat_messages`].
//!
//! Every status change commits, then — under the session's order lock — is
//! pushed as `session:status` to both users; messages of a room are pushed
//! under the same lock, so a room's events leave in commit order.

use std::sync::Arc;

use consultd_domain::{
    AuditAction, ChatDuration, ChatId, ChatSession, ChatStatus, Concern, Principal, Status,
    Timestamp, Transition, UserId,
};
use consultd_persistence::{ChatRepo, ChatScope, RepoError, WriteTxn};

use super::context::{Context, new_id, require_guest};
use super::journal::Subject;
use super::outbox::{Audience, Notices, Push};
use super::views::{ChatSessionView, ChatStatusView};
use crate::error::ApiError;
use crate::telemetry::CHAT_TRANSITIONS;
use crate::timers::Deadline;

/// The most sessions one list returns.
pub const CHAT_LIST_LIMIT: u64 = 100;

/// What a chat command asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatCommand {
    Accept,
    End,
}

#[derive(Clone)]
pub struct ChatService {
    pub(crate) ctx: Arc<Context>,
    /// How long a session runs unless its customer asks otherwise.
    duration: ChatDuration,
}

impl ChatService {
    pub fn new(ctx: Arc<Context>, duration: ChatDuration) -> Self {
        Self { ctx, duration }
    }

    /// `POST /api/chat-sessions` by a customer: `pending`.
    #[tracing::instrument(name = "chat", skip_all)]
    pub async fn create_chat(
        &self,
        p: &Principal,
        concern: Option<Concern>,
        duration: Option<ChatDuration>,
    ) -> Result<ChatSessionView, ApiError> {
        require_guest(p)?;
        let now = self.ctx.now();
        let session = ChatSession::open(
            ChatId::new(new_id()),
            p.user_id.clone(),
            concern,
            duration.unwrap_or(self.duration),
            now,
        );
        let txn = self.ctx.db.begin_write().await?;
        ChatRepo.insert(&*txn, &session).await?;
        let to = session.status.as_str();
        let (action, subject) = (AuditAction::ChatCreate, Subject::Chat(&session));
        let journal = &self.ctx.journal;
        journal
            .created(&*txn, Some(p), action, subject, to, now)
            .await?;
        self.ctx.commit(txn).await?;
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
        let now = self.ctx.now();
        let txn = self.ctx.db.begin_write().await?;
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
            ChatCommand::Accept => AuditAction::ChatAccept,
            ChatCommand::End => AuditAction::ChatEnd,
        };
        self.commit_chat(txn, Some(p), action, &session, t, now)
            .await?;
        Ok(ChatSessionView::from(&session))
    }

    /// Writes a transition with its audit row, commits, and announces it.
    async fn commit_chat(
        &self,
        txn: WriteTxn,
        actor: Option<&Principal>,
        action: AuditAction,
        session: &ChatSession,
        t: Transition<ChatStatus>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        ChatRepo.apply(&*txn, session, t).await?;
        let subject = Subject::Chat(session);
        self.ctx
            .journal
            .moved(&*txn, actor, action, subject, t, now)
            .await?;
        let mut notices = Notices::new();
        match t.to {
            ChatStatus::Live => {
                if let Some(at) = session.ends_at {
                    let end = Deadline::ChatEnd(session.id.as_str().to_owned());
                    notices = notices.deadline(at, end);
                }
            }
            ChatStatus::Ended => notices = notices.chat_ended(session.id.clone()),
            ChatStatus::Pending | ChatStatus::Waiting => {}
        }
        let view = ChatStatusView::from(session);
        let users: Vec<UserId> = std::iter::once(&session.customer)
            .chain(session.mechanic.as_ref())
            .cloned()
            .collect();
        let notices = notices.push(Audience::Users(users), Push::ChatStatus(view));
        self.ctx
            .commit_with(txn, session.id.as_str(), notices)
            .await?;
        metrics::counter!(CHAT_TRANSITIONS, "to" => t.to.as_str()).increment(1);
        tracing::info!(chat = %session.id, from = t.from.as_str(), to = t.to.as_str(), "chat transition");
        Ok(())
    }

    /// Both participants are in the room: a `waiting` session goes live.
    /// Called by a join with the users present; the session decides.
    pub async fn chat_presence(&self, id: &str, present: &[UserId]) -> Result<(), ApiError> {
        self.server_move(id, ChatStatus::Waiting, AuditAction::ChatStart, |s, now| {
            s.on_presence(present, now)
        })
        .await
        .map(drop)
    }

    /// The timer: a live session whose time is up ends, once.
    #[tracing::instrument(name = "chat", skip_all, fields(id = %id))]
    pub(crate) async fn chat_timeout(&self, id: &str) -> Result<(), ApiError> {
        let unmoved = self
            .server_move(id, ChatStatus::Live, AuditAction::ChatExpire, |s, now| {
                s.on_timeout(now)
            })
            .await?;
        if let Some(at) = unmoved.and_then(|s| s.next_deadline()) {
            // Woken early (a clock step): look again when it is due.
            self.ctx.at(at, Deadline::ChatEnd(id.to_owned()));
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
        action: AuditAction,
        step: impl FnOnce(&mut ChatSession, Timestamp) -> Option<Transition<ChatStatus>>,
    ) -> Result<Option<ChatSession>, ApiError> {
        let looks_right = ChatRepo
            .find(self.ctx.db.conn(), id)
            .await?
            .is_some_and(|s| s.status == from);
        if !looks_right {
            return Ok(None);
        }
        let now = self.ctx.now();
        let txn = self.ctx.db.begin_write().await?;
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
            .find(self.ctx.db.conn(), id)
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
            .list(self.ctx.db.conn(), scope, status, CHAT_LIST_LIMIT)
            .await?;
        Ok(rows.iter().map(ChatSessionView::from).collect())
    }

    /// The user's sessions in progress (`waiting`, `live`) for the connect
    /// resync, on the side of the user's role; how many. A status read here
    /// may be older than one already pushed live; the socket layer drops it
    /// then (`socket::told`).
    pub async fn resync_chat(
        &self,
        p: &Principal,
        emit: impl Fn(&ChatStatusView),
    ) -> Result<usize, ApiError> {
        if p.is_admin() {
            return Ok(0);
        }
        let in_progress = ChatRepo
            .in_progress_for(self.ctx.db.conn(), p.user_id.as_str(), p.is_host())
            .await?;
        for session in &in_progress {
            emit(&ChatStatusView::from(session));
        }
        Ok(in_progress.len())
    }

    /// Every live chat session's end, for the timer's start.
    pub(crate) async fn chat_deadlines(&self) -> Result<Vec<(Timestamp, Deadline)>, RepoError> {
        Ok(ChatRepo
            .deadlines(self.ctx.db.conn())
            .await?
            .into_iter()
            .map(|(id, at)| (at, Deadline::ChatEnd(id)))
            .collect())
    }
}
