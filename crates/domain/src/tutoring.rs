//! Tutoring-style sessions (CONTRACT §6): a learner asks a teacher
//! for a session now; the teacher accepts or rejects within the TTL.
//!
//! A session *is* a call — learner inviter, teacher invitee — run by the one
//! machine of [`crate::call`]; this module is its vocabulary:
//!
//! ```text
//! call       INVITED  CONFIRMED/ACTIVE  ENDED  DECLINED  CANCELLED  EXPIRED
//! session    pending  accepted          ended  rejected  cancelled  cancelled
//! end_reason –        –                 ended  rejected  cancelled  expired
//! ```
//!
//! accept = confirm, reject = decline, cancel = cancel, end = end. the tutoring request app's
//! "only update if still pending" is the call's compare-and-set on INVITED.

use crate::call::{CallCommand, CallStatus};
use crate::transition::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TutoringStatus {
    Pending,
    Accepted,
    Rejected,
    Cancelled,
    Ended,
}

impl Status for TutoringStatus {
    const ALL: &'static [Self] = &[
        Self::Pending,
        Self::Accepted,
        Self::Rejected,
        Self::Cancelled,
        Self::Ended,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Ended => "ended",
        }
    }
}

impl TutoringStatus {
    /// How a call in `status` shows as a session.
    pub fn of(status: CallStatus) -> Self {
        use CallStatus as C;
        match status {
            C::Invited => Self::Pending,
            C::Confirmed | C::Active => Self::Accepted,
            C::Ended => Self::Ended,
            C::Declined => Self::Rejected,
            C::Cancelled | C::Expired => Self::Cancelled,
        }
    }

    /// The call statuses that show as `self` (for `?status=` filters).
    pub fn call_statuses(self) -> &'static [CallStatus] {
        use CallStatus as C;
        match self {
            Self::Pending => &[C::Invited],
            Self::Accepted => &[C::Confirmed, C::Active],
            Self::Ended => &[C::Ended],
            Self::Rejected => &[C::Declined],
            Self::Cancelled => &[C::Cancelled, C::Expired],
        }
    }
}

/// Why a session is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    Cancelled,
    Rejected,
    Ended,
    /// Nobody answered before `expires_at`.
    Expired,
    /// Accepted, then nobody stayed connected (the server ended it).
    Abandoned,
}

impl EndReason {
    pub fn of(status: CallStatus) -> Option<Self> {
        use CallStatus as C;
        match status {
            C::Invited | C::Confirmed | C::Active => None,
            C::Ended => Some(Self::Ended),
            C::Declined => Some(Self::Rejected),
            C::Cancelled => Some(Self::Cancelled),
            C::Expired => Some(Self::Expired),
        }
    }

    /// Why `call` is over: its status says it, unless the server ended it
    /// as abandoned.
    pub fn of_call(call: &crate::Call) -> Option<Self> {
        if call.abandoned {
            return Some(Self::Abandoned);
        }
        Self::of(call.status)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Abandoned => "abandoned",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
            Self::Ended => "ended",
            Self::Expired => "expired",
        }
    }
}

/// What a participant asks of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TutoringCommand {
    /// The teacher takes the request.
    Accept,
    /// The teacher turns it down.
    Reject,
    /// The learner withdraws it.
    Cancel,
    /// Either side, once accepted.
    End,
}

impl TutoringCommand {
    pub const ALL: &'static [Self] = &[Self::Accept, Self::Reject, Self::Cancel, Self::End];

    pub fn call_command(self) -> CallCommand {
        match self {
            Self::Accept => CallCommand::Confirm,
            Self::Reject => CallCommand::Decline,
            Self::Cancel => CallCommand::Cancel,
            Self::End => CallCommand::End,
        }
    }
}

/// What the learner asks to be taught; shown to the teacher.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SkillName(String);

impl SkillName {
    pub const MAX_CHARS: usize = 200;

    /// Trimmed; empty, over-long or control-character names are refused.
    pub fn parse(raw: &str) -> Option<Self> {
        let name = raw.trim();
        let usable = !name.is_empty()
            && name.chars().count() <= Self::MAX_CHARS
            && !name.chars().any(char::is_control);
        usable.then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::call::{Call, CallError, Party, Side};
    use crate::ids::CallId;
    use crate::test_support::{t0, user};

    fn session_in(status: CallStatus) -> Call {
        let mut c = Call::invite(
            CallId::new("s1"),
            Party::new(user("teacher"), None),
            Party::new(user("learner"), None),
            Side::Guest,
            t0(),
            Duration::seconds(60),
        )
        .unwrap();
        c.status = status;
        c
    }

    /// the tutoring request app's whole flow, written in session words, checked against the
    /// call machine for every status a session can be in, every command and
    /// every actor.
    #[test]
    fn every_session_status_command_and_actor() {
        use TutoringCommand as T;
        use TutoringStatus as S;
        let now = t0() + Duration::seconds(5);
        for &status in CallStatus::ALL {
            for &cmd in T::ALL {
                for actor in ["teacher", "learner", "stranger"] {
                    let mut call = session_in(status);
                    let before = call.clone();
                    let got = call.handle(&user(actor), cmd.call_command(), now);
                    let shown = S::of(status);
                    let expected: Result<Option<S>, &str> = match (actor, cmd) {
                        ("stranger", _) => Err("not found"),
                        ("learner", T::Accept | T::Reject) => Err("teacher only"),
                        ("teacher", T::Cancel) => Err("learner only"),
                        _ => match (status, cmd) {
                            (CallStatus::Invited, T::Accept) => Ok(Some(S::Accepted)),
                            (CallStatus::Invited, T::Reject) => Ok(Some(S::Rejected)),
                            (CallStatus::Invited, T::Cancel) => Ok(Some(S::Cancelled)),
                            (CallStatus::Confirmed | CallStatus::Active, T::End) => {
                                Ok(Some(S::Ended))
                            }
                            (CallStatus::Ended, T::End) => Ok(None),
                            (CallStatus::Expired, T::Accept | T::Reject | T::Cancel) => {
                                Err("expired")
                            }
                            _ => Err("conflict"),
                        },
                    };
                    let label = format!("{shown:?} ({status:?}) {cmd:?} by {actor}");
                    match (&got, expected) {
                        (Ok(Some(t)), Ok(Some(to))) => {
                            assert_eq!(S::of(t.to), to, "{label}");
                        }
                        (Ok(None), Ok(None)) => assert_eq!(call, before, "{label}"),
                        (Err(e), Err(kind)) => {
                            let got_kind = match e {
                                CallError::NotParticipant => "not found",
                                CallError::WrongParty("invitee") => "teacher only",
                                CallError::WrongParty(_) => "learner only",
                                CallError::Expired => "expired",
                                CallError::Illegal { .. } => "conflict",
                                other => panic!("{label}: unexpected {other:?}"),
                            };
                            assert_eq!(got_kind, kind, "{label}");
                            assert_eq!(call, before, "{label}: nothing may change");
                        }
                        (got, expected) => panic!("{label}: got {got:?}, expected {expected:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn an_unanswered_request_is_cancelled_with_reason_expired() {
        let mut c = session_in(CallStatus::Invited);
        let deadline = c.expires_at;
        assert_eq!(c.on_timeout(deadline - Duration::milliseconds(1)), None);
        let t = c.on_timeout(deadline).unwrap();
        assert_eq!(TutoringStatus::of(t.to), TutoringStatus::Cancelled);
        assert_eq!(EndReason::of(t.to), Some(EndReason::Expired));
        // Accepting at or after the deadline is "expired" even before the
        // timer ran.
        let mut late = session_in(CallStatus::Invited);
        assert_eq!(
            late.handle(&user("teacher"), CallCommand::Confirm, deadline),
            Err(CallError::Expired)
        );
    }

    #[test]
    fn statuses_and_reasons_cover_every_call_status() {
        for &s in TutoringStatus::ALL {
            assert_eq!(TutoringStatus::parse(s.as_str()), Some(s));
            for &c in s.call_statuses() {
                assert_eq!(TutoringStatus::of(c), s);
            }
        }
        for &c in CallStatus::ALL {
            let s = TutoringStatus::of(c);
            assert!(s.call_statuses().contains(&c));
            // Over exactly when it has a reason.
            let over = matches!(
                s,
                TutoringStatus::Rejected | TutoringStatus::Cancelled | TutoringStatus::Ended
            );
            assert_eq!(EndReason::of(c).is_some(), over, "{c:?}");
        }
    }

    #[test]
    fn skill_names_are_trimmed_and_bounded() {
        assert_eq!(SkillName::parse("  Piano ").unwrap().as_str(), "Piano");
        assert!(SkillName::parse(&"é".repeat(200)).is_some());
        for bad in ["", "  ", "a\nb", &"x".repeat(201)] {
            assert_eq!(SkillName::parse(bad), None, "{bad:?}");
        }
    }
}
