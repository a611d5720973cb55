//! Exactly once for what a (re)connect resync re-sends: `call_invitation`,
//! `session:incoming` and `session:status`.
//!
//! The resync reads the database while the same change may still be on its
//! way live: on the bus from another node (its listener behind the commit),
//! or from the committing task of this one. Neither the commit time nor a
//! clock tells which will reach the socket first (two nodes' clocks differ),
//! so each socket remembers what it was told, by whichever path came first,
//! and the other path sends nothing. A chat's status only moves forward, so
//! an older status after a newer one is dropped too.

use std::time::{Duration, Instant};

use consultd_domain::{ChatStatus, Status};
use serde_json::Value;

/// Longer than any bus lag a ready node has (`/readyz` fails past 5 s).
const KEEP: Duration = Duration::from_secs(60);

/// One resyncable push, by what identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Said {
    event: &'static str,
    id: String,
    /// How far along its entity is: a chat's status; 0 for the others,
    /// which are pushed once per entity.
    stage: usize,
}

/// The events a resync re-sends.
const RESYNCED: [&str; 3] = ["call_invitation", "session:incoming", "session:status"];

impl Said {
    pub(crate) fn resynced(event: &str) -> bool {
        RESYNCED.contains(&event)
    }

    /// `Some` for the events a resync re-sends.
    pub(crate) fn of(event: &str, body: &Value) -> Option<Self> {
        let event = *RESYNCED.iter().find(|e| **e == event)?;
        let id = body.get("id")?.as_str()?.to_owned();
        let stage = if event == "session:status" {
            let status = ChatStatus::parse(body.get("status")?.as_str()?)?;
            ChatStatus::ALL.iter().position(|s| *s == status)?
        } else {
            0
        };
        Some(Self { event, id, stage })
    }
}

/// What one socket was told of the resyncable pushes.
#[derive(Debug)]
pub(crate) struct Told {
    /// A resync is reading the database: live pushes are remembered too,
    /// so that it does not send them again.
    resyncing: bool,
    told: Vec<(Said, Instant)>,
}

impl Told {
    /// A socket starts with its connect resync pending.
    pub(crate) fn resyncing() -> Self {
        Self {
            resyncing: true,
            told: Vec::new(),
        }
    }

    pub(crate) fn set_resyncing(&mut self, on: bool) {
        self.resyncing = on;
    }

    /// Whether `said` is news to the socket (then it is sent), remembering
    /// it when the other path may still bring it: always for the resync,
    /// while a resync runs for a live push.
    pub(crate) fn first(&mut self, said: Said, by_resync: bool, now: Instant) -> bool {
        self.told
            .retain(|(_, at)| now.saturating_duration_since(*at) < KEEP);
        let stale = self
            .told
            .iter()
            .any(|(s, _)| s.event == said.event && s.id == said.id && s.stage >= said.stage);
        if stale {
            return false;
        }
        if by_resync || self.resyncing {
            self.told.push((said, now));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn invitation(id: &str) -> Said {
        Said::of("call_invitation", &json!({ "id": id, "status": "INVITED" })).unwrap()
    }

    fn chat(id: &str, status: &str) -> Said {
        Said::of("session:status", &json!({ "id": id, "status": status })).unwrap()
    }

    #[test]
    fn only_the_resynced_events_are_tracked() {
        assert!(Said::of("call_confirmed", &json!({ "id": "c" })).is_none());
        assert!(Said::of("call_invitation", &json!({ "nope": 1 })).is_none());
        assert!(Said::of("session:status", &json!({ "id": "s", "status": "bogus" })).is_none());
        assert!(Said::of("session:incoming", &json!({ "id": "t" })).is_some());
    }

    #[test]
    fn a_live_push_during_the_resync_is_not_resent_by_it() {
        let now = Instant::now();
        let mut told = Told::resyncing();
        assert!(told.first(invitation("c1"), false, now));
        assert!(!told.first(invitation("c1"), true, now));
    }

    #[test]
    fn a_resynced_push_is_not_sent_again_when_it_arrives_live() {
        let now = Instant::now();
        let mut told = Told::resyncing();
        assert!(told.first(invitation("c1"), true, now));
        told.set_resyncing(false);
        assert!(!told.first(invitation("c1"), false, now));
        // Another call is news.
        assert!(told.first(invitation("c2"), false, now));
    }

    #[test]
    fn after_the_resync_live_pushes_are_not_remembered() {
        let now = Instant::now();
        let mut told = Told::resyncing();
        told.set_resyncing(false);
        assert!(told.first(invitation("c1"), false, now));
        assert!(told.told.is_empty());
    }

    #[test]
    fn a_chat_status_never_goes_back() {
        let now = Instant::now();
        let mut told = Told::resyncing();
        // The resync read `live` while `waiting` was still on the bus.
        assert!(told.first(chat("s1", "live"), true, now));
        told.set_resyncing(false);
        assert!(!told.first(chat("s1", "waiting"), false, now));
        assert!(!told.first(chat("s1", "live"), false, now));
        assert!(told.first(chat("s1", "ended"), false, now));
        assert!(told.first(chat("s2", "waiting"), false, now));
    }

    #[test]
    fn what_was_told_is_forgotten_after_a_while() {
        let now = Instant::now();
        let mut told = Told::resyncing();
        assert!(told.first(invitation("c1"), true, now));
        told.set_resyncing(false);
        assert!(told.first(invitation("c1"), false, now + KEEP));
        assert!(told.told.is_empty());
    }
}
