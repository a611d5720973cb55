//! A signaling room: who is in it (presence by user, CONTRACT §7) and what a
//! late joiner must be told (the replay of §3).
//!
//! Sans-IO: sockets are opaque endpoints, payloads are opaque values with a
//! size. The server holds one [`Room`] per live call behind a lock and does
//! the sending; this module decides who gets what.

use std::collections::VecDeque;

use crate::{Timestamp, UserId};

/// A connection in a room, as the server knows it.
pub trait Endpoint {
    type Id: Eq + Copy;
    fn id(&self) -> Self::Id;
}

/// One user in a room with all of their connections (tabs, devices).
#[derive(Debug)]
pub struct Member<S> {
    pub user: UserId,
    pub role: String,
    /// When the first of their current connections joined.
    pub online_at: Timestamp,
    pub sockets: Vec<S>,
}

/// What a join changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// The user's first connection: the others learn that they arrived.
    FirstConnection,
    /// Another tab or device of a user already present.
    AnotherConnection,
    /// This very connection was already in the room: nothing changed.
    Again,
}

/// What a leave changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// The user's last connection went: the others learn that they left.
    LastConnection,
    /// The user is still here on another connection.
    StillConnected,
}

/// The kinds of signaling message a room keeps for late joiners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    /// An offer or an answer: replaces everything its sender sent before.
    Description,
    Candidate,
}

/// A kept message: replayed, in order, to a participant who joins later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept<P> {
    /// Only this user may be replayed it (a `to`-targeted message).
    pub to: Option<UserId>,
    pub payload: P,
    size: usize,
}

/// Bounds of what one sender's messages may hold in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// Messages kept per sender, the description included.
    pub max_messages: usize,
    /// Bytes kept per sender; a description is kept whatever its size (it
    /// is already bounded by the event size limit).
    pub max_bytes: usize,
}

impl Default for ReplayLimits {
    fn default() -> Self {
        Self {
            max_messages: 64,
            max_bytes: 256 * 1024,
        }
    }
}

/// Whether a message was kept for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Kept,
    /// Over the sender's bounds: forwarded live, not replayed later.
    OverLimit,
}

#[derive(Debug)]
struct SenderLog<P> {
    sender: UserId,
    messages: VecDeque<Kept<P>>,
    bytes: usize,
}

#[derive(Debug)]
pub struct Room<S, P> {
    members: Vec<Member<S>>,
    logs: Vec<SenderLog<P>>,
    limits: ReplayLimits,
}

impl<S: Endpoint, P> Room<S, P> {
    pub fn new(limits: ReplayLimits) -> Self {
        Self {
            members: Vec::new(),
            logs: Vec::new(),
            limits,
        }
    }

    pub fn members(&self) -> &[Member<S>] {
        &self.members
    }

    pub fn member(&self, user: &UserId) -> Option<&Member<S>> {
        self.members.iter().find(|m| &m.user == user)
    }

    /// Everyone but `user`.
    pub fn others<'a>(&'a self, user: &'a UserId) -> impl Iterator<Item = &'a Member<S>> + 'a {
        self.members.iter().filter(move |m| &m.user != user)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Adds a connection of `user`.
    pub fn join(&mut self, user: &UserId, role: &str, now: Timestamp, socket: S) -> Joined {
        match self.members.iter_mut().find(|m| &m.user == user) {
            Some(m) if m.sockets.iter().any(|s| s.id() == socket.id()) => Joined::Again,
            Some(m) => {
                m.sockets.push(socket);
                Joined::AnotherConnection
            }
            None => {
                self.members.push(Member {
                    user: user.clone(),
                    role: role.to_owned(),
                    online_at: now,
                    sockets: vec![socket],
                });
                Joined::FirstConnection
            }
        }
    }

    /// Removes a connection; `None` when it was not in the room.
    pub fn leave(&mut self, socket: S::Id) -> Option<(UserId, Left)> {
        let mi = self
            .members
            .iter()
            .position(|m| m.sockets.iter().any(|s| s.id() == socket))?;
        let member = &mut self.members[mi];
        member.sockets.retain(|s| s.id() != socket);
        if member.sockets.is_empty() {
            let gone = self.members.remove(mi);
            Some((gone.user, Left::LastConnection))
        } else {
            Some((member.user.clone(), Left::StillConnected))
        }
    }

    /// Takes every connection out (the call ended); the kept messages go too.
    pub fn close(&mut self) -> Vec<Member<S>> {
        self.logs.clear();
        std::mem::take(&mut self.members)
    }

    /// Keeps a message `sender` sent, for participants who join later. A
    /// description starts the sender's log afresh; candidates follow it
    /// while the bounds allow.
    pub fn record(
        &mut self,
        sender: &UserId,
        kind: SignalKind,
        to: Option<UserId>,
        payload: P,
        size: usize,
    ) -> Recorded {
        let li = match self.logs.iter().position(|l| &l.sender == sender) {
            Some(i) => i,
            None => {
                self.logs.push(SenderLog {
                    sender: sender.clone(),
                    messages: VecDeque::new(),
                    bytes: 0,
                });
                self.logs.len() - 1
            }
        };
        let log = &mut self.logs[li];
        let kept = Kept { to, payload, size };
        match kind {
            SignalKind::Description => {
                log.messages.clear();
                log.messages.push_back(kept);
                log.bytes = size;
                Recorded::Kept
            }
            SignalKind::Candidate => {
                let fits = log.messages.len() < self.limits.max_messages
                    && log.bytes.saturating_add(size) <= self.limits.max_bytes;
                if fits {
                    log.messages.push_back(kept);
                    log.bytes += size;
                    Recorded::Kept
                } else {
                    Recorded::OverLimit
                }
            }
        }
    }

    /// What `user` is to be replayed: every other sender's kept messages
    /// meant for everyone or for `user`, each sender's in the order sent.
    pub fn replay_for<'a>(&'a self, user: &'a UserId) -> impl Iterator<Item = &'a Kept<P>> + 'a {
        self.logs
            .iter()
            .filter(move |l| &l.sender != user)
            .flat_map(|l| l.messages.iter())
            .filter(move |k| k.to.as_ref().is_none_or(|to| to == user))
    }

    /// Messages and bytes kept for `sender` (for tests and metrics).
    pub fn kept_by(&self, sender: &UserId) -> (usize, usize) {
        self.logs
            .iter()
            .find(|l| &l.sender == sender)
            .map_or((0, 0), |l| (l.messages.len(), l.bytes))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::test_support::{t0, user};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Sock(u32);
    impl Endpoint for Sock {
        type Id = u32;
        fn id(&self) -> u32 {
            self.0
        }
    }

    type TestRoom = Room<Sock, &'static str>;

    fn room() -> TestRoom {
        Room::new(ReplayLimits {
            max_messages: 3,
            max_bytes: 100,
        })
    }

    fn replayed(r: &TestRoom, who: &str) -> Vec<&'static str> {
        let who = user(who);
        r.replay_for(&who).map(|k| k.payload).collect()
    }

    #[test]
    fn two_tabs_are_one_presence() {
        let mut r = room();
        let (doc, pat) = (user("d"), user("p"));
        assert_eq!(
            r.join(&doc, "doctor", t0(), Sock(1)),
            Joined::FirstConnection
        );
        let later = t0() + Duration::seconds(5);
        assert_eq!(
            r.join(&doc, "doctor", later, Sock(2)),
            Joined::AnotherConnection
        );
        assert_eq!(r.join(&doc, "doctor", later, Sock(2)), Joined::Again);
        assert_eq!(
            r.join(&pat, "patient", later, Sock(3)),
            Joined::FirstConnection
        );
        assert_eq!(r.members().len(), 2);
        let d = r.member(&doc).unwrap();
        assert_eq!((d.sockets.len(), d.online_at), (2, t0()));
        assert_eq!(
            r.others(&doc).map(|m| m.user.as_str()).collect::<Vec<_>>(),
            ["p"]
        );

        assert_eq!(r.leave(1), Some((doc.clone(), Left::StillConnected)));
        assert_eq!(r.leave(1), None, "a connection leaves once");
        assert_eq!(r.leave(2), Some((doc.clone(), Left::LastConnection)));
        assert!(r.member(&doc).is_none());
        assert_eq!(r.leave(99), None);
        assert_eq!(r.leave(3), Some((pat, Left::LastConnection)));
        assert!(r.is_empty());
    }

    #[test]
    fn a_user_back_after_leaving_is_online_from_their_return() {
        let mut r = room();
        let doc = user("d");
        r.join(&doc, "doctor", t0(), Sock(1));
        r.leave(1);
        let back = t0() + Duration::seconds(60);
        assert_eq!(
            r.join(&doc, "doctor", back, Sock(2)),
            Joined::FirstConnection
        );
        assert_eq!(r.member(&doc).unwrap().online_at, back);
    }

    #[test]
    fn replay_is_the_latest_description_and_the_candidates_after_it() {
        let mut r = room();
        let doc = user("d");
        // Candidates before any description are kept too.
        r.record(&doc, SignalKind::Candidate, None, "c0", 10);
        assert_eq!(replayed(&r, "p"), ["c0"]);
        r.record(&doc, SignalKind::Description, None, "offer1", 10);
        r.record(&doc, SignalKind::Candidate, None, "c1", 10);
        assert_eq!(replayed(&r, "p"), ["offer1", "c1"]);
        // A new offer replaces what its sender kept.
        r.record(&doc, SignalKind::Description, None, "offer2", 10);
        r.record(&doc, SignalKind::Candidate, None, "c2", 10);
        assert_eq!(replayed(&r, "p"), ["offer2", "c2"]);
        assert_eq!(r.kept_by(&doc), (2, 20));
        // Nobody is replayed their own messages.
        assert!(replayed(&r, "d").is_empty());
    }

    #[test]
    fn senders_are_kept_apart_and_targets_respected() {
        let mut r = room();
        let (doc, pat) = (user("d"), user("p"));
        r.record(&doc, SignalKind::Description, None, "offer", 10);
        r.record(
            &pat,
            SignalKind::Description,
            Some(doc.clone()),
            "answer",
            10,
        );
        r.record(&doc, SignalKind::Candidate, Some(user("x")), "for-x", 10);
        // The patient's answer does not replace the doctor's offer.
        assert_eq!(replayed(&r, "p"), ["offer"]);
        assert_eq!(replayed(&r, "d"), ["answer"]);
        assert_eq!(replayed(&r, "x"), ["offer", "for-x"]);
        // A third party sees neither targeted message.
        assert_eq!(replayed(&r, "y"), ["offer"]);
    }

    #[test]
    fn bounds_drop_later_candidates_never_the_description() {
        let mut r = room();
        let doc = user("d");
        assert_eq!(
            r.record(&doc, SignalKind::Description, None, "big-offer", 500),
            Recorded::Kept
        );
        assert_eq!(
            r.record(&doc, SignalKind::Candidate, None, "c1", 1),
            Recorded::OverLimit
        );
        assert_eq!(replayed(&r, "p"), ["big-offer"]);

        r.record(&doc, SignalKind::Description, None, "offer", 10);
        assert_eq!(
            r.record(&doc, SignalKind::Candidate, None, "c1", 10),
            Recorded::Kept
        );
        assert_eq!(
            r.record(&doc, SignalKind::Candidate, None, "c2", 10),
            Recorded::Kept
        );
        // Three messages per sender at most.
        assert_eq!(
            r.record(&doc, SignalKind::Candidate, None, "c3", 10),
            Recorded::OverLimit
        );
        assert_eq!(replayed(&r, "p"), ["offer", "c1", "c2"]);

        // And 100 bytes at most.
        r.record(&doc, SignalKind::Description, None, "offer", 60);
        assert_eq!(
            r.record(&doc, SignalKind::Candidate, None, "c1", 40),
            Recorded::Kept
        );
        assert_eq!(
            r.record(&doc, SignalKind::Candidate, None, "c2", 1),
            Recorded::OverLimit
        );
        assert_eq!(r.kept_by(&doc), (2, 100));
    }

    #[test]
    fn closing_empties_the_room_and_frees_what_it_kept() {
        let mut r = room();
        let doc = user("d");
        r.join(&doc, "doctor", t0(), Sock(1));
        r.join(&doc, "doctor", t0(), Sock(2));
        r.record(&doc, SignalKind::Description, None, "offer", 10);
        let gone = r.close();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].sockets, [Sock(1), Sock(2)]);
        assert!(r.is_empty());
        assert!(replayed(&r, "p").is_empty());
        assert_eq!(r.kept_by(&doc), (0, 0));
    }
}
