//! Direct calls without an appointment (CONTRACT §5, seed 000): a guest
//! calls a host now. The call runs the same machine, table, timer and
//! events as a queue call; only the way in differs.

use chrono::Duration;
use consultd_domain::{
    AppointmentId, Busy, CallId, CallKind, CallOrigin, DirectError, DirectStart, Party, Principal,
    Side, UserId, start_direct_call,
};
use consultd_persistence::{CallRecord, CallRepo, ConnectionTrait};

use super::consult::{CallType, ConsultService, commit, insert_call, require_guest};
use super::views::CallView;
use super::{new_id, now};
use crate::error::ApiError;

/// How many milliseconds forward a generated `direct_session_<ms>` key may
/// move to avoid another caller's live key made in the same millisecond.
const GENERATED_KEY_TRIES: i64 = 16;

impl From<DirectError> for ApiError {
    fn from(e: DirectError) -> Self {
        match e {
            DirectError::SelfCall => ApiError::bad_request(e.to_string()),
            DirectError::AppointmentTaken | DirectError::HostBusy | DirectError::CallerBusy => {
                ApiError::Conflict(e.to_string())
            }
        }
    }
}

impl ConsultService {
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
        match self
            .try_start_direct(p, &host, appointment.as_ref(), call_type)
            .await
        {
            // Lost a race on the unique indexes (PostgreSQL lets two
            // requests read before either writes). If the winner was this
            // caller's own double tap, it is the answer.
            Err(ApiError::Conflict(msg)) => {
                let conn = self.db().conn();
                match live_direct(conn, p, &host, appointment.as_ref()).await? {
                    Some(live) if live.call.guest.user_id == p.user_id => {
                        Ok((CallView::from(&live), false))
                    }
                    _ => Err(ApiError::Conflict(msg)),
                }
            }
            other => other,
        }
    }

    async fn try_start_direct(
        &self,
        p: &Principal,
        host: &UserId,
        appointment: Option<&AppointmentId>,
        call_type: CallType,
    ) -> Result<(CallView, bool), ApiError> {
        let now = now();
        let txn = self.db().begin_write().await?;
        let live = live_direct(&*txn, p, host, appointment).await?;
        let appointment_id = match (appointment, &live) {
            (Some(given), _) => given.clone(),
            (None, Some(live)) => live
                .origin
                .appointment_id()
                .cloned()
                .unwrap_or_else(|| AppointmentId::generate(now)),
            (None, None) => free_generated_key(&*txn, now).await?,
        };
        let busy = Busy {
            host: CallRepo.has_live(&*txn, Side::Host, host.as_str()).await?,
            guest: CallRepo
                .has_live(&*txn, Side::Guest, p.user_id.as_str())
                .await?,
        };
        let caller = Party::new(p.user_id.clone(), p.name.clone());
        let decision = start_direct_call(
            caller,
            Party::new(host.clone(), None),
            live.as_ref().map(|r| &r.call),
            busy,
            CallId::new(new_id()),
            now,
            self.inner.invite_ttl,
        )?;
        let call = match (decision, live) {
            (DirectStart::Invite(call), _) => *call,
            (DirectStart::Resume, Some(live)) => return Ok((CallView::from(&live), false)),
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
        insert_call(&txn, p, &record, now).await?;
        let _ordered = self.inner.order.lock(record.call.id.as_str()).await;
        commit(txn).await?;

        self.invited(&record);
        let view = CallView::from(&record);
        self.inner
            .notify
            .user(&record.call.host.user_id, "call_invitation", &view)
            .await;
        Ok((view, true))
    }
}

/// The live direct call a start request names: the one holding its
/// appointment id or, without one, the caller's own live direct call to
/// this host (so a double tap without a key is not a second call).
async fn live_direct<C: ConnectionTrait>(
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

/// `direct_session_<ms>` for now, or a millisecond later if another caller
/// holds that key; the unique index still decides in the end.
async fn free_generated_key<C: ConnectionTrait>(
    db: &C,
    now: consultd_domain::Timestamp,
) -> Result<AppointmentId, ApiError> {
    let mut key = AppointmentId::generate(now);
    for step in 1..=GENERATED_KEY_TRIES {
        if CallRepo
            .live_for_appointment(db, key.as_str())
            .await?
            .is_none()
        {
            break;
        }
        key = AppointmentId::generate(now + Duration::milliseconds(step));
    }
    Ok(key)
}
