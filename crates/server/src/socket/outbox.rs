//! The push port for one node: pushes go to this node's sockets through
//! socketioxide's rooms (`user:<id>`, `guests`) or to a chat room's members
//! (room consequences are [`LocalRooms`](super::LocalRooms)'s).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use socketioxide::SocketIo;

use super::ctx::SocketCtx;
use super::rooms::{RoomKind, Rooms};
use super::send::send;
use super::told::Said;
use crate::service::outbox::{Audience, Outbox, Push};

/// The socketioxide room every guest socket joins, for `doctor_online` /
/// `doctor_offline`.
pub const GUESTS_ROOM: &str = "guests";

pub struct LocalOutbox {
    io: SocketIo,
    rooms: Arc<Rooms>,
}

impl LocalOutbox {
    pub fn new(io: SocketIo, rooms: Arc<Rooms>) -> Self {
        Self { io, rooms }
    }
}

impl LocalOutbox {
    async fn deliver<T: Serialize + Sync + ?Sized>(
        &self,
        to: Audience,
        event: &str,
        push: &T,
        said: Option<Said>,
    ) {
        let targets: Vec<String> = match to {
            Audience::Users(users) => users.iter().map(|u| u.room()).collect(),
            Audience::Guests => vec![GUESTS_ROOM.to_owned()],
            Audience::ChatRoom(chat) => {
                if let Some(room) = self.rooms.get(RoomKind::Chat, chat.as_str()) {
                    let s = room.lock();
                    for peer in s.room.members().iter().flat_map(|m| &m.sockets) {
                        send(&peer.socket, event, push);
                    }
                }
                return;
            }
        };
        // `None` once the Socket.IO layer has closed (shutting down): the
        // push is skipped. The transition is committed, and every
        // (re)connect resyncs what the user must know.
        let Some(root) = self.io.of("/") else {
            tracing::debug!(event, "push skipped: the socket layer is closed");
            return;
        };
        let Some(said) = said else {
            if let Err(e) = root.to(targets).emit(event, push).await {
                tracing::warn!(event, error = %e, "push not sent");
            }
            return;
        };
        // A push the connect resync also sends: each socket is told once.
        for socket in root.to(targets).sockets() {
            let send = || {
                if let Err(e) = socket.emit(event, push) {
                    tracing::debug!(sid = %socket.id, event, error = %e, "push not delivered");
                }
            };
            match socket.extensions.get::<Arc<SocketCtx>>() {
                Some(ctx) => ctx.tell_once(said.clone(), false, send),
                None => send(),
            }
        }
    }
}

/// What identifies `push` for [`Said`], for the few that have it.
fn said_of<T: Serialize + ?Sized>(event: &str, push: &T) -> Option<Said> {
    if !Said::resynced(event) {
        return None;
    }
    serde_json::to_value(push)
        .ok()
        .and_then(|body| Said::of(event, &body))
}

#[async_trait]
impl Outbox for LocalOutbox {
    async fn push(&self, to: Audience, push: Push) {
        let said = said_of(push.event(), &push);
        self.deliver(to, push.event(), &push, said).await;
    }

    async fn push_json(&self, to: Audience, event: &str, body: serde_json::Value) {
        let said = Said::of(event, &body);
        self.deliver(to, event, &body, said).await;
    }
}
