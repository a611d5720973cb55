//! Server → client pushes. Every push goes to `user:<id>` rooms (all of a
//! user's tabs and devices) or to the `guests` room; never to a socket id
//! picked from a payload.

use consultd_domain::UserId;
use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::operators::BroadcastOperators;

/// The room every guest socket joins, for `doctor_online` / `doctor_offline`.
pub const GUESTS_ROOM: &str = "guests";

#[derive(Clone)]
pub struct Notifier {
    io: SocketIo,
}

impl Notifier {
    pub fn new(io: SocketIo) -> Self {
        Self { io }
    }

    /// To every socket of each user (once per socket even if a user is listed twice).
    pub async fn users<T: Serialize + ?Sized>(
        &self,
        users: &[&UserId],
        event: &'static str,
        data: &T,
    ) {
        let rooms: Vec<String> = users.iter().map(|u| u.room()).collect();
        let Some(root) = self.root(event) else { return };
        if let Err(e) = root.to(rooms).emit(event, data).await {
            tracing::warn!(event, error = %e, "push not sent");
        }
    }

    /// The root namespace, or `None` once the Socket.IO layer has closed
    /// (shutting down): the push is skipped. The transition is committed,
    /// and every (re)connect resyncs what the user must know.
    fn root(&self, event: &'static str) -> Option<BroadcastOperators> {
        let root = self.io.of("/");
        if root.is_none() {
            tracing::debug!(event, "push skipped: the socket layer is closed");
        }
        root
    }

    pub async fn user<T: Serialize + ?Sized>(&self, user: &UserId, event: &'static str, data: &T) {
        self.users(&[user], event, data).await;
    }

    pub async fn guests<T: Serialize + ?Sized>(&self, event: &'static str, data: &T) {
        let Some(root) = self.root(event) else { return };
        if let Err(e) = root.to(GUESTS_ROOM).emit(event, data).await {
            tracing::warn!(event, error = %e, "push not sent");
        }
    }
}
