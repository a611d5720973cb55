//! The rest of the call service: what participants read (a call, the
//! host's latest, the guest's pending invitation), peer ids, and ending
//! calls nobody is connected to any more.

use consultd_domain::{AuditAction, CallId, CallKind, Principal, Timestamp, UserId};
use consultd_persistence::{CallRepo, RepoError};

use super::call::{CallService, MoveError};
use super::context::require_host;
use super::outbox::{Audience, Notices, Push};
use super::queue_rows::lock_context;
use super::views::{CallView, PeerIdUpdated};
use crate::error::ApiError;
use crate::presence::Presence;
use crate::telemetry::CALLS_ABANDONED;
use crate::timers::Deadline;

impl CallService {
    /// Stores a participant's peer id and tells the other participant.
    #[tracing::instrument(name = "call", skip_all, fields(id = %call_id))]
    pub async fn set_peer_id(
        &self,
        p: &Principal,
        call_id: &str,
        peer_id: &str,
    ) -> Result<CallView, ApiError> {
        let mut record = self
            .participant_call(p, call_id, CallKind::CALLS)
            .await
            .map_err(MoveError::in_call_words)?;
        let side = record.call.set_peer_id(&p.user_id, peer_id)?;
        // Publishing another user's broker id would send the other side's
        // offer to them (the broker would refuse to relay it, but the call
        // would never connect). An id nobody holds yet is fine: the
        // participant connects with it next.
        if let Some(holder) = self.ctx.peers.holder(peer_id).await
            && holder != p.user_id
        {
            return Err(ApiError::forbidden(
                "that peer id is held on the PeerJS broker by another user",
            ));
        }
        let txn = self.ctx.db.begin_write().await?;
        CallRepo
            .set_peer_id(&*txn, &record.call.id, side, peer_id)
            .await
            .map_err(|e| match e {
                RepoError::Conflict => ApiError::Conflict("the call is over".into()),
                other => other.into(),
            })?;
        // Re-read so the answer carries the other side's latest peer id too.
        if let Some(fresh) = CallRepo.find(&*txn, call_id).await? {
            record = fresh;
        }
        let other = record.call.party(side.other()).user_id.clone();
        let payload = PeerIdUpdated {
            call_session_id: record.call.id.to_string(),
            role: p.role.to_string(),
            peer_id: peer_id.to_owned(),
        };
        let notices = Notices::new().push(Audience::user(&other), Push::PeerIdUpdated(payload));
        self.ctx
            .commit_with(txn, super::call::order_key(&record), notices)
            .await?;
        Ok(CallView::from(&record))
    }

    /// A call its participant (or an admin) may see, in any status.
    pub async fn call(&self, p: &Principal, call_id: &str) -> Result<CallView, ApiError> {
        let record = self
            .visible_call(p, call_id, CallKind::CALLS)
            .await?
            .ok_or_else(|| ApiError::not_found("no such call session"))?;
        Ok(CallView::from(&record))
    }

    /// The host's latest call (the doctor's poll), or `None`.
    pub async fn host_status(&self, p: &Principal) -> Result<Option<CallView>, ApiError> {
        require_host(p)?;
        let latest = CallRepo
            .latest_for_host(self.ctx.db.conn(), p.user_id.as_str())
            .await?;
        Ok(latest.as_ref().map(CallView::from))
    }

    /// The caller's live invitation as invitee (the guest's poll), or `None`.
    pub async fn pending_invitation(&self, user: &UserId) -> Result<Option<CallView>, ApiError> {
        let pending = CallRepo
            .pending_for_invitee(self.ctx.db.conn(), user.as_str(), self.ctx.now())
            .await?;
        Ok(pending.as_ref().map(CallView::from))
    }

    /// Every unanswered invitation's deadline, for the timer's start.
    pub(crate) async fn deadlines(&self) -> Result<Vec<(Timestamp, Deadline)>, RepoError> {
        Ok(CallRepo
            .deadlines(self.ctx.db.conn())
            .await?
            .into_iter()
            .map(|(id, at)| (at, Deadline::CallExpiry(id)))
            .collect())
    }

    /// The abandon sweep's step: each call in progress (a queue or direct
    /// call `CONFIRMED`/`ACTIVE`, an accepted tutoring session) whose two
    /// participants have both been gone for `after` ends, marked
    /// abandoned. Returns how many ended.
    pub async fn abandon_idle(
        &self,
        presence: &Presence,
        after: std::time::Duration,
    ) -> Result<usize, ApiError> {
        let mut ended = 0;
        for r in CallRepo.in_progress(self.ctx.db.conn()).await? {
            let c = &r.call;
            if presence.idle_everywhere(&c.host.user_id).await >= after
                && presence.idle_everywhere(&c.guest.user_id).await >= after
                && self.abandon(&c.id).await?
            {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Ends one call as abandoned if it is still in progress (a
    /// compare-and-set: a participant's end, or another node's sweep, may
    /// have come first).
    #[tracing::instrument(name = "call", skip_all, fields(id = %id))]
    async fn abandon(&self, id: &CallId) -> Result<bool, ApiError> {
        let now = self.ctx.now();
        let Some(found) = CallRepo.find(self.ctx.db.conn(), id.as_str()).await? else {
            return Ok(false);
        };
        let txn = self.ctx.db.begin_write().await?;
        let (mut schedule, mut entry) = lock_context(&*txn, &found).await?;
        let Some(mut record) = CallRepo.lock(&*txn, id.as_str()).await? else {
            return Ok(false);
        };
        let Some(t) = record.call.abandon(now) else {
            return Ok(false);
        };
        let action = match record.origin.kind() {
            CallKind::Tutoring => AuditAction::SessionAbandon,
            CallKind::Queue | CallKind::Direct => AuditAction::CallAbandon,
        };
        let context = (schedule.as_mut(), entry.as_mut());
        self.commit_call(txn, None, action, &record, t, context, now)
            .await?;
        metrics::counter!(CALLS_ABANDONED, "kind" => record.origin.kind().as_str()).increment(1);
        tracing::info!("nobody connected any more: ended as abandoned");
        Ok(true)
    }
}
