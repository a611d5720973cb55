//! Chat sessions (CONTRACT §7): a customer asks for help, a host
//! (mechanic) takes it, and the session runs for a fixed time once both are
//! there.
//!
//! ```text
//!            accept (a host; first wins)     both present (by user id)
//!  pending ───────────────────────────▶ waiting ─────────────────────▶ live
//!     │                                    │                            │
//!     └── end (customer) ──▶ ended ◀── end (either) ◀── end / ends_at ──┘
//! ```
//!
//! the support chat app's bug was deciding "both present" on the client from presence
//! keyed by connection; here the server decides from the user ids present,
//! and `live` fixes `ends_at`, which the timer honours across restarts.

use chrono::Duration;

use crate::identity::{Principal, UserId};
use crate::ids::ChatId;
use crate::time::Timestamp;
use crate::transition::{Status, Transition};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatStatus {
    /// Asked for; no host has taken it yet.
    Pending,
    /// A host took it; waiting for both to be in the room.
    Waiting,
    /// Both were present: the clock runs until `ends_at`.
    Live,
    Ended,
}

impl Status for ChatStatus {
    const ALL: &'static [Self] = &[Self::Pending, Self::Waiting, Self::Live, Self::Ended];

    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Waiting => "waiting",
            Self::Live => "live",
            Self::Ended => "ended",
        }
    }
}

/// Who a user is in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatSide {
    Customer,
    /// The assigned host.
    Mechanic,
}

/// Why a request on a session is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// Not the customer nor the assigned host: as if it did not exist.
    #[error("no such chat session")]
    NotParticipant,
    /// A participant, or someone who may see it, but the wrong kind.
    #[error("{0}")]
    WrongRole(&'static str),
    /// Another host accepted first.
    #[error("another host has accepted this session")]
    Taken,
    /// The session is not in a status that allows this.
    #[error("the session is {}", .from.as_str())]
    Illegal { from: ChatStatus },
}

/// How long a session may be asked to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatDuration(Duration);

impl ChatDuration {
    /// One day: longer is not a consultation.
    pub const MAX_MINUTES: f64 = 24.0 * 60.0;

    /// From `duration_minutes`: a positive number of minutes (fractions
    /// allowed, kept to the millisecond), at most a day.
    pub fn from_minutes(minutes: f64) -> Option<Self> {
        if !minutes.is_finite() || minutes <= 0.0 || minutes > Self::MAX_MINUTES {
            return None;
        }
        // Bounded above by a day, so the cast cannot overflow.
        #[allow(clippy::cast_possible_truncation)]
        let ms = (minutes * 60_000.0).round() as i64;
        (ms > 0).then(|| Self(Duration::milliseconds(ms)))
    }

    /// Whole seconds, clamped to 1 s … 1 day (for configuration, which is
    /// range-checked where it is parsed).
    pub fn from_secs_clamped(secs: u64) -> Self {
        let secs = i64::try_from(secs.clamp(1, 86_400)).unwrap_or(86_400);
        Self(Duration::seconds(secs))
    }

    pub fn from_duration(d: Duration) -> Option<Self> {
        (d > Duration::zero() && d <= Duration::days(1)).then_some(Self(d))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

/// What the customer says they need help with; shown to hosts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Concern(String);

impl Concern {
    pub const MAX_CHARS: usize = 2_000;

    /// Trimmed; empty means "no concern given"; over-long is refused.
    pub fn parse(raw: &str) -> Result<Option<Self>, &'static str> {
        let text = raw.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if text.chars().count() > Self::MAX_CHARS {
            return Err("concern is longer than 2000 characters");
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err("concern contains control characters");
        }
        Ok(Some(Self(text.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSession {
    /// Also the chat room's id.
    pub id: ChatId,
    pub customer: UserId,
    /// Set by the first accept, never changed after.
    pub mechanic: Option<UserId>,
    pub status: ChatStatus,
    pub concern: Option<Concern>,
    /// How long it runs once live.
    pub duration: ChatDuration,
    pub created_at: Timestamp,
    /// The last status change (creation included).
    pub updated_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
}

impl ChatSession {
    /// A customer's new request.
    pub fn open(
        id: ChatId,
        customer: UserId,
        concern: Option<Concern>,
        duration: ChatDuration,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            customer,
            mechanic: None,
            status: ChatStatus::Pending,
            concern,
            duration,
            created_at: now,
            updated_at: now,
            started_at: None,
            ends_at: None,
            ended_at: None,
        }
    }

    pub fn side_of(&self, user: &UserId) -> Option<ChatSide> {
        if *user == self.customer {
            Some(ChatSide::Customer)
        } else if self.mechanic.as_ref() == Some(user) {
            Some(ChatSide::Mechanic)
        } else {
            None
        }
    }

    /// May `p` read this session? Its participants, admins, and — while it
    /// is `pending` and open to all of them — any host.
    pub fn visible_to(&self, p: &Principal) -> bool {
        p.is_admin()
            || self.side_of(&p.user_id).is_some()
            || (self.status == ChatStatus::Pending && p.is_host())
    }

    /// May `user` be in the chat room (and read its history)? The customer
    /// from `pending`, the assigned host once assigned; in any status, so
    /// an ended session's history stays readable.
    pub fn may_join(&self, user: &UserId) -> bool {
        self.side_of(user).is_some()
    }

    /// May a participant post now? Until it has ended.
    pub fn accepts_messages(&self) -> bool {
        self.status != ChatStatus::Ended
    }

    fn to(&mut self, to: ChatStatus, now: Timestamp) -> Transition<ChatStatus> {
        let t = Transition::new(self.status, to);
        self.status = to;
        self.updated_at = now;
        t
    }

    /// A host takes the request. The first wins; the same host again is a
    /// no-op (a double tap), any other host is refused with [`ChatError::Taken`].
    pub fn accept(
        &mut self,
        by: &Principal,
        now: Timestamp,
    ) -> Result<Option<Transition<ChatStatus>>, ChatError> {
        if !by.is_host() {
            return Err(if self.visible_to(by) {
                ChatError::WrongRole("only a host may accept a chat session")
            } else {
                ChatError::NotParticipant
            });
        }
        match (&self.mechanic, self.status) {
            (Some(m), ChatStatus::Waiting | ChatStatus::Live) if *m == by.user_id => Ok(None),
            (Some(_), ChatStatus::Waiting | ChatStatus::Live) => Err(ChatError::Taken),
            (_, ChatStatus::Pending) if by.user_id == self.customer => {
                Err(ChatError::WrongRole("you cannot accept your own request"))
            }
            (_, ChatStatus::Pending) => {
                self.mechanic = Some(by.user_id.clone());
                Ok(Some(self.to(ChatStatus::Waiting, now)))
            }
            (_, from) => Err(ChatError::Illegal { from }),
        }
    }

    /// Both participants are in the room (the server tells, from presence
    /// by user id): a `waiting` session goes live and its clock starts.
    pub fn on_presence<'a>(
        &mut self,
        present: impl IntoIterator<Item = &'a UserId>,
        now: Timestamp,
    ) -> Option<Transition<ChatStatus>> {
        if self.status != ChatStatus::Waiting {
            return None;
        }
        let mechanic = self.mechanic.clone()?;
        let (mut customer_in, mut mechanic_in) = (false, false);
        for user in present {
            customer_in |= *user == self.customer;
            mechanic_in |= *user == mechanic;
        }
        if !(customer_in && mechanic_in) {
            return None;
        }
        self.started_at = Some(now);
        self.ends_at = Some(now + self.duration.get());
        Some(self.to(ChatStatus::Live, now))
    }

    /// Either participant ends it (the customer may withdraw a `pending`
    /// request). Ending an ended session is a no-op. Someone who may see it
    /// but is not in it (a host looking at an open request, an admin) is
    /// refused as the wrong role; anyone else does not know it exists.
    pub fn end(
        &mut self,
        by: &Principal,
        now: Timestamp,
    ) -> Result<Option<Transition<ChatStatus>>, ChatError> {
        if self.side_of(&by.user_id).is_none() {
            return Err(if self.visible_to(by) {
                ChatError::WrongRole(
                    "only the customer or the assigned host may end a chat session",
                )
            } else {
                ChatError::NotParticipant
            });
        }
        if self.status == ChatStatus::Ended {
            return Ok(None);
        }
        self.ended_at = Some(now);
        Ok(Some(self.to(ChatStatus::Ended, now)))
    }

    /// The timer: a `live` session ends at `ends_at`, once.
    pub fn on_timeout(&mut self, now: Timestamp) -> Option<Transition<ChatStatus>> {
        let due = self.next_deadline()?;
        if now < due {
            return None;
        }
        self.ended_at = Some(due);
        Some(self.to(ChatStatus::Ended, now))
    }

    /// When the timer must look at this session next.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match self.status {
            ChatStatus::Live => self.ends_at,
            _ => None,
        }
    }
}

/// A chat message's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

/// Why a message's text is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentError {
    Empty,
    TooLong { max_chars: usize },
}

impl MessageContent {
    /// Kept as written (no trimming: whitespace can be meaningful in a
    /// pasted error log), but blank messages are refused. Characters are
    /// Unicode scalar values, as a client's `maxLength` would count them
    /// closely enough (JavaScript counts UTF-16 units: never fewer).
    pub fn parse(raw: String, max_chars: usize) -> Result<Self, ContentError> {
        if raw.trim().is_empty() {
            return Err(ContentError::Empty);
        }
        if raw.chars().count() > max_chars {
            return Err(ContentError::TooLong { max_chars });
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Role, RoleClass, RoleMap};
    use crate::test_support::{t0, user};

    fn principal(id: &str, role: &str) -> Principal {
        let (role, class): (Role, RoleClass) = RoleMap::default().resolve(role).unwrap();
        Principal {
            user_id: user(id),
            role,
            class,
            name: None,
        }
    }

    fn minutes(m: f64) -> ChatDuration {
        ChatDuration::from_minutes(m).unwrap()
    }

    fn session() -> ChatSession {
        ChatSession::open(ChatId::new("c1"), user("cust"), None, minutes(30.0), t0())
    }

    /// A session in `status`, assigned to `mech` once past `pending`.
    fn session_in(status: ChatStatus) -> ChatSession {
        let mut s = session();
        if status != ChatStatus::Pending {
            s.mechanic = Some(user("mech"));
        }
        if matches!(status, ChatStatus::Live | ChatStatus::Ended) {
            s.started_at = Some(t0());
            s.ends_at = Some(t0() + Duration::minutes(30));
        }
        if status == ChatStatus::Ended {
            s.ended_at = Some(t0() + Duration::minutes(1));
        }
        s.status = status;
        s
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Cmd {
        Accept,
        End,
    }

    /// Every status × command × actor: the expected outcome, and that a
    /// refusal or a no-op changes nothing.
    #[test]
    fn every_status_command_and_actor() {
        use ChatStatus as S;
        let actors = [
            ("cust", "customer"),
            ("mech", "mechanic"),
            ("other-mech", "mechanic"),
            ("stranger", "customer"),
            ("admin", "admin"),
        ];
        let now = t0() + Duration::seconds(5);
        for &status in S::ALL {
            for cmd in [Cmd::Accept, Cmd::End] {
                for (id, role) in actors {
                    let p = principal(id, role);
                    let mut s = session_in(status);
                    let before = s.clone();
                    let got = match cmd {
                        Cmd::Accept => s.accept(&p, now),
                        Cmd::End => s.end(&p, now),
                    };
                    let assigned = status != S::Pending;
                    let expected: Result<Option<S>, ChatError> = match (cmd, id) {
                        (Cmd::Accept, "stranger") => Err(ChatError::NotParticipant),
                        (Cmd::Accept, "cust" | "admin") => Err(ChatError::WrongRole(
                            "only a host may accept a chat session",
                        )),
                        (Cmd::Accept, _) => match status {
                            S::Pending => Ok(Some(S::Waiting)),
                            S::Waiting | S::Live if id == "mech" => Ok(None),
                            S::Waiting | S::Live => Err(ChatError::Taken),
                            S::Ended => Err(ChatError::Illegal { from: S::Ended }),
                        },
                        (Cmd::End, "cust") | (Cmd::End, "mech") if id == "cust" || assigned => {
                            if status == S::Ended {
                                Ok(None)
                            } else {
                                Ok(Some(S::Ended))
                            }
                        }
                        // Hosts may see an open request, admins everything:
                        // the wrong role. Others do not know it exists.
                        (Cmd::End, "other-mech") if status == S::Pending => {
                            Err(ChatError::WrongRole(
                                "only the customer or the assigned host may end a chat session",
                            ))
                        }
                        (Cmd::End, "mech") if status == S::Pending => Err(ChatError::WrongRole(
                            "only the customer or the assigned host may end a chat session",
                        )),
                        (Cmd::End, "admin") => Err(ChatError::WrongRole(
                            "only the customer or the assigned host may end a chat session",
                        )),
                        (Cmd::End, _) => Err(ChatError::NotParticipant),
                    };
                    let label = format!("{status:?} {cmd:?} by {id}");
                    match (got, expected) {
                        (Ok(Some(t)), Ok(Some(to))) => {
                            assert_eq!(t, Transition::new(status, to), "{label}");
                            assert_eq!(s.status, to, "{label}");
                            assert_eq!(s.updated_at, now, "{label}");
                            if to == S::Waiting {
                                assert_eq!(s.mechanic, Some(user(id)), "{label}");
                            }
                            if to == S::Ended {
                                assert_eq!(s.ended_at, Some(now), "{label}");
                            }
                        }
                        (Ok(None), Ok(None)) => assert_eq!(s, before, "{label}"),
                        (Err(e), Err(want)) => {
                            assert_eq!(e, want, "{label}");
                            assert_eq!(s, before, "{label}: nothing may change");
                        }
                        (got, want) => panic!("{label}: got {got:?}, expected {want:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn two_hosts_accepting_exactly_one_wins() {
        let mut s = session();
        let now = t0();
        let first = s.accept(&principal("m1", "mechanic"), now);
        let second = s.accept(&principal("m2", "mechanic"), now);
        assert!(matches!(first, Ok(Some(_))));
        assert_eq!(second, Err(ChatError::Taken));
        assert_eq!(s.mechanic, Some(user("m1")));
    }

    #[test]
    fn a_host_cannot_accept_their_own_request() {
        // A user id is one person whatever role a token claims.
        let mut s = ChatSession::open(ChatId::new("c"), user("x"), None, minutes(1.0), t0());
        let before = s.clone();
        assert!(matches!(
            s.accept(&principal("x", "mechanic"), t0()),
            Err(ChatError::WrongRole(_))
        ));
        assert_eq!(s, before);
    }

    /// the support chat app's scenarios, decided by user id, whatever order they come in.
    #[test]
    fn live_only_when_customer_and_assigned_mechanic_are_both_present() {
        let (cust, mech, other) = (user("cust"), user("mech"), user("other"));
        let later = t0() + Duration::seconds(42);
        // Pending: the customer alone, or even with a host, never starts it.
        let mut s = session_in(ChatStatus::Pending);
        assert_eq!(s.on_presence([&cust], later), None);
        assert_eq!(s.on_presence([&cust, &mech], later), None);
        // Waiting: one side alone, or with someone else, is not enough.
        let mut s = session_in(ChatStatus::Waiting);
        for present in [vec![], vec![&cust], vec![&mech], vec![&cust, &other]] {
            assert_eq!(s.on_presence(present, later), None);
            assert_eq!(s.status, ChatStatus::Waiting);
        }
        // Both (in any order, duplicates from two tabs included).
        let t = s.on_presence([&mech, &cust, &cust], later).unwrap();
        assert_eq!(t, Transition::new(ChatStatus::Waiting, ChatStatus::Live));
        assert_eq!(s.started_at, Some(later));
        assert_eq!(s.ends_at, Some(later + Duration::minutes(30)));
        // Already live: presence changes nothing, even if one leaves.
        let before = s.clone();
        assert_eq!(s.on_presence([&cust, &mech], later), None);
        assert_eq!(s.on_presence([&cust], later), None);
        assert_eq!(s, before);
        // Ended: never restarts.
        let mut s = session_in(ChatStatus::Ended);
        assert_eq!(s.on_presence([&cust, &mech], later), None);
    }

    #[test]
    fn the_timer_ends_a_live_session_at_ends_at_once() {
        let mut s = session_in(ChatStatus::Live);
        let due = s.ends_at.unwrap();
        assert_eq!(s.next_deadline(), Some(due));
        assert_eq!(s.on_timeout(due - Duration::milliseconds(1)), None);
        assert_eq!(s.status, ChatStatus::Live);
        // Late (a restart in between): ended at its due time, once.
        let t = s.on_timeout(due + Duration::minutes(5)).unwrap();
        assert_eq!(t, Transition::new(ChatStatus::Live, ChatStatus::Ended));
        assert_eq!(s.ended_at, Some(due));
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.on_timeout(due + Duration::minutes(6)), None);
        // Nothing else has a deadline.
        for status in [ChatStatus::Pending, ChatStatus::Waiting, ChatStatus::Ended] {
            let mut s = session_in(status);
            assert_eq!(s.next_deadline(), None);
            assert_eq!(s.on_timeout(t0() + Duration::days(2)), None, "{status:?}");
        }
    }

    #[test]
    fn an_ended_session_is_refused_by_the_timer_after_a_manual_end() {
        let mut s = session_in(ChatStatus::Live);
        s.end(&principal("mech", "mechanic"), t0() + Duration::minutes(2))
            .unwrap();
        assert_eq!(s.on_timeout(t0() + Duration::hours(1)), None);
        assert_eq!(s.ended_at, Some(t0() + Duration::minutes(2)));
    }

    #[test]
    fn visibility_and_joining() {
        let pending = session_in(ChatStatus::Pending);
        assert!(pending.visible_to(&principal("cust", "customer")));
        assert!(pending.visible_to(&principal("any-host", "mechanic")));
        assert!(pending.visible_to(&principal("a", "admin")));
        assert!(!pending.visible_to(&principal("other", "customer")));
        assert!(pending.may_join(&user("cust")));
        assert!(!pending.may_join(&user("any-host")));
        for status in [ChatStatus::Waiting, ChatStatus::Live, ChatStatus::Ended] {
            let s = session_in(status);
            assert!(s.visible_to(&principal("mech", "mechanic")));
            assert!(!s.visible_to(&principal("loser", "mechanic")), "{status:?}");
            assert!(s.may_join(&user("cust")) && s.may_join(&user("mech")));
            assert!(!s.may_join(&user("loser")));
            assert_eq!(s.accepts_messages(), status != ChatStatus::Ended);
        }
    }

    #[test]
    fn durations_are_positive_and_at_most_a_day() {
        assert_eq!(minutes(30.0).get(), Duration::minutes(30));
        assert_eq!(minutes(0.05).get(), Duration::seconds(3));
        assert_eq!(minutes(1440.0).get(), Duration::days(1));
        for bad in [0.0, -1.0, 1440.5, f64::NAN, f64::INFINITY, 1e-9] {
            assert_eq!(ChatDuration::from_minutes(bad), None, "{bad}");
        }
        assert!(ChatDuration::from_duration(Duration::zero()).is_none());
        assert!(ChatDuration::from_duration(Duration::seconds(2)).is_some());
        assert_eq!(
            ChatDuration::from_secs_clamped(0).get(),
            Duration::seconds(1)
        );
        assert_eq!(
            ChatDuration::from_secs_clamped(90).get(),
            Duration::seconds(90)
        );
        assert_eq!(
            ChatDuration::from_secs_clamped(u64::MAX).get(),
            Duration::days(1)
        );
    }

    #[test]
    fn content_and_concern_rules() {
        assert_eq!(
            MessageContent::parse("  hi \n".into(), 10)
                .unwrap()
                .as_str(),
            "  hi \n"
        );
        assert_eq!(
            MessageContent::parse(" \n\t".into(), 10),
            Err(ContentError::Empty)
        );
        assert!(MessageContent::parse("é".repeat(10), 10).is_ok());
        assert_eq!(
            MessageContent::parse("é".repeat(11), 10),
            Err(ContentError::TooLong { max_chars: 10 })
        );
        assert_eq!(Concern::parse("  ").unwrap(), None);
        assert_eq!(
            Concern::parse(" brakes ").unwrap().unwrap().as_str(),
            "brakes"
        );
        assert!(Concern::parse("line1\nline2").unwrap().is_some());
        assert!(Concern::parse("a\u{0}b").is_err());
        assert!(Concern::parse(&"x".repeat(2001)).is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for &s in ChatStatus::ALL {
            assert_eq!(ChatStatus::parse(s.as_str()), Some(s));
        }
    }
}
