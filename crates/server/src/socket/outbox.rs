//! The push port for one node: pushes go to this node's sockets through
//! socketioxide's rooms (`user:<id>`, `guests`) or to a chat room's members
//! (room consequences are [`LocalRooms`](super::LocalRooms)'s).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use socketioxide::SocketIo;

use super::ctx::SocketCtx;
use super::owed::OwedIndex;
use super::rooms::{RoomKind, Rooms};
use super::send::send;
use super::told::Said;
use crate::service::outbox::{Audience, Outbox, Owed, Push};

/// The socketioxide room every guest socket joins, for `doctor_online` /
/// `doctor_offline`.
pub const GUESTS_ROOM: &str = "guests";

pub struct LocalOutbox {
    io: SocketIo,
    rooms: Arc<Rooms>,
    owed: Arc<OwedIndex>,
}

impl LocalOutbox {
    pub fn new(io: SocketIo, rooms: Arc<Rooms>, owed: Arc<OwedIndex>) -> Self {
        Self { io, rooms, owed }
    }

    /// For a push the connect resync also sends: marks who is owed it now
    /// (before it is emitted, see [`super::owed`]) and says what identifies
    /// it.
    fn resyncable(&self, to: &Audience, event: &str, body: &Value) -> Option<Said> {
        let said = Said::of(event, body)?;
        if let Audience::Users(users) = to {
            for user in users {
                if let Some(owed) = Owed::by_push(event, body, user) {
                    self.owed.mark(user, owed);
                }
            }
        }
        Some(said)
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

#[async_trait]
impl Outbox for LocalOutbox {
    async fn push(&self, to: Audience, push: Push) {
        let event = push.event();
        let said = if Said::resynced(event) {
            serde_json::to_value(&push)
                .ok()
                .and_then(|body| self.resyncable(&to, event, &body))
        } else {
            None
        };
        self.deliver(to, event, &push, said).await;
    }

    async fn push_json(&self, to: Audience, event: &str, body: serde_json::Value) {
        let said = self.resyncable(&to, event, &body);
        self.deliver(to, event, &body, said).await;
    }
}
