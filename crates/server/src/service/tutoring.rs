//! Tutoring-style sessions (CONTRACT §6, seed 003). A session is a call with
//! the learner as inviter and the teacher as invitee; this module only
//! speaks its vocabulary (pending/accepted/…, `session:*` events).

use consultd_domain::{
    Call, CallError, CallId, CallKind, CallOrigin, Party, Principal, Side, SkillName, Status,
    TutoringCommand, TutoringStatus, UserId,
};
use consultd_persistence::{CallRecord, CallRepo, SessionFilter};

use super::consult::{ConsultService, MoveError, commit, insert_call, require_guest};
use super::views::SessionView;
use super::{new_id, now};
use crate::error::ApiError;

const SESSIONS: &[CallKind] = &[CallKind::Tutoring];

/// The most sessions one list returns.
pub const SESSION_LIST_LIMIT: u64 = 100;

/// The machine's refusals, in session words.
fn refusal(e: CallError) -> ApiError {
    match e {
        CallError::NotParticipant => ApiError::not_found("no such session"),
        CallError::WrongParty("invitee") => ApiError::forbidden("only the teacher may do this"),
        CallError::WrongParty(_) => ApiError::forbidden("only the learner may do this"),
        CallError::Illegal { from, .. } => ApiError::Conflict(format!(
            "the session is {}",
            TutoringStatus::of(from).as_str()
        )),
        CallError::Expired => ApiError::Expired("the session request has expired".into()),
        CallError::SelfCall => ApiError::bad_request("you cannot book a session with yourself"),
        CallError::BadPeerId => ApiError::bad_request(e.to_string()),
    }
}

impl ConsultService {
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
        let now = now();
        let id = new_id();
        let call = Call::invite(
            CallId::new(id.clone()),
            Party::new(host, None),
            Party::new(p.user_id.clone(), p.name.clone()),
            Side::Guest,
            now,
            self.inner.session_ttl,
        )
        .map_err(refusal)?;
        let record = CallRecord {
            call,
            origin: CallOrigin::Tutoring { skill_name },
            // Seed 003's `room-…` shape; only shown once accepted.
            room_id: format!("room-{id}"),
            call_type: "video".to_owned(),
        };
        let txn = self.db().begin_write().await?;
        insert_call(&txn, p, &record, now).await?;
        let _ordered = self.inner.order.lock(record.call.id.as_str()).await;
        commit(txn).await?;

        self.invited(&record);
        let view = SessionView::from(&record);
        self.inner
            .notify
            .user(&record.call.host.user_id, "session:incoming", &view)
            .await;
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
        self.visible_call(p, id, SESSIONS)
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
            unexpired_at: (status == Some(TutoringStatus::Pending)).then(now),
            limit: SESSION_LIST_LIMIT,
        };
        let rows = CallRepo.sessions(self.db().conn(), filter).await?;
        Ok(rows.iter().map(SessionView::from).collect())
    }
}
