//! The room port: what a socket does in a room — join, relay, tell the
//! others, leave — and what it hears there (the replay, presence), behind
//! one trait, so the handlers in `signal` and `chat` never touch where
//! rooms live.
//!
//! [`LocalRooms`](super::local::LocalRooms) keeps every room in this
//! process. A cluster implements the same trait by delivering to its own
//! sockets first and then publishing the same step, in the same order, to
//! the other nodes. The services see only the part they cause,
//! [`RoomControl`]: a call's room closes, a chat session ends.

use std::sync::Arc;

use async_trait::async_trait;
use consultd_domain::{CallId, ChatId, Timestamp, UserId};
use serde_json::Value as Json;
use serde_json::value::RawValue;

use super::ctx::SocketCtx;
use super::reply::Reply;
use super::rooms::{RoomKind, Signal, Sock};
use crate::error::ApiError;
use crate::service::RoomAccess;
use crate::service::outbox::RoomControl;

/// Which room a socket was admitted to, as the access check decided.
pub(crate) enum Admission {
    /// A live call's signaling room; the ack lists the peers present.
    Call(CallId),
    /// A chat session's room; the ack carries `extra` (history, session,
    /// read markers) beside `ok` and `roomId`.
    Chat {
        chat: ChatId,
        /// The session took messages when the grant was read.
        open: bool,
        extra: serde_json::Map<String, Json>,
    },
}

impl Admission {
    pub(crate) fn room(&self) -> (RoomKind, &str) {
        match self {
            Self::Call(call) => (RoomKind::Call, call.as_str()),
            Self::Chat { chat, .. } => (RoomKind::Chat, chat.as_str()),
        }
    }
}

/// A socket on its way into a room.
pub(crate) struct Joining<'a> {
    pub(crate) ctx: &'a SocketCtx,
    pub(crate) socket: &'a Sock,
    /// The room id as the client spelled it.
    pub(crate) alias: Arc<str>,
    /// Whether it speaks the pre-seed-002 event names.
    pub(crate) legacy: bool,
    pub(crate) now: Timestamp,
    pub(crate) admission: Admission,
}

/// What a chat member tells the others in the room.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ChatNews<'a> {
    /// `chat:typing`; refused once the session has ended.
    Typing(bool),
    /// `chat:read`: the sender's read marker moved to this message.
    Read(&'a str),
}

#[async_trait]
pub(crate) trait RoomHub: RoomControl {
    /// The join ack again, for a socket already in the signaling room it
    /// joined as `alias`; `None` if it is not (or the room has closed).
    fn rejoin_ack(&self, ctx: &SocketCtx, alias: &str) -> Option<Json>;

    /// Admits the socket (the access check is done): the ack through
    /// `reply`, then the signaling replay, the join events to the others
    /// and `presence:sync`, in that order and before anything relayed
    /// after it. A call's end or a chat's end that commits while this runs
    /// is caught by reading again through `access`, so nobody lands in a
    /// closed room. Returns the users present now.
    async fn join(
        &self,
        member: Joining<'_>,
        access: &RoomAccess,
        reply: &mut Option<Reply>,
    ) -> Result<Vec<UserId>, ApiError>;

    /// The key (call or chat id) of the room of `kind` the socket joined
    /// as `alias`.
    fn joined(&self, ctx: &SocketCtx, kind: RoomKind, alias: &str) -> Option<String>;

    /// Relays a signal to the room's other members (or only `to`), and
    /// keeps it for late joiners. `body` already carries `from` and
    /// `fromSocketId`. A hub that answers later (once the step is stored
    /// elsewhere) takes `reply`; otherwise the caller acks.
    fn relay(
        &self,
        ctx: &SocketCtx,
        alias: &str,
        signal: Signal,
        to: Option<&UserId>,
        body: Arc<RawValue>,
        reply: &mut Option<Reply>,
    ) -> Result<(), ApiError>;

    /// Tells everyone else in chat room `chat` what `from` did.
    fn tell_chat(&self, from: &UserId, chat: &str, news: ChatNews<'_>) -> Result<(), ApiError>;

    /// Takes the socket out of the room of `kind` it joined as `alias`;
    /// not being in it is not an error.
    fn leave(&self, ctx: &SocketCtx, kind: RoomKind, alias: &str);

    /// The socket closed: it leaves every room, and joins none after this.
    fn leave_all(&self, ctx: &SocketCtx);
}
