//! The push port for one node: pushes go to this node's sockets through
//! socketioxide's rooms (`user:<id>`, `guests`) or to a chat room's members
//! (room consequences are [`LocalRooms`](super::LocalRooms)'s).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use socketioxide::SocketIo;

use super::rooms::{RoomKind, Rooms};
use super::send::send;
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
    async fn deliver<T: Serialize + Sync + ?Sized>(&self, to: Audience, event: &str, push: &T) {
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
        if let Err(e) = root.to(targets).emit(event, push).await {
            tracing::warn!(event, error = %e, "push not sent");
        }
    }
}

#[async_trait]
impl Outbox for LocalOutbox {
    async fn push(&self, to: Audience, push: Push) {
        self.deliver(to, push.event(), &push).await;
    }

    async fn push_json(&self, to: Audience, event: &str, body: serde_json::Value) {
        self.deliver(to, event, &body).await;
    }
}
