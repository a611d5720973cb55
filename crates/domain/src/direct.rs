//! Direct calls without an appointment (CONTRACT §5): a guest calls
//! a host now. The guest is the inviter, the host the invitee, and the call
//! runs the machine of [`crate::call`].
//!
//! `appointment_id` is the caller's opaque routing key. the direct call app's client
//! makes one up as `direct_session_<ms>` when there is no appointment, and
//! its backend crashed looking that up as an appointment record. consultd
//! never looks an appointment id up: there is nothing to look up, so that
//! bug cannot happen here.

use std::fmt;

use chrono::Duration;

use crate::call::{Busy, Call, CallError, Party, Side};
use crate::ids::CallId;
use crate::time::Timestamp;

/// The prefix of a routing key that has no appointment behind it.
pub const DIRECT_SESSION_PREFIX: &str = "direct_session_";

/// A caller's routing key for a direct call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppointmentId(String);

impl AppointmentId {
    /// The longest key accepted.
    pub const MAX_LEN: usize = crate::ids::MAX_ID_LEN;

    /// A key the caller chose; blank, over-long or control-character keys are
    /// refused.
    pub fn parse(raw: impl Into<String>) -> Option<Self> {
        let raw = raw.into();
        crate::ids::usable_id(&raw).then_some(Self(raw))
    }

    /// The key made for a caller who sent none: `direct_session_<ms>`, as
    /// the direct call app's client makes it.
    pub fn generate(now: Timestamp) -> Self {
        Self(format!("{DIRECT_SESSION_PREFIX}{}", now.timestamp_millis()))
    }

    /// Whether the key says "no appointment record exists".
    pub fn is_direct_session(&self) -> bool {
        self.0.starts_with(DIRECT_SESSION_PREFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppointmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a direct call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectError {
    #[error("a call needs two different participants")]
    SelfCall,
    /// Another caller holds a live call under this appointment id.
    #[error("this appointment already has a live call")]
    AppointmentTaken,
    #[error("the doctor is in another call")]
    HostBusy,
    #[error("you are already in another call")]
    CallerBusy,
}

/// What a `start` request comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectStart {
    /// The caller already has the live call for this appointment: return it
    /// (a double tap, or a client retrying after a lost response).
    Resume,
    /// A new invitation (boxed: a call is large, a resume is nothing).
    Invite(Box<Call>),
}

/// CONTRACT §5's rule. `live_for_appointment` is the live call holding the
/// appointment id, if any; `busy` says whether either party is in another
/// live call.
pub fn start_direct_call(
    caller: Party,
    host: Party,
    live_for_appointment: Option<&Call>,
    busy: Busy,
    id: CallId,
    now: Timestamp,
    ttl: Duration,
) -> Result<DirectStart, DirectError> {
    if let Some(live) = live_for_appointment {
        return if live.guest.user_id == caller.user_id {
            Ok(DirectStart::Resume)
        } else {
            Err(DirectError::AppointmentTaken)
        };
    }
    if caller.user_id == host.user_id {
        return Err(DirectError::SelfCall);
    }
    if busy.guest {
        return Err(DirectError::CallerBusy);
    }
    if busy.host {
        return Err(DirectError::HostBusy);
    }
    Call::invite(id, host, caller, Side::Guest, now, ttl)
        .map(|call| DirectStart::Invite(Box::new(call)))
        .map_err(|e| match e {
            CallError::SelfCall => DirectError::SelfCall,
            // `invite` refuses nothing else.
            _ => DirectError::AppointmentTaken,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{CallCommand, CallStatus};
    use crate::test_support::{t0, user};

    fn party(id: &str) -> Party {
        Party::new(user(id), None)
    }

    fn start(live: Option<&Call>, busy: Busy) -> Result<DirectStart, DirectError> {
        start_direct_call(
            party("pat"),
            party("doc"),
            live,
            busy,
            CallId::new("c1"),
            t0(),
            Duration::seconds(60),
        )
    }

    #[test]
    fn keys_are_opaque_and_generated_ones_say_so() {
        let k = AppointmentId::generate(t0());
        assert_eq!(
            k.as_str(),
            format!("direct_session_{}", t0().timestamp_millis())
        );
        assert!(k.is_direct_session());
        let given = AppointmentId::parse("123").unwrap();
        assert!(!given.is_direct_session());
        assert!(
            AppointmentId::parse("direct_session_1")
                .unwrap()
                .is_direct_session()
        );
        for bad in ["", "   ", "a\u{0}b", &"x".repeat(257)] {
            assert_eq!(AppointmentId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_new_direct_call_invites_the_host_with_the_guest_as_inviter() {
        let Ok(DirectStart::Invite(call)) = start(None, Busy::default()) else {
            panic!("expected an invitation");
        };
        assert_eq!(call.status, CallStatus::Invited);
        assert_eq!(call.inviter, Side::Guest);
        assert_eq!(call.invitee().user_id, user("doc"));
        assert_eq!(call.expires_at, t0() + Duration::seconds(60));
        // The host answers, the caller cancels: the one machine's rules.
        let mut c = call.clone();
        assert!(c.handle(&user("pat"), CallCommand::Confirm, t0()).is_err());
        assert!(c.handle(&user("doc"), CallCommand::Confirm, t0()).is_ok());
        let mut c = call;
        assert!(c.handle(&user("doc"), CallCommand::Cancel, t0()).is_err());
        assert!(c.handle(&user("pat"), CallCommand::Cancel, t0()).is_ok());
    }

    #[test]
    fn the_live_call_of_an_appointment_goes_back_to_its_caller_only() {
        let live = Call::invite(
            CallId::new("c0"),
            party("doc"),
            party("pat"),
            Side::Guest,
            t0(),
            Duration::seconds(60),
        )
        .unwrap();
        // Even while "busy" (the live call itself makes them busy).
        let busy = Busy {
            host: true,
            guest: true,
        };
        assert_eq!(start(Some(&live), busy), Ok(DirectStart::Resume));
        let theirs = Call::invite(
            CallId::new("c0"),
            party("doc"),
            party("someone-else"),
            Side::Guest,
            t0(),
            Duration::seconds(60),
        )
        .unwrap();
        assert_eq!(
            start(Some(&theirs), Busy::default()),
            Err(DirectError::AppointmentTaken)
        );
    }

    #[test]
    fn refusals() {
        let cases = [
            (
                Busy {
                    host: true,
                    guest: false,
                },
                DirectError::HostBusy,
            ),
            (
                Busy {
                    host: false,
                    guest: true,
                },
                DirectError::CallerBusy,
            ),
            (
                Busy {
                    host: true,
                    guest: true,
                },
                DirectError::CallerBusy,
            ),
        ];
        for (busy, expected) in cases {
            assert_eq!(start(None, busy), Err(expected));
        }
        let me = start_direct_call(
            party("pat"),
            party("pat"),
            None,
            Busy::default(),
            CallId::new("c1"),
            t0(),
            Duration::seconds(60),
        );
        assert_eq!(me, Err(DirectError::SelfCall));
    }
}
