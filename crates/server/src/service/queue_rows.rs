//! Queue rows inside a transaction: a locked entry with its schedule, an
//! entry's change with its audit row, and the `queue_updated` snapshot.
//! Shared by the schedule, queue and call services.

use consultd_domain::{
    AuditAction, CallId, EntryChange, Principal, QueueEntry, Schedule, Status, Timestamp,
    Transition, UserId,
};
use consultd_persistence::{CallRecord, Conn, QueueRepo, ScheduleRepo};

use super::journal::{Journal, Subject};
use super::outbox::{Audience, Notices, Push};
use super::views::{EntryView, QueueUpdated};
use crate::error::ApiError;

/// A `queue_updated` for the host, read inside the transaction that changed
/// the queue, so it is exactly the committed state and pushing it needs no
/// database connection.
pub(crate) struct QueueNews {
    pub(crate) host: UserId,
    pub(crate) payload: QueueUpdated,
}

impl QueueNews {
    /// `notices`, then `queue_updated` to the schedule's host.
    pub(crate) fn after(self, notices: Notices) -> Notices {
        notices.push(Audience::user(&self.host), Push::QueueUpdated(self.payload))
    }
}

pub(crate) async fn queue_snapshot(
    txn: &impl Conn,
    schedule: &Schedule,
) -> Result<QueueNews, ApiError> {
    let entries = QueueRepo.list(txn, schedule.id.as_str()).await?;
    Ok(QueueNews {
        host: schedule.host_id.clone(),
        payload: QueueUpdated {
            schedule_id: schedule.id.to_string(),
            queue: EntryView::queue(&entries),
        },
    })
}

/// Writes an entry's change (`entry` is its new state) with its journal rows.
pub(crate) async fn apply_entry(
    txn: &impl Conn,
    journal: &Journal,
    actor: Option<&Principal>,
    entry: &QueueEntry,
    change: &EntryChange,
    now: Timestamp,
) -> Result<(), ApiError> {
    QueueRepo.apply(txn, &entry.id, change, now).await?;
    let t = Transition {
        from: change.from.status,
        to: change.to.status,
    };
    let subject = Subject::Entry(entry);
    journal
        .moved(txn, actor, change.action, subject, t, now)
        .await
}

/// Stores a new entry with its journal rows.
pub(crate) async fn insert_entry(
    txn: &impl Conn,
    journal: &Journal,
    actor: &Principal,
    entry: &QueueEntry,
    now: Timestamp,
) -> Result<(), ApiError> {
    QueueRepo.insert(txn, entry).await?;
    let to = entry.status.as_str();
    let subject = Subject::Entry(entry);
    journal
        .created(txn, Some(actor), AuditAction::QueueJoin, subject, to, now)
        .await
}

/// Locks an entry and its schedule (in that order: schedule first).
pub(crate) async fn lock_entry(
    txn: &impl Conn,
    entry_id: &str,
) -> Result<(Schedule, QueueEntry), ApiError> {
    let not_found = || ApiError::not_found("no such queue entry");
    let entry = QueueRepo.find(txn, entry_id).await?.ok_or_else(not_found)?;
    let schedule = ScheduleRepo
        .lock(txn, entry.schedule_id.as_str())
        .await?
        .ok_or_else(not_found)?;
    let entry = QueueRepo.lock(txn, entry_id).await?.ok_or_else(not_found)?;
    Ok((schedule, entry))
}

/// Locks the schedule and entry a call belongs to, if it has them.
pub(crate) async fn lock_context(
    txn: &impl Conn,
    call: &CallRecord,
) -> Result<(Option<Schedule>, Option<QueueEntry>), ApiError> {
    let schedule = match call.origin.schedule_id() {
        Some(id) => ScheduleRepo.lock(txn, id.as_str()).await?,
        None => None,
    };
    let entry = match call.origin.entry_id() {
        Some(id) => QueueRepo.lock(txn, id.as_str()).await?,
        None => None,
    };
    Ok((schedule, entry))
}

/// What a call's move to `to` does to its queue entry (if it has one),
/// written with its audit row; the queue as it then is.
pub(crate) async fn follow_call(
    txn: &impl Conn,
    journal: &Journal,
    actor: Option<&Principal>,
    call: &CallId,
    to: consultd_domain::CallStatus,
    (schedule, entry): (Option<&mut Schedule>, Option<&mut QueueEntry>),
    now: Timestamp,
) -> Result<Option<QueueNews>, ApiError> {
    if let (Some(schedule), Some(entry)) = (schedule, entry)
        && let Some(change) = entry.on_call(call, to, schedule.is_open())
    {
        apply_entry(txn, journal, actor, entry, &change, now).await?;
        return Ok(Some(queue_snapshot(txn, schedule).await?));
    }
    Ok(None)
}
