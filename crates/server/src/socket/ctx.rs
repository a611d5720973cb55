//! What a socket carries from its authentication to its disconnect.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use consultd_domain::{Principal, TokenBucket};
use socketioxide::socket::Sid;

use super::rooms::{RoomKind, SignalRoom};
use super::told::{Said, Told};
use crate::sync::lock;

/// The rooms a socket is in, by the room id it used.
#[derive(Default)]
pub(crate) struct JoinedRooms {
    /// The socket has disconnected: it joins nothing more.
    pub(crate) gone: bool,
    pub(crate) rooms: Vec<(Arc<str>, Arc<SignalRoom>)>,
}

/// Per-socket state, built once when the socket is authenticated.
pub(crate) struct SocketCtx {
    pub(crate) principal: Principal,
    pub(crate) socket_id: Sid,
    /// `socket.id` as text, for `fromSocketId`.
    pub(crate) sid: String,
    pub(crate) span: tracing::Span,
    /// What it was told of the pushes a resync re-sends.
    told: Mutex<Told>,
    pub(crate) joined: Mutex<JoinedRooms>,
    /// Its send queue overflowed and its connection is being closed.
    pub(crate) overflowed: AtomicBool,
    /// Its event rate.
    bucket: Mutex<TokenBucket>,
}

impl SocketCtx {
    pub(crate) fn new(sid: Sid, principal: Principal, bucket: TokenBucket) -> Self {
        let span = tracing::info_span!(
            "socket",
            sid = %sid,
            user = %principal.user_id,
            role = %principal.role,
        );
        Self {
            principal,
            socket_id: sid,
            sid: sid.to_string(),
            span,
            told: Mutex::new(Told::resyncing()),
            joined: Mutex::new(JoinedRooms::default()),
            overflowed: AtomicBool::new(false),
            bucket: Mutex::new(bucket),
        }
    }

    /// Runs `send` unless the socket was already told `said` (or a later
    /// stage of it) by the resync or live. It sends under the lock, so
    /// the two paths' sends keep the order they were decided in.
    pub(crate) fn tell_once(&self, said: Said, by_resync: bool, send: impl FnOnce()) {
        let mut told = lock(&self.told);
        if told.first(said, by_resync, Instant::now()) {
            send();
        }
    }

    /// Around a resync: live pushes are remembered while it reads.
    pub(crate) fn set_resyncing(&self, on: bool) {
        lock(&self.told).set_resyncing(on);
    }

    /// Takes one event's worth from the socket's rate.
    pub(crate) fn try_take(&self, now: Instant) -> bool {
        lock(&self.bucket).try_take(now)
    }

    /// The room of `kind` this socket joined as `alias`.
    pub(crate) fn joined_room(&self, kind: RoomKind, alias: &str) -> Option<Arc<SignalRoom>> {
        lock(&self.joined)
            .rooms
            .iter()
            .find(|(a, r)| r.kind == kind && &**a == alias)
            .map(|(_, r)| r.clone())
    }

    /// Drops every alias of `room` from this socket's list.
    pub(crate) fn forget_room(&self, room: &SignalRoom) {
        lock(&self.joined)
            .rooms
            .retain(|(_, r)| !std::ptr::eq(&**r, room));
    }
}
