//! A guest's place in a schedule's queue, and the rules that tie the queue
//! to its calls.
//!
//! ```text
//!            ready on              invited: stays READY     confirm
//! WAITING ◀─────────────▶ READY ─────────────────────────────────────▶ IN_CALL ──call ends──▶ DONE
//!            ready off      ▲ decline / cancel / expiry: back to WAITING      │
//!                           └─ host reset: WAITING (from READY or DONE) ◀─────┘
//! ```
//! An entry remembers its live call (`call_id`), so "toggling off while
//! invited" and "a second invitation for the same entry" are decided by the
//! entry itself, and the store's compare-and-set on (status, call_id) makes
//! them race-free.

use chrono::Duration;

use crate::audit::AuditAction;
use crate::call::{Busy, Call, CallError, CallStatus, Party, Side};
use crate::identity::UserId;
use crate::ids::{CallId, EntryId, ScheduleId};
pub use crate::schedule::QueueError;
use crate::schedule::{Schedule, ScheduleStatus};
use crate::time::Timestamp;
use crate::transition::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryStatus {
    Waiting,
    Ready,
    InCall,
    Done,
}

impl Status for EntryStatus {
    const ALL: &'static [Self] = &[Self::Waiting, Self::Ready, Self::InCall, Self::Done];

    fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "WAITING",
            Self::Ready => "READY",
            Self::InCall => "IN_CALL",
            Self::Done => "DONE",
        }
    }
}

impl QueueError {
    const SCHEDULE_COMPLETED: Self = Self::Illegal("the schedule is completed");
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub id: EntryId,
    pub schedule_id: ScheduleId,
    pub patient_id: UserId,
    pub patient_name: Option<String>,
    pub status: EntryStatus,
    /// The live call this entry is invited to or in.
    pub call_id: Option<CallId>,
    pub joined_at: Timestamp,
}

/// An entry's state as the store compares it: status and live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryState {
    pub status: EntryStatus,
    pub call_id: Option<CallId>,
}

/// A change of an entry, with the state it must still be in to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryChange {
    pub action: AuditAction,
    pub from: EntryState,
    pub to: EntryState,
}

impl QueueEntry {
    /// A new entry at the back of `schedule`'s queue. Joining twice is the
    /// store's business (it returns the live entry); a completed schedule
    /// takes nobody.
    pub fn join(
        id: EntryId,
        schedule: &Schedule,
        patient_id: UserId,
        patient_name: Option<String>,
        now: Timestamp,
    ) -> Result<Self, QueueError> {
        if !schedule.is_open() {
            return Err(QueueError::SCHEDULE_COMPLETED);
        }
        Ok(Self {
            id,
            schedule_id: schedule.id.clone(),
            patient_id,
            patient_name,
            status: EntryStatus::Waiting,
            call_id: None,
            joined_at: now,
        })
    }

    pub fn state(&self) -> EntryState {
        EntryState {
            status: self.status,
            call_id: self.call_id.clone(),
        }
    }

    pub fn is_live(&self) -> bool {
        self.status != EntryStatus::Done
    }

    /// The guest's "ready" switch. `Ok(None)` is an accepted no-op.
    pub fn set_ready(
        &mut self,
        actor: &UserId,
        ready: bool,
    ) -> Result<Option<EntryChange>, QueueError> {
        if actor != &self.patient_id {
            return Err(QueueError::NotYours);
        }
        use EntryStatus as E;
        match (self.status, ready) {
            (E::Waiting, true) => Ok(Some(self.change(AuditAction::QueueReady, E::Ready, None))),
            (E::Ready, false) if self.call_id.is_some() => Err(QueueError::Illegal(
                "you are invited to a call; answer the invitation first",
            )),
            (E::Ready, false) => Ok(Some(self.change(
                AuditAction::QueueUnready,
                E::Waiting,
                None,
            ))),
            (E::Waiting, false) | (E::Ready, true) => Ok(None),
            (E::InCall, _) => Err(QueueError::Illegal("you are in a call")),
            (E::Done, _) => Err(QueueError::Illegal("this queue entry is done")),
        }
    }

    /// The host puts the entry back to `WAITING` (from `READY` or `DONE`),
    /// e.g. so a guest can rejoin after a call. Refused while a call is live.
    pub fn reset(&mut self, schedule: &Schedule) -> Result<Option<EntryChange>, QueueError> {
        if self.call_id.is_some() {
            return Err(QueueError::Illegal("the entry has a live call"));
        }
        if !schedule.is_open() {
            return Err(QueueError::SCHEDULE_COMPLETED);
        }
        match self.status {
            EntryStatus::Waiting => Ok(None),
            EntryStatus::Ready | EntryStatus::Done => Ok(Some(self.change(
                AuditAction::QueueReset,
                EntryStatus::Waiting,
                None,
            ))),
            // IN_CALL always has a live call, refused above.
            EntryStatus::InCall => Err(QueueError::Illegal("the entry has a live call")),
        }
    }

    /// Ending the schedule closes entries that are only waiting.
    pub fn close(&mut self) -> Option<EntryChange> {
        let waiting = matches!(self.status, EntryStatus::Waiting | EntryStatus::Ready);
        (waiting && self.call_id.is_none())
            .then(|| self.change(AuditAction::QueueClose, EntryStatus::Done, None))
    }

    /// Follows a transition of this entry's live call.
    pub fn on_call(
        &mut self,
        call_id: &CallId,
        call_to: CallStatus,
        schedule_open: bool,
    ) -> Option<EntryChange> {
        if self.call_id.as_ref() != Some(call_id) {
            return None;
        }
        use CallStatus as C;
        use EntryStatus as E;
        match (self.status, call_to) {
            (E::Ready, C::Confirmed) => {
                Some(self.change(AuditAction::QueueInCall, E::InCall, Some(call_id.clone())))
            }
            (E::Ready, C::Declined | C::Cancelled | C::Expired) => {
                let to = if schedule_open { E::Waiting } else { E::Done };
                Some(self.change(AuditAction::QueueRequeue, to, None))
            }
            (E::InCall, C::Ended) => Some(self.change(AuditAction::QueueDone, E::Done, None)),
            _ => None,
        }
    }

    fn change(
        &mut self,
        action: AuditAction,
        to: EntryStatus,
        call_id: Option<CallId>,
    ) -> EntryChange {
        let from = self.state();
        self.status = to;
        self.call_id = call_id;
        EntryChange {
            action,
            from,
            to: self.state(),
        }
    }
}

/// A host invites the guest of `entry` (CONTRACT §4 `start-call`): the
/// schedule must be theirs and online, the entry `READY` and not yet
/// invited, and neither participant in another live call.
#[allow(clippy::too_many_arguments)] // every input is a distinct fact the rule needs
pub fn start_queue_call(
    schedule: &Schedule,
    actor: &Party,
    entry: &mut QueueEntry,
    busy: Busy,
    call_id: CallId,
    now: Timestamp,
    ttl: Duration,
) -> Result<(Call, EntryChange), QueueError> {
    if !schedule.is_owned_by(&actor.user_id) || entry.schedule_id != schedule.id {
        return Err(QueueError::NotYours);
    }
    if schedule.status != ScheduleStatus::Online {
        return Err(QueueError::Illegal("the schedule is not online"));
    }
    if entry.call_id.is_some() {
        return Err(QueueError::Illegal("this patient is already invited"));
    }
    if entry.status != EntryStatus::Ready {
        return Err(QueueError::Illegal("the patient is not ready"));
    }
    if busy.host {
        return Err(QueueError::Illegal("you already have a live call"));
    }
    if busy.guest {
        return Err(QueueError::Illegal("the patient is in another call"));
    }
    let guest = Party::new(entry.patient_id.clone(), entry.patient_name.clone());
    let call =
        Call::invite(call_id.clone(), actor.clone(), guest, Side::Host, now, ttl).map_err(|e| {
            match e {
                CallError::SelfCall => QueueError::BadInput("you cannot call yourself"),
                _ => QueueError::Illegal("the call cannot be made"),
            }
        })?;
    let change = entry.change(AuditAction::QueueInvite, EntryStatus::Ready, Some(call_id));
    Ok((call, change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Slot;
    use crate::test_support::{t0, user};

    fn schedule(status: ScheduleStatus) -> Schedule {
        let mut s = Schedule::create(
            ScheduleId::new("s1"),
            user("doc"),
            Slot::parse("2026-11-21", "09:00", "17:00").unwrap(),
            t0(),
        );
        s.status = status;
        s
    }
    fn entry(status: EntryStatus, invited: bool) -> QueueEntry {
        let mut e = QueueEntry::join(
            EntryId::new("e1"),
            &schedule(ScheduleStatus::Online),
            user("pat"),
            None,
            t0(),
        )
        .unwrap();
        e.status = status;
        e.call_id = invited.then(|| CallId::new("c1"));
        e
    }
    /// The states an entry can really be in (IN_CALL always has its call,
    /// DONE and WAITING never do).
    fn reachable() -> Vec<(EntryStatus, bool)> {
        vec![
            (EntryStatus::Waiting, false),
            (EntryStatus::Ready, false),
            (EntryStatus::Ready, true),
            (EntryStatus::InCall, true),
            (EntryStatus::Done, false),
        ]
    }

    #[test]
    fn joining_needs_an_open_schedule() {
        for &s in ScheduleStatus::ALL {
            let got = QueueEntry::join(EntryId::new("e"), &schedule(s), user("p"), None, t0());
            assert_eq!(got.is_ok(), s != ScheduleStatus::Completed, "{s:?}");
        }
    }

    #[test]
    fn ready_switch_in_every_state() {
        use EntryStatus as E;
        for (status, invited) in reachable() {
            for ready in [true, false] {
                let mut e = entry(status, invited);
                let before = e.clone();
                let got = e.set_ready(&user("pat"), ready);
                let expected = match (status, invited, ready) {
                    (E::Waiting, _, true) => Ok(Some(E::Ready)),
                    (E::Ready, false, false) => Ok(Some(E::Waiting)),
                    (E::Waiting, _, false) | (E::Ready, _, true) => Ok(None),
                    _ => Err(()),
                };
                let label = format!("{status:?} invited={invited} ready={ready}");
                match (got, expected) {
                    (Ok(Some(c)), Ok(Some(to))) => {
                        assert_eq!(c.from, before.state(), "{label}");
                        assert_eq!(c.to.status, to, "{label}");
                        assert_eq!(e.status, to, "{label}");
                    }
                    (Ok(None), Ok(None)) => assert_eq!(e, before, "{label}"),
                    (Err(QueueError::Illegal(_)), Err(())) => assert_eq!(e, before, "{label}"),
                    (got, expected) => panic!("{label}: got {got:?}, expected {expected:?}"),
                }
                // Another user's entry is not theirs to switch.
                let mut e = entry(status, invited);
                assert_eq!(e.set_ready(&user("eve"), ready), Err(QueueError::NotYours));
            }
        }
    }

    #[test]
    fn reset_close_and_call_follow_ups_in_every_state() {
        use CallStatus as C;
        use EntryStatus as E;
        let call = CallId::new("c1");
        for (status, invited) in reachable() {
            let label = format!("{status:?} invited={invited}");
            // Host reset.
            for &sched in ScheduleStatus::ALL {
                let mut e = entry(status, invited);
                let got = e.reset(&schedule(sched));
                match (status, invited, sched) {
                    (_, true, _) | (_, _, ScheduleStatus::Completed) => {
                        assert!(
                            matches!(got, Err(QueueError::Illegal(_))),
                            "{label} {sched:?}"
                        )
                    }
                    (E::Waiting, false, _) => assert_eq!(got, Ok(None), "{label}"),
                    (E::Ready | E::Done, false, _) => {
                        assert_eq!(got.unwrap().unwrap().to.status, E::Waiting, "{label}")
                    }
                    _ => unreachable!("{label}"),
                }
            }
            // Schedule end.
            let mut e = entry(status, invited);
            let closed = e.close().map(|c| c.to.status);
            let expect = (matches!(status, E::Waiting | E::Ready) && !invited).then_some(E::Done);
            assert_eq!(closed, expect, "close {label}");
            // Every call transition, schedule open or not.
            for &to in CallStatus::ALL {
                for open in [true, false] {
                    let mut e = entry(status, invited);
                    let got = e
                        .on_call(&call, to, open)
                        .map(|c| (c.to.status, c.to.call_id.is_some()));
                    let expect = match (status, invited, to) {
                        (E::Ready, true, C::Confirmed) => Some((E::InCall, true)),
                        (E::Ready, true, C::Declined | C::Cancelled | C::Expired) => {
                            Some((if open { E::Waiting } else { E::Done }, false))
                        }
                        (E::InCall, true, C::Ended) => Some((E::Done, false)),
                        _ => None,
                    };
                    assert_eq!(got, expect, "{label} call→{to:?} open={open}");
                }
            }
            // Another call's transitions are not this entry's business.
            let mut e = entry(status, invited);
            assert_eq!(e.on_call(&CallId::new("other"), C::Ended, true), None);
        }
    }

    #[test]
    fn start_call_rules() {
        let doc = Party::new(user("doc"), Some("Dr".into()));
        let ttl = Duration::seconds(60);
        let ok = |e: &mut QueueEntry, s: &Schedule, busy: Busy| {
            start_queue_call(s, &doc, e, busy, CallId::new("c9"), t0(), ttl)
        };
        let online = schedule(ScheduleStatus::Online);
        // The happy case: the entry stays READY and remembers its call.
        let mut e = entry(EntryStatus::Ready, false);
        let (call, change) = ok(&mut e, &online, Busy::default()).unwrap();
        assert_eq!(call.status, CallStatus::Invited);
        assert_eq!(call.inviter, Side::Host);
        assert_eq!(call.invitee().user_id, user("pat"));
        assert_eq!(call.expires_at, t0() + ttl);
        assert_eq!(
            change.to,
            EntryState {
                status: EntryStatus::Ready,
                call_id: Some(CallId::new("c9"))
            }
        );
        assert_eq!(e.call_id, Some(CallId::new("c9")));
        // Every refusal changes nothing.
        let cases: Vec<(Schedule, (EntryStatus, bool), Busy, Party)> = vec![
            (
                schedule(ScheduleStatus::Upcoming),
                (EntryStatus::Ready, false),
                Busy::default(),
                doc.clone(),
            ),
            (
                schedule(ScheduleStatus::Completed),
                (EntryStatus::Ready, false),
                Busy::default(),
                doc.clone(),
            ),
            (
                online.clone(),
                (EntryStatus::Waiting, false),
                Busy::default(),
                doc.clone(),
            ),
            (
                online.clone(),
                (EntryStatus::Ready, true),
                Busy::default(),
                doc.clone(),
            ),
            (
                online.clone(),
                (EntryStatus::InCall, true),
                Busy::default(),
                doc.clone(),
            ),
            (
                online.clone(),
                (EntryStatus::Done, false),
                Busy::default(),
                doc.clone(),
            ),
            (
                online.clone(),
                (EntryStatus::Ready, false),
                Busy {
                    host: true,
                    guest: false,
                },
                doc.clone(),
            ),
            (
                online.clone(),
                (EntryStatus::Ready, false),
                Busy {
                    host: false,
                    guest: true,
                },
                doc.clone(),
            ),
            (
                online.clone(),
                (EntryStatus::Ready, false),
                Busy::default(),
                Party::new(user("eve"), None),
            ),
        ];
        for (i, (s, (status, invited), busy, actor)) in cases.into_iter().enumerate() {
            let mut e = entry(status, invited);
            let before = e.clone();
            let got = start_queue_call(&s, &actor, &mut e, busy, CallId::new("c9"), t0(), ttl);
            assert!(got.is_err(), "case {i}");
            assert_eq!(e, before, "case {i}");
        }
    }
}
