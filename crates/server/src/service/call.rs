//! The call machine that queue calls (§4), direct calls (§5) and tutoring
//! sessions (§6) share: one table, one deadline timer, one way to move a
//! call, commit it and announce it. The other services only differ in how a
//! call begins and in the words they answer with.
//!
//! Lock order inside a transaction is always schedule → queue entry → call,
//! so two transitions never wait on each other in a cycle.

use std::sync::Arc;

use consultd_domain::{
    AuditAction, CallCommand, CallError, CallId, CallKind, CallStatus, Principal, QueueEntry,
    Schedule, ScheduleId, Status, Timestamp, Transition, TutoringStatus, UserId,
};
use consultd_persistence::{CallRecord, CallRepo, Conn, RepoError, WriteTxn};

use super::context::Context;
use super::journal::{Journal, Subject};
use super::outbox::{Audience, Notices, Push};
use super::queue_rows::{QueueNews, follow_call, lock_context};
use super::views::{CallView, SessionView};
use crate::error::ApiError;
use crate::telemetry::CALL_TRANSITIONS;
use crate::timers::Deadline;

/// `video` unless the host asks for `voice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallType {
    #[default]
    Video,
    Voice,
}

impl CallType {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "video" => Some(Self::Video),
            "voice" | "audio" => Some(Self::Voice),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Video => "video",
            Self::Voice => "voice",
        }
    }
}

/// Why moving a call failed: the machine's refusal (each front door words
/// it in its own vocabulary) or anything else.
pub(crate) enum MoveError {
    Refused(CallError),
    Other(ApiError),
}

impl MoveError {
    /// §4/§5's wording of a refusal.
    pub(crate) fn in_call_words(self) -> ApiError {
        match self {
            Self::Refused(e) => e.into(),
            Self::Other(e) => e,
        }
    }
}

impl<E: Into<ApiError>> From<E> for MoveError {
    fn from(e: E) -> Self {
        Self::Other(e.into())
    }
}

/// The schedule and entry a call moves with, when it has them.
pub(crate) type QueueContext<'a> = (Option<&'a mut Schedule>, Option<&'a mut QueueEntry>);

#[derive(Clone)]
pub struct CallService {
    pub(crate) ctx: Arc<Context>,
}

impl CallService {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// What a new invitation commits with: its deadline, then `push` to
    /// the one invited.
    pub(crate) fn invitation(&self, record: &CallRecord, to: &UserId, push: Push) -> Notices {
        Notices::new()
            .deadline(
                record.call.expires_at,
                Deadline::CallExpiry(record.call.id.clone()),
            )
            .push(Audience::user(to), push)
    }

    /// After an invitation is committed: its count.
    pub(crate) fn invited(&self, record: &CallRecord) {
        let kind = record.origin.kind().as_str();
        metrics::counter!(CALL_TRANSITIONS, "kind" => kind, "to" => record.call.status.as_str())
            .increment(1);
        tracing::info!(call = %record.call.id, kind, "invitation sent");
    }

    /// confirm / decline / cancel / activate / end by a participant, for
    /// queue and direct calls (§4, §5).
    #[tracing::instrument(name = "call", skip_all, fields(id = %call_id))]
    pub async fn call_command(
        &self,
        p: &Principal,
        call_id: &str,
        command: CallCommand,
    ) -> Result<CallView, ApiError> {
        self.move_call(p, call_id, CallKind::CALLS, command)
            .await
            .map(|record| CallView::from(&record))
            .map_err(MoveError::in_call_words)
    }

    /// Moves one of `p`'s calls of the given kinds by `command`: lock, the
    /// machine's step, compare-and-set, commit, announce. A call of another
    /// kind is not found.
    pub(crate) async fn move_call(
        &self,
        p: &Principal,
        call_id: &str,
        kinds: &[CallKind],
        command: CallCommand,
    ) -> Result<CallRecord, MoveError> {
        let now = self.ctx.now();
        let found = self.participant_call(p, call_id, kinds).await?;
        let txn = self.ctx.db.begin_write().await?;
        let (mut schedule, mut entry) = lock_context(&*txn, &found).await?;
        let mut record = CallRepo
            .lock(&*txn, call_id)
            .await?
            .ok_or(MoveError::Refused(CallError::NotParticipant))?;
        let (t, actor, late) = match record.call.handle(&p.user_id, command, now) {
            Ok(Some(t)) => {
                record.call.learn_name(&p.user_id, p.name.as_deref());
                (t, Some(p), false)
            }
            Ok(None) => return Ok(record),
            // Answered too late: the invitation expires now if the timer
            // has not run yet, and the caller learns it is gone (410).
            Err(CallError::Expired) => match record.call.on_timeout(now) {
                Some(t) => (t, None, true),
                None => return Err(MoveError::Refused(CallError::Expired)),
            },
            Err(e) => return Err(MoveError::Refused(e)),
        };
        let action = audit_action(record.origin.kind(), (!late).then_some(command));
        let context = (schedule.as_mut(), entry.as_mut());
        self.commit_call(txn, actor, action, &record, t, context, now)
            .await?;
        if late {
            return Err(MoveError::Refused(CallError::Expired));
        }
        Ok(record)
    }

    /// The timer's call deadline: the invitation expires if it is still
    /// unanswered.
    #[tracing::instrument(name = "call", skip_all, fields(id = %id))]
    pub(crate) async fn expire(&self, id: &CallId) -> Result<(), ApiError> {
        let now = self.ctx.now();
        let Some(found) = CallRepo.find(self.ctx.db.conn(), id.as_str()).await? else {
            return Ok(());
        };
        if found.call.next_deadline().is_none() {
            return Ok(());
        }
        let txn = self.ctx.db.begin_write().await?;
        let (mut schedule, mut entry) = lock_context(&*txn, &found).await?;
        let Some(mut record) = CallRepo.lock(&*txn, id.as_str()).await? else {
            return Ok(());
        };
        let Some(t) = record.call.on_timeout(now) else {
            // Not due yet (a clock step) or already answered: look again
            // at the deadline, if there still is one.
            if let Some(at) = record.call.next_deadline() {
                self.ctx.at(at, Deadline::CallExpiry(id.clone()));
            }
            return Ok(());
        };
        let context = (schedule.as_mut(), entry.as_mut());
        let action = audit_action(record.origin.kind(), None);
        self.commit_call(txn, None, action, &record, t, context, now)
            .await
    }

    /// Writes a call transition and its queue follow-up, commits, and
    /// announces it, in commit order.
    #[allow(clippy::too_many_arguments)] // one transaction's worth of context
    pub(crate) async fn commit_call(
        &self,
        txn: WriteTxn,
        actor: Option<&Principal>,
        action: AuditAction,
        record: &CallRecord,
        t: Transition<CallStatus>,
        context: QueueContext<'_>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        CallRepo.apply(&*txn, &record.call, t).await?;
        let journal = &self.ctx.journal;
        let subject = Subject::Call(record);
        journal.moved(&*txn, actor, action, subject, t, now).await?;
        let id = &record.call.id;
        let queue = follow_call(&*txn, journal, actor, id, t.to, context, now).await?;
        let notices = announcement(record, queue);
        self.ctx
            .commit_with(txn, order_key(record), notices)
            .await?;
        let c = &record.call;
        let kind = record.origin.kind().as_str();
        metrics::counter!(CALL_TRANSITIONS, "kind" => kind, "to" => c.status.as_str()).increment(1);
        tracing::info!(call = %c.id, kind, status = c.status.as_str(), "call transition");
        Ok(())
    }

    /// A call of one of `kinds` that `p` takes part in, or any if `p` is an
    /// admin (who reads everything and moves nothing).
    pub(crate) async fn visible_call(
        &self,
        p: &Principal,
        call_id: &str,
        kinds: &[CallKind],
    ) -> Result<Option<CallRecord>, ApiError> {
        Ok(self
            .call_of_kind(call_id, kinds)
            .await?
            .filter(|r| p.is_admin() || r.call.side_of(&p.user_id).is_some()))
    }

    /// A call of one of `kinds` that `p` takes part in.
    pub(crate) async fn participant_call(
        &self,
        p: &Principal,
        call_id: &str,
        kinds: &[CallKind],
    ) -> Result<CallRecord, MoveError> {
        self.call_of_kind(call_id, kinds)
            .await?
            .filter(|r| r.call.side_of(&p.user_id).is_some())
            .ok_or(MoveError::Refused(CallError::NotParticipant))
    }

    async fn call_of_kind(
        &self,
        call_id: &str,
        kinds: &[CallKind],
    ) -> Result<Option<CallRecord>, RepoError> {
        Ok(CallRepo
            .find(self.ctx.db.conn(), call_id)
            .await?
            .filter(|r| kinds.contains(&r.origin.kind())))
    }
}

/// What a call's move tells: both participants (and the host of the queue
/// it changed). A call that is over closes its signaling room first, so
/// its sockets have left before anyone is told.
fn announcement(record: &CallRecord, queue: Option<QueueNews>) -> Notices {
    let c = &record.call;
    let mut notices = Notices::new();
    if !c.status.is_live() {
        notices = notices.close_call(c.id.clone());
    }
    let both = Audience::Users(vec![c.host.user_id.clone(), c.guest.user_id.clone()]);
    if record.origin.kind() == CallKind::Tutoring {
        // The tutoring request app listened to `postgres_changes` UPDATEs; every change
        // is `session:updated` to both, and the learner also gets
        // `session:accepted`.
        let view = SessionView::from(record);
        if TutoringStatus::of(c.status) == TutoringStatus::Accepted {
            let learner = Audience::user(&c.guest.user_id);
            notices = notices.push(learner, Push::SessionAccepted(view.clone()));
        }
        notices = notices.push(both, Push::SessionUpdated(view));
    } else {
        notices = notices.push(both, Push::call(c.status, CallView::from(record)));
    }
    match queue {
        Some(news) => news.after(notices),
        None => notices,
    }
}

/// The audit log's action for a move of a call of `kind`; `None` is the
/// server's own expiry.
fn audit_action(kind: CallKind, command: Option<CallCommand>) -> AuditAction {
    use AuditAction as A;
    use CallCommand as C;
    match (kind, command) {
        (CallKind::Tutoring, Some(C::Confirm)) => A::SessionAccept,
        (CallKind::Tutoring, Some(C::Decline)) => A::SessionReject,
        (CallKind::Tutoring, Some(C::Cancel)) => A::SessionCancel,
        (CallKind::Tutoring, Some(C::Activate)) => A::SessionActivate,
        (CallKind::Tutoring, Some(C::End)) => A::SessionEnd,
        (CallKind::Tutoring, None) => A::SessionExpire,
        (_, Some(c)) => c.action(),
        (_, None) => A::CallExpire,
    }
}

/// Stores a new invitation with its journal rows, inside `txn`.
pub(crate) async fn insert_call(
    txn: &impl Conn,
    journal: &Journal,
    p: &Principal,
    record: &CallRecord,
    now: Timestamp,
) -> Result<(), ApiError> {
    CallRepo.insert(txn, record).await?;
    let kind = record.origin.kind();
    let action = match kind {
        CallKind::Queue => AuditAction::CallInvite,
        CallKind::Direct => AuditAction::CallStart,
        CallKind::Tutoring => AuditAction::SessionCreate,
    };
    let to = record.call.status.as_str();
    let subject = Subject::Call(record);
    journal
        .created(txn, Some(p), action, subject, to, now)
        .await
}

/// The ordering key of a call: its schedule's (so call and queue pushes of
/// one schedule stay in commit order), or its own.
pub(crate) fn order_key(r: &CallRecord) -> &str {
    r.origin
        .schedule_id()
        .map_or(r.call.id.as_str(), ScheduleId::as_str)
}
