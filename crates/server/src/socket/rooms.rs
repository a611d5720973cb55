//! The signaling rooms of this node: one per live call that someone joined.
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
    /// Joins between `enter` and `exit`.
    entering: usize,
}

pub(crate) struct SignalRoom {
    pub(crate) call_id: CallId,
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
    map: DashMap<String, Arc<SignalRoom>>,
    limits: ReplayLimits,
}

impl Rooms {
    pub fn new(limits: ReplayLimits) -> Self {
        Self {
            map: DashMap::new(),
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
            .or_insert_with(|| {
                Arc::new(SignalRoom {
                    call_id: call_id.clone(),
                    state: Mutex::new(RoomState {
                        room: Room::new(self.limits),
                        closed: false,
                        verified: false,
                        entering: 0,
                    }),
                })
            });
        entry.lock().entering += 1;
        entry.clone()
    }

    /// Ends a join in progress; a room nobody was admitted to goes away.
    pub(crate) fn exit(&self, room: &Arc<SignalRoom>) {
        room.lock().entering -= 1;
        self.map.remove_if(room.call_id.as_str(), |_, r| {
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

    /// Rooms held now (for metrics and tests).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
