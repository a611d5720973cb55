//! Direct calls without an appointment (CONTRACT §5): a guest
//! calls a host now. The call runs the same machine, table, timer and
//! events as a queue call; only the way in differs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::Duration;
use consultd_domain::{
    AppointmentId, Busy, CallId, CallKind, CallOrigin, DirectStart, Party, Principal, Side,
    Timestamp, UserId, start_direct_call,
};
use consultd_persistence::{CallRecord, CallRepo, Conn};

use super::call::{CallService, CallType, insert_call};
use super::context::{Context, new_id, require_guest};
use super::outbox::Push;
use super::views::CallView;
use crate::error::ApiError;

/// How often a start that lost a unique-index race is tried again.
const RACE_RETRIES: usize = 3;

/// How many keys past a taken one a generated key may move.
const GENERATED_KEY_TRIES: usize = 16;

#[derive(Clone)]
pub struct DirectService {
    ctx: Arc<Context>,
    calls: CallService,
    /// How long a call invitation waits for an answer.
    invite_ttl: Duration,
    /// The millisecond of the last `direct_session_<ms>` key made here, so
    /// this node never makes the same key twice.
    last_key_ms: Arc<AtomicI64>,
}

impl DirectService {
    pub fn new(calls: CallService, invite_ttl: Duration) -> Self {
        Self {
            ctx: calls.ctx.clone(),
            calls,
            invite_ttl,
            last_key_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// `POST /api/call-sessions/start` by a guest. Returns the call and
    /// whether it is new (201) or the caller's live one (200).
    #[tracing::instrument(name = "direct_call", skip_all)]
    pub async fn start_direct_call(
        &self,
        p: &Principal,
        host_id: &str,
        appointment: Option<AppointmentId>,
        call_type: CallType,
    ) -> Result<(CallView, bool), ApiError> {
        require_guest(p)?;
        let host = UserId::new(host_id)
            .ok_or_else(|| ApiError::bad_request("doctor_id is not a usable user id"))?;
        for _ in 0..RACE_RETRIES {
            match self
                .try_start_direct(p, &host, appointment.as_ref(), call_type)
                .await?
            {
                Some(answer) => return Ok(answer),
                // Lost a race on the unique indexes (PostgreSQL lets two
                // requests read before either writes). If the winner was
                // this caller's own double tap, it is the answer.
                None => {
                    let conn = self.ctx.db.conn();
                    if let Some(live) = live_direct(conn, p, &host, appointment.as_ref()).await?
                        && live.call.guest.user_id == p.user_id
                    {
                        return Ok((CallView::from(&live), false));
                    }
                    // A key the caller chose is theirs to keep: 409. A key
                    // consultd made may have met another caller's key made
                    // in the same millisecond: make another.
                    if appointment.is_some() {
                        break;
                    }
                }
            }
        }
        Err(ApiError::Conflict(
            "the doctor, the caller or the appointment is in another call".into(),
        ))
    }

    /// One try: the call and whether it is new, or `None` when the insert
    /// lost a unique-index race to a concurrent start.
    async fn try_start_direct(
        &self,
        p: &Principal,
        host: &UserId,
        appointment: Option<&AppointmentId>,
        call_type: CallType,
    ) -> Result<Option<(CallView, bool)>, ApiError> {
        let now = self.ctx.now();
        let txn = self.ctx.db.begin_write().await?;
        // "Busy" is read before the live call it may be about: under READ
        // COMMITTED a concurrent start that commits in between then shows
        // up in the second read (a resume), never as "busy" without it.
        let busy = Busy {
            host: CallRepo.has_live(&*txn, Side::Host, host.as_str()).await?,
            guest: CallRepo
                .has_live(&*txn, Side::Guest, p.user_id.as_str())
                .await?,
        };
        let live = live_direct(&*txn, p, host, appointment).await?;
        let appointment_id = match (appointment, &live) {
            (Some(given), _) => given.clone(),
            (None, Some(live)) => live
                .origin
                .appointment_id()
                .cloned()
                .unwrap_or_else(|| AppointmentId::generate(now)),
            (None, None) => self.free_generated_key(&*txn, now).await?,
        };
        let caller = Party::new(p.user_id.clone(), p.name.clone());
        let decision = start_direct_call(
            caller,
            Party::new(host.clone(), None),
            live.as_ref().map(|r| &r.call),
            busy,
            CallId::new(new_id()),
            now,
            self.invite_ttl,
        )?;
        let call = match (decision, live) {
            (DirectStart::Invite(call), _) => *call,
            (DirectStart::Resume, Some(live)) => {
                return Ok(Some((CallView::from(&live), false)));
            }
            (DirectStart::Resume, None) => {
                return Err(ApiError::internal("resume without a live call"));
            }
        };
        let record = CallRecord {
            room_id: call.id.to_string(),
            call,
            origin: CallOrigin::Direct { appointment_id },
            call_type: call_type.as_str().to_owned(),
        };
        match insert_call(&*txn, &self.ctx.journal, p, &record, now).await {
            Err(ApiError::Conflict(_)) => return Ok(None),
            other => other?,
        }
        let view = CallView::from(&record);
        let host = &record.call.host.user_id;
        let invitation = self
            .calls
            .invitation(&record, host, Push::CallInvitation(view.clone()));
        self.ctx
            .commit_with(txn, record.call.id.as_str(), invitation)
            .await?;
        self.calls.invited(&record);
        Ok(Some((view, true)))
    }
}

/// The live direct call a start request names: the one holding its
/// appointment id or, without one, the caller's own live direct call to
/// this host (so a double tap without a key is not a second call).
async fn live_direct<C: Conn>(
    db: &C,
    p: &Principal,
    host: &UserId,
    appointment: Option<&AppointmentId>,
) -> Result<Option<CallRecord>, ApiError> {
    Ok(match appointment {
        Some(key) => CallRepo.live_for_appointment(db, key.as_str()).await?,
        None => CallRepo
            .live_call(db, Side::Guest, p.user_id.as_str())
            .await?
            .filter(|r| r.origin.kind() == CallKind::Direct && &r.call.host.user_id == host),
    })
}

impl DirectService {
    /// A `direct_session_<ms>` key: now, or one millisecond past the last
    /// key this node made, whichever is later (two starts in the same
    /// millisecond get different keys); then past any key a live call
    /// holds (another node's, or a caller's own). The unique index decides
    /// in the end.
    async fn free_generated_key<C: Conn>(
        &self,
        db: &C,
        now: Timestamp,
    ) -> Result<AppointmentId, ApiError> {
        let next = || {
            let now_ms = now.timestamp_millis();
            let last = &self.last_key_ms;
            let ms = match last.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |prev| {
                Some(now_ms.max(prev + 1))
            }) {
                Ok(prev) | Err(prev) => now_ms.max(prev + 1),
            };
            AppointmentId::generate(now + Duration::milliseconds(ms - now_ms))
        };
        let mut key = next();
        for _ in 0..GENERATED_KEY_TRIES {
            if CallRepo
                .live_for_appointment(db, key.as_str())
                .await?
                .is_none()
            {
                break;
            }
            key = next();
        }
        Ok(key)
    }
}
