//! The call session machine (CONTRACT §4), shared by queue calls (§4),
//! direct calls (§5) and anything else that invites someone to talk.
//!
//! ```text
//!            confirm (invitee)          activate            end
//! INVITED ───────────────────▶ CONFIRMED ────────▶ ACTIVE ──────▶ ENDED
//!    │ decline (invitee) ▶ DECLINED      └──────── end ──────────────▲
//!    │ cancel (inviter)  ▶ CANCELLED
//!    └ timer at expiresAt ▶ EXPIRED
//! ```
//!
//! A call has a host (doctor, teacher, mechanic) and a guest, and one of
//! them is the *inviter*: the host in a queue call, the guest in a direct
//! call. Who may confirm, decline or cancel follows the invitation, not the
//! role. `activate` on `ACTIVE` and `end` on `ENDED` are no-ops because both
//! sides send them.

use chrono::Duration;

use crate::audit::AuditAction;
use crate::identity::UserId;
use crate::ids::CallId;
use crate::time::Timestamp;
use crate::transition::{Status, Transition};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    Invited,
    Confirmed,
    Active,
    Ended,
    Declined,
    Cancelled,
    Expired,
}

impl Status for CallStatus {
    const ALL: &'static [Self] = &[
        Self::Invited,
        Self::Confirmed,
        Self::Active,
        Self::Ended,
        Self::Declined,
        Self::Cancelled,
        Self::Expired,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Invited => "INVITED",
            Self::Confirmed => "CONFIRMED",
            Self::Active => "ACTIVE",
            Self::Ended => "ENDED",
            Self::Declined => "DECLINED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }
}

impl CallStatus {
    /// The statuses in which a call occupies its participants (CONTRACT §3:
    /// its room may be joined).
    pub const LIVE: &'static [Self] = &[Self::Invited, Self::Confirmed, Self::Active];

    pub fn is_live(self) -> bool {
        Self::LIVE.contains(&self)
    }

    pub fn is_terminal(self) -> bool {
        !self.is_live()
    }
}

/// Which participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Host,
    Guest,
}

impl Side {
    pub fn other(self) -> Self {
        match self {
            Self::Host => Self::Guest,
            Self::Guest => Self::Host,
        }
    }
}

/// What a participant asks of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallCommand {
    Confirm,
    Decline,
    Cancel,
    Activate,
    End,
}

impl CallCommand {
    pub const ALL: &'static [Self] = &[
        Self::Confirm,
        Self::Decline,
        Self::Cancel,
        Self::Activate,
        Self::End,
    ];

    /// The audit log's action name.
    pub fn action(self) -> AuditAction {
        match self {
            Self::Confirm => AuditAction::CallConfirm,
            Self::Decline => AuditAction::CallDecline,
            Self::Cancel => AuditAction::CallCancel,
            Self::Activate => AuditAction::CallActivate,
            Self::End => AuditAction::CallEnd,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The actor is not in this call; the caller must not learn it exists.
    #[error("no such call")]
    NotParticipant,
    /// A participant asked for something only the other side may do.
    #[error("only the {0} may do this")]
    WrongParty(&'static str),
    #[error("cannot {command:?} a call that is {from:?}")]
    Illegal {
        from: CallStatus,
        command: CallCommand,
    },
    /// The invitation's time is up (whether or not the timer has run yet).
    #[error("the invitation has expired")]
    Expired,
    #[error("a call needs two different participants")]
    SelfCall,
    #[error("the peer id must be 1 to {max} characters, without control characters", max = MAX_PEER_ID_CHARS)]
    BadPeerId,
}

/// Whether the participants of a new call are already in another live call
/// (a host and a guest each take one call at a time, CONTRACT §4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Busy {
    pub host: bool,
    pub guest: bool,
}

/// PeerJS ids are short; anything longer is not a peer id.
pub const MAX_PEER_ID_CHARS: usize = 256;

/// One participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub user_id: UserId,
    /// The token's `name` claim when the call was made.
    pub name: Option<String>,
    pub peer_id: Option<String>,
}

impl Party {
    pub fn new(user_id: UserId, name: Option<String>) -> Self {
        Self {
            user_id,
            name,
            peer_id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub id: CallId,
    pub host: Party,
    pub guest: Party,
    pub inviter: Side,
    pub status: CallStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub confirmed_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// Ended by the server because nobody was connected any more (see
    /// [`Call::abandon`]), not by a participant.
    pub abandoned: bool,
}

impl Call {
    /// A new invitation, live until `now + ttl`.
    pub fn invite(
        id: CallId,
        host: Party,
        guest: Party,
        inviter: Side,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Self, CallError> {
        if host.user_id == guest.user_id {
            return Err(CallError::SelfCall);
        }
        Ok(Self {
            id,
            host,
            guest,
            inviter,
            status: CallStatus::Invited,
            created_at: now,
            expires_at: now + ttl,
            confirmed_at: None,
            ended_at: None,
            abandoned: false,
        })
    }

    pub fn party(&self, side: Side) -> &Party {
        match side {
            Side::Host => &self.host,
            Side::Guest => &self.guest,
        }
    }

    pub fn invitee(&self) -> &Party {
        self.party(self.inviter.other())
    }

    pub fn inviter_party(&self) -> &Party {
        self.party(self.inviter)
    }

    /// Which side `user` is on, if any.
    pub fn side_of(&self, user: &UserId) -> Option<Side> {
        if &self.host.user_id == user {
            Some(Side::Host)
        } else if &self.guest.user_id == user {
            Some(Side::Guest)
        } else {
            None
        }
    }

    /// Applies a participant's command. `Ok(None)` is an accepted no-op.
    pub fn handle(
        &mut self,
        actor: &UserId,
        command: CallCommand,
        now: Timestamp,
    ) -> Result<Option<Transition<CallStatus>>, CallError> {
        let side = self.side_of(actor).ok_or(CallError::NotParticipant)?;
        use CallCommand as C;
        use CallStatus as S;
        match command {
            C::Confirm | C::Decline if side == self.inviter => {
                return Err(CallError::WrongParty("invitee"));
            }
            C::Cancel if side != self.inviter => return Err(CallError::WrongParty("inviter")),
            _ => {}
        }
        let to = match (self.status, command) {
            (S::Invited, C::Confirm | C::Decline | C::Cancel) if now >= self.expires_at => {
                return Err(CallError::Expired);
            }
            // Answering an invitation that has expired is "gone" (410), not
            // a generic conflict: the client should stop showing it.
            (S::Expired, C::Confirm | C::Decline | C::Cancel) => return Err(CallError::Expired),
            (S::Invited, C::Confirm) => S::Confirmed,
            (S::Invited, C::Decline) => S::Declined,
            (S::Invited, C::Cancel) => S::Cancelled,
            (S::Confirmed, C::Activate) => S::Active,
            (S::Active, C::Activate) | (S::Ended, C::End) => return Ok(None),
            (S::Confirmed | S::Active, C::End) => S::Ended,
            (from, command) => return Err(CallError::Illegal { from, command }),
        };
        Ok(Some(self.move_to(to, now)))
    }

    /// Records `actor`'s display name if the call does not know it yet: an
    /// invitee's name is only known once they act (their own token says it).
    /// Returns whether anything changed.
    pub fn learn_name(&mut self, actor: &UserId, name: Option<&str>) -> bool {
        let (Some(side), Some(name)) = (self.side_of(actor), name) else {
            return false;
        };
        let party = match side {
            Side::Host => &mut self.host,
            Side::Guest => &mut self.guest,
        };
        if party.name.is_some() {
            return false;
        }
        party.name = Some(name.to_owned());
        true
    }

    /// Stores a participant's WebRTC/PeerJS id; returns their side. Allowed
    /// while the call is live.
    pub fn set_peer_id(&mut self, actor: &UserId, peer_id: &str) -> Result<Side, CallError> {
        let side = self.side_of(actor).ok_or(CallError::NotParticipant)?;
        let len = peer_id.chars().count();
        if len == 0
            || len > MAX_PEER_ID_CHARS
            || peer_id.trim().is_empty()
            || peer_id.chars().any(char::is_control)
        {
            return Err(CallError::BadPeerId);
        }
        if !self.status.is_live() {
            return Err(CallError::Illegal {
                from: self.status,
                command: CallCommand::Activate,
            });
        }
        let party = match side {
            Side::Host => &mut self.host,
            Side::Guest => &mut self.guest,
        };
        party.peer_id = Some(peer_id.to_owned());
        Ok(side)
    }

    /// When the server must act on this call by itself, if ever.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        (self.status == CallStatus::Invited).then_some(self.expires_at)
    }

    /// The timer's step: an unanswered invitation expires at `expiresAt`,
    /// never before, and only once.
    pub fn on_timeout(&mut self, now: Timestamp) -> Option<Transition<CallStatus>> {
        match self.next_deadline() {
            Some(deadline) if now >= deadline => Some(self.move_to(CallStatus::Expired, now)),
            _ => None,
        }
    }

    /// The server's step for a call in progress (`CONFIRMED` or `ACTIVE`)
    /// whose two participants have both been gone for the abandon time: it
    /// ends, marked abandoned. The caller decides "gone"; any other status
    /// is left alone.
    pub fn abandon(&mut self, now: Timestamp) -> Option<Transition<CallStatus>> {
        match self.status {
            CallStatus::Confirmed | CallStatus::Active => {
                self.abandoned = true;
                Some(self.move_to(CallStatus::Ended, now))
            }
            _ => None,
        }
    }

    fn move_to(&mut self, to: CallStatus, now: Timestamp) -> Transition<CallStatus> {
        let from = self.status;
        self.status = to;
        match to {
            CallStatus::Confirmed => self.confirmed_at = Some(now),
            CallStatus::Active | CallStatus::Invited => {}
            _ => self.ended_at = Some(now),
        }
        Transition::new(from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{t0, user};

    fn call_in(status: CallStatus, inviter: Side) -> Call {
        let mut c = Call::invite(
            CallId::new("c1"),
            Party::new(user("doc"), Some("Dr A".into())),
            Party::new(user("pat"), None),
            inviter,
            t0(),
            Duration::seconds(60),
        )
        .unwrap();
        c.status = status;
        c
    }

    /// Every (status, command, actor) triple: the whole machine in one table.
    #[test]
    fn every_status_and_command_for_every_actor() {
        use CallCommand as C;
        use CallStatus as S;
        let now = t0() + Duration::seconds(10);
        for &inviter in &[Side::Host, Side::Guest] {
            let (inviter_id, invitee_id) = match inviter {
                Side::Host => ("doc", "pat"),
                Side::Guest => ("pat", "doc"),
            };
            for &status in S::ALL {
                for &cmd in C::ALL {
                    for actor in [inviter_id, invitee_id, "stranger"] {
                        let mut call = call_in(status, inviter);
                        let before = call.clone();
                        let got = call.handle(&user(actor), cmd, now);
                        let expected: Result<Option<S>, CallError> = if actor == "stranger" {
                            Err(CallError::NotParticipant)
                        } else {
                            let is_inviter = actor == inviter_id;
                            match (cmd, is_inviter) {
                                (C::Confirm | C::Decline, true) => {
                                    Err(CallError::WrongParty("invitee"))
                                }
                                (C::Cancel, false) => Err(CallError::WrongParty("inviter")),
                                _ => match (status, cmd) {
                                    (S::Invited, C::Confirm) => Ok(Some(S::Confirmed)),
                                    (S::Invited, C::Decline) => Ok(Some(S::Declined)),
                                    (S::Invited, C::Cancel) => Ok(Some(S::Cancelled)),
                                    (S::Confirmed, C::Activate) => Ok(Some(S::Active)),
                                    (S::Active, C::Activate) => Ok(None),
                                    (S::Confirmed | S::Active, C::End) => Ok(Some(S::Ended)),
                                    (S::Ended, C::End) => Ok(None),
                                    (S::Expired, C::Confirm | C::Decline | C::Cancel) => {
                                        Err(CallError::Expired)
                                    }
                                    (from, command) => Err(CallError::Illegal { from, command }),
                                },
                            }
                        };
                        let label = format!("{status:?} {cmd:?} by {actor} (inviter {inviter:?})");
                        match (&got, &expected) {
                            (Ok(Some(t)), Ok(Some(to))) => {
                                assert_eq!(t.from, status, "{label}");
                                assert_eq!(t.to, *to, "{label}");
                                assert_eq!(call.status, *to, "{label}");
                            }
                            (Ok(None), Ok(None)) | (Err(_), Err(_)) => {
                                assert_eq!(got.as_ref().err(), expected.as_ref().err(), "{label}");
                                assert_eq!(call, before, "{label}: nothing may change");
                            }
                            _ => panic!("{label}: got {got:?}, expected {expected:?}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn timestamps_follow_the_transitions() {
        let mut c = call_in(CallStatus::Invited, Side::Host);
        assert_eq!(c.expires_at, t0() + Duration::seconds(60));
        let at = t0() + Duration::seconds(5);
        c.handle(&user("pat"), CallCommand::Confirm, at).unwrap();
        assert_eq!(c.confirmed_at, Some(at));
        assert_eq!(c.ended_at, None);
        c.handle(&user("doc"), CallCommand::Activate, at).unwrap();
        assert_eq!(c.ended_at, None);
        let end = at + Duration::seconds(100);
        c.handle(&user("pat"), CallCommand::End, end).unwrap();
        assert_eq!(c.ended_at, Some(end));
        // A second end changes nothing, not even the time.
        assert_eq!(
            c.handle(&user("doc"), CallCommand::End, end + Duration::seconds(1)),
            Ok(None)
        );
        assert_eq!(c.ended_at, Some(end));
    }

    #[test]
    fn expiry_happens_at_the_deadline_never_before_and_once() {
        let mut c = call_in(CallStatus::Invited, Side::Host);
        let deadline = c.expires_at;
        assert_eq!(c.next_deadline(), Some(deadline));
        assert_eq!(c.on_timeout(deadline - Duration::milliseconds(1)), None);
        assert_eq!(c.status, CallStatus::Invited);
        let t = c.on_timeout(deadline).unwrap();
        assert_eq!((t.from, t.to), (CallStatus::Invited, CallStatus::Expired));
        assert_eq!(c.ended_at, Some(deadline));
        assert_eq!(c.next_deadline(), None);
        assert_eq!(c.on_timeout(deadline + Duration::seconds(5)), None);
    }

    #[test]
    fn answering_after_the_deadline_is_expired_even_before_the_timer_ran() {
        for (actor, cmd) in [
            ("pat", CallCommand::Confirm),
            ("pat", CallCommand::Decline),
            ("doc", CallCommand::Cancel),
        ] {
            let mut c = call_in(CallStatus::Invited, Side::Host);
            let late = c.expires_at;
            assert_eq!(c.handle(&user(actor), cmd, late), Err(CallError::Expired));
            assert_eq!(c.status, CallStatus::Invited);
        }
    }

    #[test]
    fn only_live_calls_take_peer_ids_and_only_from_participants() {
        let mut c = call_in(CallStatus::Confirmed, Side::Host);
        assert_eq!(c.set_peer_id(&user("doc"), "abc123"), Ok(Side::Host));
        assert_eq!(c.set_peer_id(&user("pat"), "xyz789"), Ok(Side::Guest));
        assert_eq!(c.host.peer_id.as_deref(), Some("abc123"));
        assert_eq!(c.guest.peer_id.as_deref(), Some("xyz789"));
        assert_eq!(
            c.set_peer_id(&user("eve"), "x"),
            Err(CallError::NotParticipant)
        );
        for bad in ["", "   ", "a\u{0}b", &"p".repeat(MAX_PEER_ID_CHARS + 1)] {
            assert_eq!(c.set_peer_id(&user("doc"), bad), Err(CallError::BadPeerId));
        }
        for &status in CallStatus::ALL {
            let mut c = call_in(status, Side::Host);
            assert_eq!(c.set_peer_id(&user("doc"), "p").is_ok(), status.is_live());
        }
    }

    #[test]
    fn an_invitees_name_is_learned_once_and_never_overwritten() {
        let mut c = Call::invite(
            CallId::new("c1"),
            Party::new(user("doc"), None),
            Party::new(user("pat"), Some("Pat".into())),
            Side::Guest,
            t0(),
            Duration::seconds(60),
        )
        .unwrap();
        assert!(!c.learn_name(&user("eve"), Some("Eve")));
        assert!(!c.learn_name(&user("doc"), None));
        assert!(c.learn_name(&user("doc"), Some("Dr A")));
        assert_eq!(c.host.name.as_deref(), Some("Dr A"));
        assert!(!c.learn_name(&user("doc"), Some("Someone else")));
        assert!(!c.learn_name(&user("pat"), Some("Other")));
        assert_eq!(c.host.name.as_deref(), Some("Dr A"));
        assert_eq!(c.guest.name.as_deref(), Some("Pat"));
    }

    #[test]
    fn nobody_calls_themselves() {
        let p = Party::new(user("same"), None);
        assert_eq!(
            Call::invite(
                CallId::new("c"),
                p.clone(),
                p,
                Side::Guest,
                t0(),
                Duration::seconds(1)
            ),
            Err(CallError::SelfCall)
        );
    }

    #[test]
    fn statuses_round_trip_through_their_spelling() {
        for &s in CallStatus::ALL {
            assert_eq!(CallStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CallStatus::parse("invited"), None);
    }

    /// Abandonment, for every status: only a call in progress ends, once,
    /// marked abandoned; everything else is untouched.
    #[test]
    fn only_a_call_in_progress_is_abandoned() {
        use CallStatus as S;
        let now = t0() + Duration::seconds(600);
        for &status in S::ALL {
            let mut c = call_in(status, Side::Host);
            let before = c.clone();
            let t = c.abandon(now);
            match status {
                S::Confirmed | S::Active => {
                    assert_eq!(t, Some(Transition::new(status, S::Ended)), "{status:?}");
                    assert!(c.abandoned);
                    assert_eq!(c.ended_at, Some(now));
                    assert_eq!(c.next_deadline(), None);
                    assert_eq!(c.abandon(now), None, "abandoned once");
                    let mut again = c.clone();
                    assert_eq!(again.handle(&user("doc"), CallCommand::End, now), Ok(None));
                }
                _ => {
                    assert_eq!(t, None, "{status:?}");
                    assert_eq!(c, before, "{status:?} unchanged");
                }
            }
        }
    }
}
