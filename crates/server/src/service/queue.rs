//! The queue (CONTRACT §4, the queue consultation): a guest joins a
//! schedule's queue and says they are ready; the host reads the queue,
//! resets an entry, and invites a ready guest into a call.

use std::sync::Arc;

use chrono::Duration;
use consultd_domain::{
    Busy, CallId, CallOrigin, EntryChange, EntryId, Party, Principal, QueueEntry, Schedule, Side,
    Timestamp, start_queue_call,
};
use consultd_persistence::{CallRecord, CallRepo, QueueRepo, ScheduleRepo, WriteTxn};

use super::call::{CallService, CallType, insert_call};
use super::context::{Context, new_id, require_guest, require_host};
use super::outbox::{Notices, Push};
use super::queue_rows::{apply_entry, insert_entry, lock_entry, queue_snapshot};
use super::views::{CallView, EntryView};
use crate::error::ApiError;

#[derive(Clone)]
pub struct QueueService {
    ctx: Arc<Context>,
    calls: CallService,
    /// How long a call invitation waits for an answer.
    invite_ttl: Duration,
}

impl QueueService {
    pub fn new(calls: CallService, invite_ttl: Duration) -> Self {
        Self {
            ctx: calls.ctx.clone(),
            calls,
            invite_ttl,
        }
    }

    /// Joins the queue; returns the entry and whether it was created (a
    /// second join returns the live entry).
    pub async fn join_queue(
        &self,
        p: &Principal,
        schedule_id: &str,
    ) -> Result<(EntryView, bool), ApiError> {
        require_guest(p)?;
        let now = self.ctx.now();
        let txn = self.ctx.db.begin_write().await?;
        let schedule = ScheduleRepo
            .lock(&*txn, schedule_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such schedule"))?;
        if let Some(live) = QueueRepo
            .live_for(&*txn, schedule_id, p.user_id.as_str())
            .await?
        {
            let pos = QueueRepo.position(&*txn, &live).await?;
            return Ok((EntryView::new(&live, pos), false));
        }
        let entry = QueueEntry::join(
            EntryId::new(new_id()),
            &schedule,
            p.user_id.clone(),
            p.name.clone(),
            now,
        )?;
        insert_entry(&*txn, &self.ctx.journal, p, &entry, now).await?;
        let pos = QueueRepo.position(&*txn, &entry).await?;
        let news = queue_snapshot(&*txn, &schedule).await?;
        self.ctx
            .commit_with(txn, schedule.id.as_str(), news.after(Notices::new()))
            .await?;
        Ok((EntryView::new(&entry, pos), true))
    }

    pub async fn toggle_ready(
        &self,
        p: &Principal,
        entry_id: &str,
        ready: bool,
    ) -> Result<EntryView, ApiError> {
        require_guest(p)?;
        let now = self.ctx.now();
        let txn = self.ctx.db.begin_write().await?;
        let (schedule, mut entry) = lock_entry(&*txn, entry_id).await?;
        let change = entry.set_ready(&p.user_id, ready)?;
        self.commit_entry(txn, p, &schedule, &entry, change, now)
            .await
    }

    /// The host's reset: back to `WAITING` (409 while a call is live).
    pub async fn reset_entry(&self, p: &Principal, entry_id: &str) -> Result<EntryView, ApiError> {
        require_host(p)?;
        let now = self.ctx.now();
        let txn = self.ctx.db.begin_write().await?;
        let (schedule, mut entry) = lock_entry(&*txn, entry_id).await?;
        if !schedule.is_owned_by(&p.user_id) {
            return Err(ApiError::not_found("no such queue entry"));
        }
        // A DONE entry cannot come back while the guest has rejoined: the
        // unique index refuses it and that surfaces as 409.
        let change = entry.reset(&schedule)?;
        self.commit_entry(txn, p, &schedule, &entry, change, now)
            .await
    }

    /// Writes an entry's change (if any) with its audit row, commits, and
    /// pushes the queue to the host; answers with the entry as it now is.
    async fn commit_entry(
        &self,
        txn: WriteTxn,
        p: &Principal,
        schedule: &Schedule,
        entry: &QueueEntry,
        change: Option<EntryChange>,
        now: Timestamp,
    ) -> Result<EntryView, ApiError> {
        let pos = QueueRepo.position(&*txn, entry).await?;
        let Some(change) = change else {
            return Ok(EntryView::new(entry, pos));
        };
        apply_entry(&*txn, &self.ctx.journal, Some(p), entry, &change, now).await?;
        let news = queue_snapshot(&*txn, schedule).await?;
        self.ctx
            .commit_with(txn, schedule.id.as_str(), news.after(Notices::new()))
            .await?;
        Ok(EntryView::new(entry, pos))
    }

    /// The schedule's entries in join order: its owner, or an admin.
    pub async fn queue(
        &self,
        p: &Principal,
        schedule_id: &str,
    ) -> Result<Vec<EntryView>, ApiError> {
        if !p.is_host() && !p.is_admin() {
            return Err(ApiError::forbidden(
                "only the schedule's host may read its queue",
            ));
        }
        let conn = self.ctx.db.conn();
        let schedule = ScheduleRepo
            .find(conn, schedule_id)
            .await?
            .filter(|s| p.is_admin() || s.is_owned_by(&p.user_id))
            .ok_or_else(|| ApiError::not_found("no such schedule"))?;
        let entries = QueueRepo.list(conn, schedule.id.as_str()).await?;
        Ok(EntryView::queue(&entries))
    }

    /// A guest's own entry (or the host's / an admin's view of it).
    pub async fn entry(&self, p: &Principal, entry_id: &str) -> Result<EntryView, ApiError> {
        let conn = self.ctx.db.conn();
        let entry = QueueRepo
            .find(conn, entry_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such queue entry"))?;
        let allowed = p.is_admin()
            || entry.patient_id == p.user_id
            || ScheduleRepo
                .find(conn, entry.schedule_id.as_str())
                .await?
                .is_some_and(|s| s.is_owned_by(&p.user_id));
        if !allowed {
            return Err(ApiError::not_found("no such queue entry"));
        }
        let pos = QueueRepo.position(conn, &entry).await?;
        Ok(EntryView::new(&entry, pos))
    }

    /// The host invites a ready guest from the queue.
    pub async fn start_call(
        &self,
        p: &Principal,
        schedule_id: &str,
        patient_id: &str,
        call_type: CallType,
    ) -> Result<CallView, ApiError> {
        require_host(p)?;
        let now = self.ctx.now();
        let txn = self.ctx.db.begin_write().await?;
        let schedule = ScheduleRepo
            .lock(&*txn, schedule_id)
            .await?
            .filter(|s| s.is_owned_by(&p.user_id))
            .ok_or_else(|| ApiError::not_found("no such schedule"))?;
        let not_queued = || ApiError::not_found("this patient is not in the queue");
        let live = QueueRepo
            .live_for(&*txn, schedule_id, patient_id)
            .await?
            .ok_or_else(not_queued)?;
        let mut entry = QueueRepo
            .lock(&*txn, live.id.as_str())
            .await?
            .ok_or_else(not_queued)?;
        let busy = Busy {
            host: CallRepo
                .has_live(&*txn, Side::Host, p.user_id.as_str())
                .await?,
            guest: CallRepo.has_live(&*txn, Side::Guest, patient_id).await?,
        };
        let host = Party::new(p.user_id.clone(), p.name.clone());
        let (call, change) = start_queue_call(
            &schedule,
            &host,
            &mut entry,
            busy,
            CallId::new(new_id()),
            now,
            self.invite_ttl,
        )?;
        let record = CallRecord {
            room_id: call.id.to_string(),
            call,
            origin: CallOrigin::Queue {
                schedule_id: schedule.id.clone(),
                entry_id: entry.id.clone(),
            },
            call_type: call_type.as_str().to_owned(),
        };
        // Both writes are guarded: the entry's compare-and-set on (READY, no
        // call) and the live-call unique indexes. Racing invitations lose
        // here with 409 and leave nothing behind.
        let journal = &self.ctx.journal;
        apply_entry(&*txn, journal, Some(p), &entry, &change, now).await?;
        insert_call(&*txn, journal, p, &record, now).await?;
        let news = queue_snapshot(&*txn, &schedule).await?;
        let view = CallView::from(&record);
        let guest = &record.call.guest.user_id;
        let invitation = self
            .calls
            .invitation(&record, guest, Push::CallInvitation(view.clone()));
        self.ctx
            .commit_with(txn, schedule.id.as_str(), news.after(invitation))
            .await?;
        self.calls.invited(&record);
        Ok(view)
    }
}
