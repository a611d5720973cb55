//! The rooms of this node: a signaling room per live call that someone
//! joined (§3), and a chat room per chat session someone is in (§7). Both
//! keep presence by user (the domain's [`Room`]); only signaling rooms keep
//! messages for late joiners.
//!
//! Locks, and why there is no global one on the relay path: a socket keeps
//! the rooms it joined in its own context, so relaying is "look up my room,
//! lock that room, push to the peers' send queues". The registry map is
//! touched only by join, failed joins and call end.
//!
//! Lock order: a socket's `joined` list, then a room. Call end takes the
//! room, releases it, then each socket's list — never the reverse nesting.

use std::sync::{Arc, Mutex, MutexGuard};

use consultd_domain::{Endpoint, ReplayLimits, Room};
use dashmap::DashMap;
use serde_json::value::RawValue;
use socketioxide::adapter::LocalAdapter;
use socketioxide::socket::{Sid, Socket};

use crate::sync::lock;

/// A connected socket of this node.
pub(crate) type Sock = Arc<Socket<LocalAdapter>>;

/// A socket in a room, with the spelling of the room id it joined with and
/// whether it speaks the pre-seed-002 event names.
#[derive(Clone)]
pub(crate) struct Peer {
    pub(crate) socket: Sock,
    pub(crate) alias: Arc<str>,
    pub(crate) legacy: bool,
}

impl Endpoint for Peer {
    type Id = Sid;
    fn id(&self) -> Sid {
        self.socket.id
    }
}

/// What a room is for: events looked up in a socket's room list only find
/// rooms of their own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RoomKind {
    /// WebRTC signaling; keyed by call id.
    Call,
    /// Chat; keyed by chat session id.
    Chat,
}

impl RoomKind {
    /// What the others hear when a user's first connection joins.
    pub(crate) fn arrival_events(self) -> &'static [&'static str] {
        match self {
            Self::Call => &["webrtc:peer_joined", "presence:join"],
            Self::Chat => &["presence:join"],
        }
    }

    /// What the others hear when a user's last connection leaves.
    pub(crate) fn departure_events(self) -> &'static [&'static str] {
        match self {
            Self::Call => &["webrtc:peer_left", "presence:leave"],
            Self::Chat => &["presence:leave"],
        }
    }
}

/// The relayed events a room keeps for late joiners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Offer,
    Answer,
    IceCandidate,
}

impl Signal {
    pub(crate) fn name(self, legacy: bool) -> &'static str {
        match (self, legacy) {
            (Self::Offer, false) => "webrtc:offer",
            (Self::Answer, false) => "webrtc:answer",
            (Self::IceCandidate, false) => "webrtc:ice_candidate",
            (Self::Offer, true) => "webrtc_offer",
            (Self::Answer, true) => "webrtc_answer",
            (Self::IceCandidate, true) => "webrtc_ice_candidate",
        }
    }
}

/// A forwarded message as sent: its kind and its body with `from` and
/// `fromSocketId` already in.
pub(crate) struct Stored {
    pub(crate) signal: Signal,
    pub(crate) body: Arc<RawValue>,
}

pub(crate) struct RoomState {
    pub(crate) room: Room<Peer, Stored>,
    /// The call ended: nobody joins or relays any more.
    pub(crate) closed: bool,
    /// Someone was admitted after the room existed, so the call was live
    /// after this room was registered (see [`Rooms::enter`]).
    pub(crate) verified: bool,
    /// Chat: the session has ended (typing is refused; history stays).
    pub(crate) ended: bool,
    /// Joins between `enter` and `exit`.
    entering: usize,
    /// Several nodes: everyone in the room on every node (`presence:sync`'s
    /// `users`), as the room stream last said.
    pub(crate) everyone: serde_json::Map<String, serde_json::Value>,
}

impl RoomState {
    /// Nobody is in it or entering it, and it keeps nothing a later joiner
    /// needs: a chat room once empty (its history is in the database); a
    /// signaling room only if nobody was ever admitted (an admitted one
    /// keeps the call's signaling for late joiners until the call ends).
    fn idle(&self, kind: RoomKind) -> bool {
        self.entering == 0
            && self.room.members().is_empty()
            && (kind == RoomKind::Chat || !self.verified)
    }
}

pub(crate) struct SignalRoom {
    /// The call id (signaling) or chat session id (chat).
    pub(crate) key: String,
    pub(crate) kind: RoomKind,
    state: Mutex<RoomState>,
}

impl SignalRoom {
    pub(crate) fn lock(&self) -> MutexGuard<'_, RoomState> {
        lock(&self.state)
    }
}

/// The rooms of this node, by kind and key.
pub struct Rooms {
    map: DashMap<(RoomKind, String), Arc<SignalRoom>>,
    limits: ReplayLimits,
}

impl Rooms {
    pub fn new(limits: ReplayLimits) -> Self {
        Self {
            map: DashMap::new(),
            limits,
        }
    }

    /// Registers a join in progress (the room is made on first use).
    ///
    /// A signaling join reads the call, then enters, then — unless the room
    /// was already verified — reads the call again. Call end closes the
    /// room after its commit, so either close finds this room (and the join
    /// sees `closed`), or the commit came before the room existed and the
    /// second read sees the call over. No socket can end up in an ended
    /// call's room. A chat join does the same with the session's end.
    pub(crate) fn enter(&self, kind: RoomKind, key: &str) -> Arc<SignalRoom> {
        let entry = self.map.entry((kind, key.to_owned())).or_insert_with(|| {
            Arc::new(SignalRoom {
                key: key.to_owned(),
                kind,
                state: Mutex::new(RoomState {
                    room: Room::new(self.limits),
                    closed: false,
                    verified: false,
                    ended: false,
                    entering: 0,
                    everyone: serde_json::Map::new(),
                }),
            })
        });
        entry.lock().entering += 1;
        entry.clone()
    }

    /// Ends a join in progress.
    pub(crate) fn exit(&self, room: &SignalRoom) {
        room.lock().entering -= 1;
        self.drop_if_idle(room);
    }

    /// Forgets a room that holds nothing any more (see [`RoomState::idle`]).
    pub(crate) fn drop_if_idle(&self, room: &SignalRoom) {
        self.map
            .remove_if(&(room.kind, room.key.clone()), |_, r| r.lock().idle(r.kind));
    }

    /// The room of `kind` and `key`, if anyone is in it (or entering it).
    pub(crate) fn get(&self, kind: RoomKind, key: &str) -> Option<Arc<SignalRoom>> {
        self.map
            .get(&(kind, key.to_owned()))
            .map(|r| r.value().clone())
    }

    /// Closes a room for good (its call ended): nobody joins or relays any
    /// more, and what it kept is freed. Returns it with the sockets that
    /// were in it, which the caller takes out of their room lists.
    pub(crate) fn close(&self, kind: RoomKind, key: &str) -> Option<(Arc<SignalRoom>, Vec<Sock>)> {
        let (_, room) = self.map.remove(&(kind, key.to_owned()))?;
        let members = {
            let mut s = room.lock();
            s.closed = true;
            s.room.close()
        };
        let sockets = members
            .iter()
            .flat_map(|m| &m.sockets)
            .map(|p| p.socket.clone())
            .collect();
        Some((room, sockets))
    }

    /// Every room held now.
    pub(crate) fn all(&self) -> Vec<Arc<SignalRoom>> {
        self.map.iter().map(|r| r.value().clone()).collect()
    }

    /// Signaling rooms held now (for metrics and tests).
    pub fn len(&self) -> usize {
        self.count(RoomKind::Call)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Chat rooms held now (for tests).
    pub fn chat_rooms(&self) -> usize {
        self.count(RoomKind::Chat)
    }

    fn count(&self, kind: RoomKind) -> usize {
        self.map.iter().filter(|r| r.key().0 == kind).count()
    }
}
