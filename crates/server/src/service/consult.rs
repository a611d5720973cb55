//! Schedules, the queue and call invitations (CONTRACT §4, seed 001), and
//! the call core that direct calls (§5, [`super::direct`]) and tutoring
//! sessions (§6, [`super::tutoring`]) share with them: one machine, one
//! table, one deadline timer, one way to commit and announce a transition.
//!
//! Lock order inside a transaction is always schedule → queue entry → call,
//! so two transitions never wait on each other in a cycle.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use chrono::Duration;
use consultd_domain::{
    Busy, CallCommand, CallError, CallId, CallKind, CallOrigin, CallStatus, ChatDuration,
    EntryChange, EntryId, Party, Principal, QueueEntry, QueueError, Schedule, ScheduleCommand,
    ScheduleId, ScheduleStatus, Side, Slot, Status, Timestamp, Transition, TutoringStatus, UserId,
    start_queue_call,
};
use consultd_persistence::{
    AuditRepo, CallRecord, CallRepo, DatabaseTransaction, Db, QueueRepo, RepoError, ScheduleRepo,
    WriteTxn,
};

use super::notify::Notifier;
use super::order::Sequencer;
use super::views::{
    AuditView, CallView, DoctorPresence, EntryView, PeerIdUpdated, QueueUpdated, ScheduleView,
    SessionView,
};
use super::{audit, new_id, now};
use crate::error::ApiError;
use crate::presence::Presence;
use crate::socket::Rooms;
use crate::telemetry::{CALL_TRANSITIONS, CALLS_ABANDONED};
use crate::timers::{Deadline, Timer};

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

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NotYours => ApiError::not_found("not found"),
            QueueError::BadInput(m) => ApiError::bad_request(m),
            QueueError::Illegal(m) => ApiError::Conflict(m.to_owned()),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::NotParticipant => ApiError::not_found("no such call session"),
            CallError::WrongParty(_) => ApiError::forbidden(e.to_string()),
            CallError::Illegal { from, .. } => {
                ApiError::Conflict(format!("the call is {}", from.as_str()))
            }
            CallError::Expired => ApiError::Expired("the invitation has expired".into()),
            CallError::SelfCall | CallError::BadPeerId => ApiError::bad_request(e.to_string()),
        }
    }
}

pub(super) fn require_host(p: &Principal) -> Result<(), ApiError> {
    if p.is_host() {
        Ok(())
    } else {
        Err(ApiError::forbidden("only a host may do this"))
    }
}

pub(super) fn require_guest(p: &Principal) -> Result<(), ApiError> {
    if p.is_guest() {
        Ok(())
    } else {
        Err(ApiError::forbidden("only a guest may do this"))
    }
}

/// A `queue_updated` for the host, read inside the transaction that changed
/// the queue, so it is exactly the committed state and pushing it needs no
/// database connection.
struct QueueNews {
    host: UserId,
    payload: QueueUpdated,
}

async fn queue_snapshot(
    txn: &DatabaseTransaction,
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

/// A call transition that has been committed and must now be announced.
struct Announce {
    record: CallRecord,
    /// The queue, when the call moved its entry.
    queue: Option<QueueNews>,
}

/// Why moving a call failed: the machine's refusal (each front door words
/// it in its own vocabulary) or anything else.
pub(super) enum MoveError {
    Refused(CallError),
    Other(ApiError),
}

impl MoveError {
    /// §4/§5's wording of a refusal.
    fn in_call_words(self) -> ApiError {
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

#[derive(Clone)]
pub struct ConsultService {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    db: Db,
    pub(super) notify: Notifier,
    pub(super) timer: Timer,
    /// How long a call invitation (§4, §5) waits for an answer.
    pub(super) invite_ttl: Duration,
    /// How long a tutoring request (§6) waits for an answer.
    pub(super) session_ttl: Duration,
    /// Keyed by schedule id (queue calls and queue changes share it) or by
    /// call id (calls without a schedule).
    pub(super) order: Sequencer,
    /// The millisecond of the last `direct_session_<ms>` key made here, so
    /// this node never makes the same key twice.
    pub(super) last_key_ms: AtomicI64,
    /// Signaling rooms, closed when their call ends; chat rooms.
    pub(super) rooms: Arc<Rooms>,
    /// How long a chat session (§7) runs unless its customer asks otherwise.
    pub(super) chat_duration: ChatDuration,
}

fn seconds(secs: u64) -> Duration {
    Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

impl ConsultService {
    pub fn new(
        db: Db,
        notify: Notifier,
        timer: Timer,
        invite_ttl_secs: u64,
        session_ttl_secs: u64,
        chat_duration: ChatDuration,
        rooms: Arc<Rooms>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                notify,
                timer,
                invite_ttl: seconds(invite_ttl_secs),
                session_ttl: seconds(session_ttl_secs),
                order: Sequencer::new(64),
                last_key_ms: AtomicI64::new(0),
                rooms,
                chat_duration,
            }),
        }
    }

    pub(super) fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Every pending deadline, for the timer's start: unanswered
    /// invitations and live chat sessions.
    pub async fn deadlines(&self) -> Result<Vec<(Timestamp, Deadline)>, RepoError> {
        let mut all: Vec<(Timestamp, Deadline)> = CallRepo
            .deadlines(self.db().conn())
            .await?
            .into_iter()
            .map(|(id, at)| (at, Deadline::CallExpiry(id)))
            .collect();
        all.extend(self.chat_deadlines().await?);
        Ok(all)
    }

    // ---- schedules -------------------------------------------------------

    pub async fn create_schedule(
        &self,
        p: &Principal,
        date: &str,
        start_time: &str,
        end_time: &str,
    ) -> Result<ScheduleView, ApiError> {
        require_host(p)?;
        let slot = Slot::parse(date, start_time, end_time)?;
        let now = now();
        let schedule = Schedule::create(ScheduleId::new(new_id()), p.user_id.clone(), slot, now);
        let txn = self.db().begin_write().await?;
        ScheduleRepo.insert(&*txn, &schedule).await?;
        record_creation(
            &txn,
            Some(p),
            "schedule.create",
            "schedule",
            schedule.id.as_str(),
            schedule.status.as_str(),
            now,
        )
        .await?;
        commit(txn).await?;
        Ok(ScheduleView::from(&schedule))
    }

    /// Any signed-in user may read a schedule (guests need it to queue).
    pub async fn schedule(&self, id: &str) -> Result<ScheduleView, ApiError> {
        let s = ScheduleRepo
            .find(self.db().conn(), id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such schedule"))?;
        Ok(ScheduleView::from(&s))
    }

    /// The caller's own schedules (hosts), newest first.
    pub async fn my_schedules(&self, p: &Principal) -> Result<Vec<ScheduleView>, ApiError> {
        require_host(p)?;
        let list = ScheduleRepo
            .for_host(self.db().conn(), p.user_id.as_str(), 200)
            .await?;
        Ok(list.iter().map(ScheduleView::from).collect())
    }

    /// `start` / `end` by the owner. Ending closes the waiting entries.
    pub async fn schedule_command(
        &self,
        p: &Principal,
        id: &str,
        command: ScheduleCommand,
    ) -> Result<ScheduleView, ApiError> {
        require_host(p)?;
        let now = now();
        let txn = self.db().begin_write().await?;
        let mut schedule = ScheduleRepo
            .lock(&*txn, id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such schedule"))?;
        let Some(t) = schedule.handle(&p.user_id, command)? else {
            return Ok(ScheduleView::from(&schedule));
        };
        ScheduleRepo.apply(&*txn, &schedule.id, t, now).await?;
        record_transition(
            &txn,
            Some(p),
            command.action(),
            "schedule",
            schedule.id.as_str(),
            t,
            now,
        )
        .await?;
        let mut closed = 0;
        if t.to == ScheduleStatus::Completed {
            for mut entry in QueueRepo.list(&*txn, id).await? {
                if let Some(change) = entry.close() {
                    apply_entry(&txn, Some(p), &entry.id, &change, now).await?;
                    closed += 1;
                }
            }
        }
        let news = if closed > 0 {
            Some(queue_snapshot(&txn, &schedule).await?)
        } else {
            None
        };
        let _ordered = self.inner.order.lock(schedule.id.as_str()).await;
        commit(txn).await?;

        let presence = DoctorPresence {
            doctor_id: schedule.host_id.to_string(),
            schedule_id: schedule.id.to_string(),
        };
        match t.to {
            ScheduleStatus::Online => self.inner.notify.guests("doctor_online", &presence).await,
            ScheduleStatus::Completed => {
                self.inner.notify.guests("doctor_offline", &presence).await;
                if let Some(news) = news {
                    self.push_queue(news).await;
                }
            }
            ScheduleStatus::Upcoming => {}
        }
        Ok(ScheduleView::from(&schedule))
    }

    // ---- queue -----------------------------------------------------------

    /// Joins the queue; returns the entry and whether it was created (a
    /// second join returns the live entry).
    pub async fn join_queue(
        &self,
        p: &Principal,
        schedule_id: &str,
    ) -> Result<(EntryView, bool), ApiError> {
        require_guest(p)?;
        let now = now();
        let txn = self.db().begin_write().await?;
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
        QueueRepo.insert(&*txn, &entry).await?;
        record_creation(
            &txn,
            Some(p),
            "queue.join",
            "queue_entry",
            entry.id.as_str(),
            entry.status.as_str(),
            now,
        )
        .await?;
        let pos = QueueRepo.position(&*txn, &entry).await?;
        let news = queue_snapshot(&txn, &schedule).await?;
        let _ordered = self.inner.order.lock(schedule.id.as_str()).await;
        commit(txn).await?;
        self.push_queue(news).await;
        Ok((EntryView::new(&entry, pos), true))
    }

    pub async fn toggle_ready(
        &self,
        p: &Principal,
        entry_id: &str,
        ready: bool,
    ) -> Result<EntryView, ApiError> {
        require_guest(p)?;
        let now = now();
        let txn = self.db().begin_write().await?;
        let (schedule, mut entry) = lock_entry(&txn, entry_id).await?;
        let change = entry.set_ready(&p.user_id, ready)?;
        self.commit_entry(txn, p, &schedule, &entry, change, now)
            .await
    }

    /// The host's reset: back to `WAITING` (409 while a call is live).
    pub async fn reset_entry(&self, p: &Principal, entry_id: &str) -> Result<EntryView, ApiError> {
        require_host(p)?;
        let now = now();
        let txn = self.db().begin_write().await?;
        let (schedule, mut entry) = lock_entry(&txn, entry_id).await?;
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
        apply_entry(&txn, Some(p), &entry.id, &change, now).await?;
        let news = queue_snapshot(&txn, schedule).await?;
        let _ordered = self.inner.order.lock(schedule.id.as_str()).await;
        commit(txn).await?;
        self.push_queue(news).await;
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
        let schedule = ScheduleRepo
            .find(self.db().conn(), schedule_id)
            .await?
            .filter(|s| p.is_admin() || s.is_owned_by(&p.user_id))
            .ok_or_else(|| ApiError::not_found("no such schedule"))?;
        let entries = QueueRepo
            .list(self.db().conn(), schedule.id.as_str())
            .await?;
        Ok(EntryView::queue(&entries))
    }

    /// A guest's own entry (or the host's / an admin's view of it).
    pub async fn entry(&self, p: &Principal, entry_id: &str) -> Result<EntryView, ApiError> {
        let conn = self.db().conn();
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

    async fn push_queue(&self, news: QueueNews) {
        self.inner
            .notify
            .user(&news.host, "queue_updated", &news.payload)
            .await;
    }

    // ---- calls -----------------------------------------------------------

    /// The host invites a ready guest from the queue.
    pub async fn start_call(
        &self,
        p: &Principal,
        schedule_id: &str,
        patient_id: &str,
        call_type: CallType,
    ) -> Result<CallView, ApiError> {
        require_host(p)?;
        let now = now();
        let txn = self.db().begin_write().await?;
        let schedule = ScheduleRepo
            .lock(&*txn, schedule_id)
            .await?
            .filter(|s| s.is_owned_by(&p.user_id))
            .ok_or_else(|| ApiError::not_found("no such schedule"))?;
        let live = QueueRepo
            .live_for(&*txn, schedule_id, patient_id)
            .await?
            .ok_or_else(|| ApiError::not_found("this patient is not in the queue"))?;
        let mut entry = QueueRepo
            .lock(&*txn, live.id.as_str())
            .await?
            .ok_or_else(|| ApiError::not_found("this patient is not in the queue"))?;
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
            self.inner.invite_ttl,
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
        apply_entry(&txn, Some(p), &entry.id, &change, now).await?;
        insert_call(&txn, p, &record, now).await?;
        let news = queue_snapshot(&txn, &schedule).await?;
        let _ordered = self.inner.order.lock(schedule.id.as_str()).await;
        commit(txn).await?;

        self.invited(&record);
        let view = CallView::from(&record);
        self.inner
            .notify
            .user(&record.call.guest.user_id, "call_invitation", &view)
            .await;
        self.push_queue(news).await;
        Ok(view)
    }

    /// After an invitation is committed: its deadline and its count.
    pub(super) fn invited(&self, record: &CallRecord) {
        self.inner.timer.at(
            record.call.expires_at,
            Deadline::CallExpiry(record.call.id.clone()),
        );
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
    pub(super) async fn move_call(
        &self,
        p: &Principal,
        call_id: &str,
        kinds: &[CallKind],
        command: CallCommand,
    ) -> Result<CallRecord, MoveError> {
        let now = now();
        let found = self.participant_call(p, call_id, kinds).await?;
        let txn = self.db().begin_write().await?;
        let (mut schedule, mut entry) = lock_context(&txn, &found).await?;
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

    /// The timer's entry point.
    pub async fn on_deadline(&self, what: Deadline) {
        match what {
            Deadline::CallExpiry(id) => {
                if let Err(e) = self.expire(&id).await {
                    tracing::warn!(call = %id, error = %e, "expiry failed; retrying in 1 s");
                    self.inner
                        .timer
                        .at(now() + Duration::seconds(1), Deadline::CallExpiry(id));
                }
            }
            Deadline::ChatEnd(id) => {
                if let Err(e) = self.chat_timeout(&id).await {
                    tracing::warn!(chat = %id, error = %e, "chat end failed; retrying in 1 s");
                    self.inner
                        .timer
                        .at(now() + Duration::seconds(1), Deadline::ChatEnd(id));
                }
            }
        }
    }

    /// Expires the invitation if it is still unanswered at its deadline.
    #[tracing::instrument(name = "call", skip_all, fields(id = %id))]
    async fn expire(&self, id: &CallId) -> Result<(), ApiError> {
        let now = now();
        let Some(found) = CallRepo.find(self.db().conn(), id.as_str()).await? else {
            return Ok(());
        };
        if found.call.next_deadline().is_none() {
            return Ok(());
        }
        let txn = self.db().begin_write().await?;
        let (mut schedule, mut entry) = lock_context(&txn, &found).await?;
        let Some(mut record) = CallRepo.lock(&*txn, id.as_str()).await? else {
            return Ok(());
        };
        let Some(t) = record.call.on_timeout(now) else {
            // Not due yet (a clock step) or already answered: look again
            // at the deadline, if there still is one.
            if let Some(at) = record.call.next_deadline() {
                self.inner.timer.at(at, Deadline::CallExpiry(id.clone()));
            }
            return Ok(());
        };
        let context = (schedule.as_mut(), entry.as_mut());
        let action = audit_action(record.origin.kind(), None);
        self.commit_call(txn, None, action, &record, t, context, now)
            .await
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
        for r in CallRepo.in_progress(self.db().conn()).await? {
            let c = &r.call;
            if presence.idle_for(&c.host.user_id) >= after
                && presence.idle_for(&c.guest.user_id) >= after
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
        let now = now();
        let Some(found) = CallRepo.find(self.db().conn(), id.as_str()).await? else {
            return Ok(false);
        };
        let txn = self.db().begin_write().await?;
        let (mut schedule, mut entry) = lock_context(&txn, &found).await?;
        let Some(mut record) = CallRepo.lock(&*txn, id.as_str()).await? else {
            return Ok(false);
        };
        let Some(t) = record.call.abandon(now) else {
            return Ok(false);
        };
        let action = match record.origin.kind() {
            CallKind::Tutoring => "session.abandon",
            CallKind::Queue | CallKind::Direct => "call.abandon",
        };
        let context = (schedule.as_mut(), entry.as_mut());
        self.commit_call(txn, None, action, &record, t, context, now)
            .await?;
        metrics::counter!(CALLS_ABANDONED, "kind" => record.origin.kind().as_str()).increment(1);
        tracing::info!("nobody connected any more: ended as abandoned");
        Ok(true)
    }

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
        let txn = self.db().begin_write().await?;
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
        let _ordered = self.inner.order.lock(order_key(&record)).await;
        commit(txn).await?;
        let other = record.call.party(side.other()).user_id.clone();
        let payload = PeerIdUpdated {
            call_session_id: record.call.id.to_string(),
            role: p.role.to_string(),
            peer_id: peer_id.to_owned(),
        };
        self.inner
            .notify
            .user(&other, "peer_id_updated", &payload)
            .await;
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

    /// A call of one of `kinds` that `p` takes part in, or any if `p` is an
    /// admin (who reads everything and moves nothing).
    pub(super) async fn visible_call(
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

    async fn call_of_kind(
        &self,
        call_id: &str,
        kinds: &[CallKind],
    ) -> Result<Option<CallRecord>, RepoError> {
        Ok(CallRepo
            .find(self.db().conn(), call_id)
            .await?
            .filter(|r| kinds.contains(&r.origin.kind())))
    }

    /// The host's latest call (the doctor's poll), or `None`.
    pub async fn host_status(&self, p: &Principal) -> Result<Option<CallView>, ApiError> {
        require_host(p)?;
        let latest = CallRepo
            .latest_for_host(self.db().conn(), p.user_id.as_str())
            .await?;
        Ok(latest.as_ref().map(CallView::from))
    }

    /// The caller's live invitation as invitee (the guest's poll), or `None`.
    pub async fn pending_invitation(&self, user: &UserId) -> Result<Option<CallView>, ApiError> {
        let pending = CallRepo
            .pending_for_invitee(self.db().conn(), user.as_str(), now())
            .await?;
        Ok(pending.as_ref().map(CallView::from))
    }

    /// The audit trail, for admins: one entity's transitions oldest first,
    /// or the latest across everything.
    pub async fn audit_logs(
        &self,
        p: &Principal,
        entity_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<AuditView>, ApiError> {
        if !p.is_admin() {
            return Err(ApiError::forbidden("only an admin may read the audit log"));
        }
        let conn = self.db().conn();
        let rows = match entity_id {
            Some(id) => AuditRepo.for_entity(conn, id, limit).await?,
            None => AuditRepo.latest(conn, limit).await?,
        };
        Ok(rows.into_iter().map(AuditView::from).collect())
    }

    /// A call of one of `kinds` that `p` takes part in.
    async fn participant_call(
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

    /// Writes a call transition and its queue follow-up, commits, and
    /// announces it, in commit order.
    #[allow(clippy::too_many_arguments)] // one transaction's worth of context
    async fn commit_call(
        &self,
        txn: WriteTxn,
        actor: Option<&Principal>,
        action: &str,
        record: &CallRecord,
        t: Transition<CallStatus>,
        (schedule, entry): (Option<&mut Schedule>, Option<&mut QueueEntry>),
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let announce = apply_call(&txn, actor, action, record, t, schedule, entry, now).await?;
        let _ordered = self.inner.order.lock(order_key(record)).await;
        commit(txn).await?;
        self.announce(announce).await;
        Ok(())
    }

    async fn announce(&self, a: Announce) {
        let c = &a.record.call;
        let kind = a.record.origin.kind();
        metrics::counter!(CALL_TRANSITIONS, "kind" => kind.as_str(), "to" => c.status.as_str())
            .increment(1);
        tracing::info!(call = %c.id, kind = kind.as_str(), status = c.status.as_str(), "call transition");
        if !c.status.is_live() {
            // Its sockets leave the signaling room before anyone is told.
            self.inner.rooms.close(&c.id);
        }
        let both = [&c.host.user_id, &c.guest.user_id];
        if kind == CallKind::Tutoring {
            // Seed 003 listened to `postgres_changes` UPDATEs; every change
            // is `session:updated` to both, and the learner also gets
            // `session:accepted`.
            let view = SessionView::from(&a.record);
            if TutoringStatus::of(c.status) == TutoringStatus::Accepted {
                self.inner
                    .notify
                    .user(&c.guest.user_id, "session:accepted", &view)
                    .await;
            }
            self.inner
                .notify
                .users(&both, "session:updated", &view)
                .await;
        } else {
            let view = CallView::from(&a.record);
            self.inner
                .notify
                .users(&both, call_event(c.status), &view)
                .await;
        }
        if let Some(news) = a.queue {
            self.push_queue(news).await;
        }
    }
}

/// The audit log's action for a move of a call of `kind`; `None` is the
/// server's own expiry.
fn audit_action(kind: CallKind, command: Option<CallCommand>) -> &'static str {
    use CallCommand as C;
    match (kind, command) {
        (CallKind::Tutoring, Some(C::Confirm)) => "session.accept",
        (CallKind::Tutoring, Some(C::Decline)) => "session.reject",
        (CallKind::Tutoring, Some(C::Cancel)) => "session.cancel",
        (CallKind::Tutoring, Some(C::Activate)) => "session.activate",
        (CallKind::Tutoring, Some(C::End)) => "session.end",
        (CallKind::Tutoring, None) => "session.expire",
        (_, Some(c)) => c.action(),
        (_, None) => "call.expire",
    }
}

/// The audit log's entity name for a call of `kind`.
fn audit_entity(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Tutoring => "session",
        CallKind::Queue | CallKind::Direct => "call_session",
    }
}

/// Stores a new invitation with its audit row, inside `txn`.
pub(super) async fn insert_call(
    txn: &DatabaseTransaction,
    p: &Principal,
    record: &CallRecord,
    now: Timestamp,
) -> Result<(), ApiError> {
    CallRepo.insert(txn, record).await?;
    let kind = record.origin.kind();
    let action = match kind {
        CallKind::Queue => "call.invite",
        CallKind::Direct => "call.start",
        CallKind::Tutoring => "session.create",
    };
    record_creation(
        txn,
        Some(p),
        action,
        audit_entity(kind),
        record.call.id.as_str(),
        record.call.status.as_str(),
        now,
    )
    .await
}

/// The ordering key of a call: its schedule's (so call and queue pushes of
/// one schedule stay in commit order), or its own.
fn order_key(r: &CallRecord) -> &str {
    r.origin
        .schedule_id()
        .map_or(r.call.id.as_str(), ScheduleId::as_str)
}

/// The event each call transition is announced with.
fn call_event(to: CallStatus) -> &'static str {
    use CallStatus as S;
    match to {
        S::Invited => "call_invitation",
        S::Confirmed => "call_confirmed",
        S::Active => "call_activated",
        S::Ended => "call_ended",
        S::Declined => "call_declined",
        S::Cancelled => "call_cancelled",
        S::Expired => "call_expired",
    }
}

/// Persists a call transition and what follows from it for the queue entry,
/// with their audit rows, inside `txn`.
#[allow(clippy::too_many_arguments)] // one transaction's worth of context
async fn apply_call(
    txn: &DatabaseTransaction,
    actor: Option<&Principal>,
    action: &str,
    record: &CallRecord,
    t: Transition<CallStatus>,
    schedule: Option<&mut Schedule>,
    entry: Option<&mut QueueEntry>,
    now: Timestamp,
) -> Result<Announce, ApiError> {
    CallRepo.apply(txn, &record.call, t).await?;
    record_transition(
        txn,
        actor,
        action,
        audit_entity(record.origin.kind()),
        record.call.id.as_str(),
        t,
        now,
    )
    .await?;
    let mut queue = None;
    if let (Some(schedule), Some(entry)) = (schedule, entry)
        && let Some(change) = entry.on_call(&record.call.id, t.to, schedule.is_open())
    {
        apply_entry(txn, actor, &entry.id, &change, now).await?;
        queue = Some(queue_snapshot(txn, schedule).await?);
    }
    Ok(Announce {
        record: record.clone(),
        queue,
    })
}

pub(super) async fn commit(txn: WriteTxn) -> Result<(), ApiError> {
    Ok(txn.commit().await?)
}

/// The audit row of a new entity (no `from` state).
pub(super) async fn record_creation(
    txn: &DatabaseTransaction,
    actor: Option<&Principal>,
    action: &str,
    entity: &str,
    id: &str,
    to: &str,
    now: Timestamp,
) -> Result<(), ApiError> {
    AuditRepo
        .record(txn, audit(actor, action, entity, id, None, to, now))
        .await?;
    Ok(())
}

pub(super) async fn record_transition<S: Status>(
    txn: &DatabaseTransaction,
    actor: Option<&Principal>,
    action: &str,
    entity: &str,
    id: &str,
    t: Transition<S>,
    now: Timestamp,
) -> Result<(), ApiError> {
    AuditRepo
        .record(
            txn,
            audit(
                actor,
                action,
                entity,
                id,
                Some(t.from.as_str()),
                t.to.as_str(),
                now,
            ),
        )
        .await?;
    Ok(())
}

async fn apply_entry(
    txn: &DatabaseTransaction,
    actor: Option<&Principal>,
    id: &EntryId,
    change: &EntryChange,
    now: Timestamp,
) -> Result<(), ApiError> {
    QueueRepo.apply(txn, id, change, now).await?;
    AuditRepo
        .record(
            txn,
            audit(
                actor,
                change.action,
                "queue_entry",
                id.as_str(),
                Some(change.from.status.as_str()),
                change.to.status.as_str(),
                now,
            ),
        )
        .await?;
    Ok(())
}

/// Locks an entry and its schedule (in that order: schedule first).
async fn lock_entry(
    txn: &DatabaseTransaction,
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
async fn lock_context(
    txn: &DatabaseTransaction,
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
