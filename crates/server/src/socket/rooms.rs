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

use consultd_domain::{CallId, Endpoint, ReplayLimits, Room};
use dashmap::DashMap;
use serde_json::value::RawValue;
use socketioxide::socket::Sid;

use super::dispatch::{Sock, SocketCtx};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomKind {
    /// WebRTC signaling; keyed by call id.
    Call,
    /// Chat; keyed by chat session id.
    Chat,
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
}

pub(crate) struct SignalRoom {
    /// The call id (signaling) or chat session id (chat).
    pub(crate) key: String,
    pub(crate) kind: RoomKind,
    state: Mutex<RoomState>,
}

impl SignalRoom {
    pub(crate) fn lock(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding a room lock leaves consistent data (every
        // update is a single push or remove), so a poisoned lock is used on.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub struct Rooms {
    /// Signaling rooms by call id.
    map: DashMap<String, Arc<SignalRoom>>,
    /// Chat rooms by session id, while someone is in them.
    chats: DashMap<String, Arc<SignalRoom>>,
    limits: ReplayLimits,
}

fn new_room(key: &str, kind: RoomKind, limits: ReplayLimits) -> Arc<SignalRoom> {
    Arc::new(SignalRoom {
        key: key.to_owned(),
        kind,
        state: Mutex::new(RoomState {
            room: Room::new(limits),
            closed: false,
            verified: false,
            ended: false,
            entering: 0,
        }),
    })
}

impl Rooms {
    pub fn new(limits: ReplayLimits) -> Self {
        Self {
            map: DashMap::new(),
            chats: DashMap::new(),
            limits,
        }
    }

    /// Registers a join in progress. A join reads the call, then enters,
    /// then — unless the room was already verified — reads the call again.
    /// Call end closes the room after its commit, so either close finds
    /// this room (and the join sees `closed`), or the commit came before the
    /// room existed and the second read sees the call over. No socket can
    /// end up in an ended call's room.
    pub(crate) fn enter(&self, call_id: &CallId) -> Arc<SignalRoom> {
        let entry = self
            .map
            .entry(call_id.as_str().to_owned())
            .or_insert_with(|| new_room(call_id.as_str(), RoomKind::Call, self.limits));
        entry.lock().entering += 1;
        entry.clone()
    }

    /// Ends a join in progress; a room nobody was admitted to goes away.
    pub(crate) fn exit(&self, room: &Arc<SignalRoom>) {
        room.lock().entering -= 1;
        self.map.remove_if(&room.key, |_, r| {
            let s = r.lock();
            s.entering == 0 && !s.verified
        });
    }

    /// The call ended: its sockets leave and what it kept is freed.
    pub fn close(&self, call_id: &CallId) {
        let Some((_, room)) = self.map.remove(call_id.as_str()) else {
            return;
        };
        let members = {
            let mut s = room.lock();
            s.closed = true;
            s.room.close()
        };
        for peer in members.iter().flat_map(|m| &m.sockets) {
            if let Some(ctx) = peer.socket.extensions.get::<Arc<SocketCtx>>() {
                ctx.forget_room(&room);
            }
        }
        tracing::debug!(call = %call_id, "signaling room closed");
    }

    /// Registers a chat join in progress (the room is made on first use).
    pub(crate) fn chat_enter(&self, session_id: &str) -> Arc<SignalRoom> {
        let entry = self
            .chats
            .entry(session_id.to_owned())
            .or_insert_with(|| new_room(session_id, RoomKind::Chat, self.limits));
        entry.lock().entering += 1;
        entry.clone()
    }

    /// Ends a chat join in progress.
    pub(crate) fn chat_exit(&self, room: &Arc<SignalRoom>) {
        room.lock().entering -= 1;
        self.chat_drop_if_empty(room);
    }

    /// A chat room nobody is in (or entering) is forgotten; the session and
    /// its messages are in the database.
    pub(crate) fn chat_drop_if_empty(&self, room: &SignalRoom) {
        self.chats.remove_if(&room.key, |_, r| {
            let s = r.lock();
            s.entering == 0 && s.room.members().is_empty()
        });
    }

    /// The chat session ended: its room (if anyone is in it) refuses typing.
    pub fn chat_ended(&self, session_id: &str) {
        if let Some(room) = self.chats.get(session_id) {
            room.lock().ended = true;
        }
    }

    /// Signaling rooms held now (for metrics and tests).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Chat rooms held now (for tests).
    pub fn chat_rooms(&self) -> usize {
        self.chats.len()
    }
}
