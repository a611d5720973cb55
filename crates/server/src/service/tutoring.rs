//! Tutoring-style sessions (CONTRACT §6). A session is a call with
//! the learner as inviter and the teacher as invitee; this module only
//! speaks its vocabulary (pending/accepted/…, `session:*` events).

use std::sync::Arc;

use chrono::Duration;
use consultd_domain::{
    Call, CallId, CallKind, CallOrigin, Party, Principal, Side, SkillName, TutoringCommand,
    TutoringStatus, UserId,
};
use consultd_persistence::{CallRecord, CallRepo, SessionFilter};

use super::call::{CallService, MoveError, insert_call};
use super::context::{Context, new_id, require_guest};
use super::outbox::Push;
use super::views::SessionView;
use crate::error::{ApiError, session_refusal as refusal};

const SESSIONS: &[CallKind] = &[CallKind::Tutoring];

/// The most sessions one list returns.
pub const SESSION_LIST_LIMIT: u64 = 100;

#[derive(Clone)]
pub struct TutoringService {
    ctx: Arc<Context>,
    calls: CallService,
    /// How long a request waits for the teacher's answer.
    session_ttl: Duration,
}

impl TutoringService {
    pub fn new(calls: CallService, session_ttl: Duration) -> Self {
        Self {
            ctx: calls.ctx.clone(),
            calls,
            session_ttl,
        }
    }

    /// `POST /api/sessions` by a learner: `pending` until the teacher
    /// answers or `expires_at`.
    #[tracing::instrument(name = "session", skip_all)]
    pub async fn create_session(
        &self,
        p: &Principal,
        host_id: &str,
        skill_name: SkillName,
    ) -> Result<SessionView, ApiError> {
        require_guest(p)?;
        let host = UserId::new(host_id)
            .ok_or_else(|| ApiError::bad_request("host_id is not a usable user id"))?;
        let now = self.ctx.now();
        let id = new_id();
        let call = Call::invite(
            CallId::new(id.clone()),
            Party::new(host, None),
            Party::new(p.user_id.clone(), p.name.clone()),
            Side::Guest,
            now,
            self.session_ttl,
        )
        .map_err(refusal)?;
        let record = CallRecord {
            call,
            origin: CallOrigin::Tutoring { skill_name },
            // the tutoring request app's `room-…` shape; only shown once accepted.
            room_id: format!("room-{id}"),
            call_type: "video".to_owned(),
        };
        let txn = self.ctx.db.begin_write().await?;
        insert_call(&*txn, &self.ctx.journal, p, &record, now).await?;
        let view = SessionView::from(&record);
        let teacher = &record.call.host.user_id;
        let invitation =
            self.calls
                .invitation(&record, teacher, Push::SessionIncoming(view.clone()));
        self.ctx
            .commit_with(txn, record.call.id.as_str(), invitation)
            .await?;
        self.calls.invited(&record);
        Ok(view)
    }

    /// accept / reject (teacher), cancel (learner), end (either).
    #[tracing::instrument(name = "session", skip_all, fields(id = %id))]
    pub async fn session_command(
        &self,
        p: &Principal,
        id: &str,
        command: TutoringCommand,
    ) -> Result<SessionView, ApiError> {
        match self
            .calls
            .move_call(p, id, SESSIONS, command.call_command())
            .await
        {
            Ok(record) => Ok(SessionView::from(&record)),
            Err(MoveError::Refused(e)) => Err(refusal(e)),
            Err(MoveError::Other(e)) => Err(e),
        }
    }

    /// One session, for its participants (or an admin), in any status.
    pub async fn session(&self, p: &Principal, id: &str) -> Result<SessionView, ApiError> {
        self.calls
            .visible_call(p, id, SESSIONS)
            .await?
            .map(|r| SessionView::from(&r))
            .ok_or_else(|| ApiError::not_found("no such session"))
    }

    /// The caller's sessions, newest first: a teacher's as host, a learner's
    /// as learner, everyone's for an admin. `pending` means still
    /// answerable (unexpired).
    pub async fn sessions(
        &self,
        p: &Principal,
        status: Option<TutoringStatus>,
    ) -> Result<Vec<SessionView>, ApiError> {
        let side = if p.is_admin() {
            None
        } else if p.is_host() {
            Some(Side::Host)
        } else {
            Some(Side::Guest)
        };
        let filter = SessionFilter {
            user_id: p.user_id.as_str(),
            side,
            statuses: status.map_or(&[], TutoringStatus::call_statuses),
            unexpired_at: (status == Some(TutoringStatus::Pending)).then(|| self.ctx.now()),
            limit: SESSION_LIST_LIMIT,
        };
        let rows = CallRepo.sessions(self.ctx.db.conn(), filter).await?;
        Ok(rows.iter().map(SessionView::from).collect())
    }
}
