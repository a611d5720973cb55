//! Services: the one place where a request becomes a state change, one per
//! area. Each public function authorises, runs the domain step inside one
//! write transaction (compare-and-set + audit rows), commits, and only then
//! hands what changed to the transport's ports ([`outbox`]). Handlers (REST
//! or socket) call exactly one of them.
//!
//! `service/` knows nothing of Socket.IO: the socket layer implements the
//! ports, and a second transport implements them again.

mod access;
pub mod admin;
mod audit;
mod call;
mod call_reads;
mod chat;
mod chat_messages;
mod context;
mod direct;
mod journal;
mod order;
pub mod outbox;
pub mod peers;
mod queue;
mod queue_rows;
mod schedule;
mod tutoring;
pub mod views;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use consultd_domain::{CallKind, ChatDuration, Timestamp, UserId};
use consultd_persistence::{CallRepo, ChatRepo, RepoError};

use outbox::Owed;

pub use access::{ChatGrant, RoomAccess, RoomGrant};
pub use admin::{AdminService, Board};
pub use audit::AuditLog;
pub use call::{CallService, CallType};
pub use chat::{CHAT_LIST_LIMIT, ChatCommand, ChatService};
pub use chat_messages::{HISTORY_DEFAULT, HISTORY_MAX, Posted};
pub use context::{Context, Ports, new_id};
pub use direct::DirectService;
pub use journal::Journal;
pub use queue::QueueService;
pub use schedule::ScheduleService;
pub use tutoring::{SESSION_LIST_LIMIT, TutoringService};

use crate::timers::{Deadline, OnDeadline};

/// The settings the services take from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a call invitation (§4, §5) waits for an answer.
    pub invite_ttl: chrono::Duration,
    /// How long a tutoring request (§6) waits for an answer.
    pub session_ttl: chrono::Duration,
    /// How long a chat session (§7) runs unless its customer asks otherwise.
    pub chat_duration: ChatDuration,
}

/// Every service, over one shared [`Context`]. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub schedules: ScheduleService,
    pub queue: QueueService,
    pub calls: CallService,
    pub direct: DirectService,
    pub tutoring: TutoringService,
    pub chat: ChatService,
    pub rooms: RoomAccess,
    pub audit: AuditLog,
    pub admin: AdminService,
}

impl Services {
    pub fn new(ctx: Arc<Context>, settings: Settings) -> Self {
        let calls = CallService::new(ctx.clone());
        Self {
            schedules: ScheduleService::new(ctx.clone()),
            queue: QueueService::new(calls.clone(), settings.invite_ttl),
            direct: DirectService::new(calls.clone(), settings.invite_ttl),
            tutoring: TutoringService::new(calls.clone(), settings.session_ttl),
            chat: ChatService::new(ctx.clone(), settings.chat_duration),
            rooms: RoomAccess::new(ctx.db.clone()),
            audit: AuditLog::new(ctx.db.clone()),
            admin: AdminService::new(ctx.clone()),
            calls,
        }
    }

    /// Every pending deadline, for the timer's start: unanswered
    /// invitations and live chat sessions.
    pub async fn deadlines(&self) -> Result<Vec<(Timestamp, Deadline)>, RepoError> {
        let mut all = self.calls.deadlines().await?;
        all.extend(self.chat.chat_deadlines().await?);
        Ok(all)
    }

    /// Who a connect resync owes what now, read from the database: each
    /// unanswered invitation's invitee, each chat in progress's two
    /// participants. For the socket layer's index of who has something to
    /// resync, at start and after a bus gap.
    pub async fn owed(&self) -> Result<Vec<(UserId, Owed)>, RepoError> {
        let conn = self.calls.ctx.db.conn();
        let now = self.calls.ctx.now();
        let mut owed = Vec::new();
        for record in CallRepo.unanswered(conn, now).await? {
            let call = &record.call;
            match record.origin.kind() {
                CallKind::Tutoring => owed.push((call.host.user_id.clone(), Owed::TutoringRequest)),
                _ => owed.push((call.invitee().user_id.clone(), Owed::Invitation)),
            }
        }
        for session in ChatRepo.in_progress(conn).await? {
            owed.push((session.customer.clone(), Owed::ChatAsCustomer));
            if let Some(mechanic) = &session.mechanic {
                owed.push((mechanic.clone(), Owed::ChatAsHost));
            }
        }
        Ok(owed)
    }
}

impl OnDeadline for Services {
    async fn on_deadline(&self, what: Deadline) {
        let failed = match &what {
            Deadline::CallExpiry(id) => self.calls.expire(id).await.err(),
            Deadline::ChatEnd(id) => self.chat.chat_timeout(id).await.err(),
        };
        if let Some(e) = failed {
            tracing::warn!(?what, error = %e, "deadline failed; retrying in 1 s");
            let ctx = &self.calls.ctx;
            ctx.at(ctx.now() + chrono::Duration::seconds(1), what);
        }
    }
}
