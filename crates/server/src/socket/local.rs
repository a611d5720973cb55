//! The room port for one node: every room in this process's [`Rooms`],
//! every member a socket of this node.
//!
//! Relaying is synchronous: find the room in the socket's own list, lock
//! that room, push the body to each peer socket's send queue. Pushing while
//! holding the room lock is what keeps order for everyone: a late joiner's
//! replay and the live messages after it cannot interleave, and one
//! socket's events are handled one after another (see `dispatch`), so they
//! leave in the order they came.

use std::sync::Arc;

use async_trait::async_trait;
use consultd_domain::{
    CallId, ChatId, Joined, Left, Recorded, Room, SignalKind, UserId, format_timestamp,
};
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json, json};

use super::ctx::SocketCtx;
use super::hub::{Admission, ChatNews, Joining, RoomHub};
use super::reply::Reply;
use super::rooms::{Peer, RoomKind, RoomState, Rooms, Signal, SignalRoom, Stored};
use super::send::{send, send_raw};
use crate::error::ApiError;
use crate::service::RoomAccess;
use crate::service::outbox::RoomControl;
use crate::sync::lock;

pub struct LocalRooms {
    rooms: Arc<Rooms>,
}

impl LocalRooms {
    pub fn new(rooms: Arc<Rooms>) -> Self {
        Self { rooms }
    }
}

impl RoomControl for LocalRooms {
    fn close_call(&self, call: &CallId) {
        if close_room(&self.rooms, RoomKind::Call, call.as_str()) {
            tracing::debug!(call = %call, "signaling room closed");
        }
    }

    fn chat_ended(&self, chat: &ChatId) {
        if let Some(room) = self.rooms.get(RoomKind::Chat, chat.as_str()) {
            room.lock().ended = true;
        }
    }
}

#[async_trait]
impl RoomHub for LocalRooms {
    fn rejoin_ack(&self, ctx: &SocketCtx, alias: &str) -> Option<Json> {
        let room = ctx.joined_room(RoomKind::Call, alias)?;
        let s = room.lock();
        (!s.closed).then(|| call_ack(&s, &ctx.principal.user_id, alias))
    }

    async fn join(
        &self,
        member: Joining<'_>,
        access: &RoomAccess,
        reply: &mut Option<Reply>,
    ) -> Result<Vec<UserId>, ApiError> {
        let (kind, key) = member.admission.room();
        // Between the access check and this registration a call's or a
        // chat's end can commit and find no room to close; one more read
        // after registering leaves no gap (see [`Rooms::enter`]).
        let room = self.rooms.enter(kind, key);
        let admitted = async {
            match &member.admission {
                Admission::Call(call) => {
                    if !room.lock().verified && !access.room_still_live(call).await? {
                        return Err(ApiError::forbidden("you may not join this room"));
                    }
                }
                Admission::Chat { chat, open, .. } => {
                    let ended = !*open || access.chat_has_ended(chat.as_str()).await?;
                    if ended {
                        room.lock().ended = true;
                    }
                }
            }
            admit(member, &room, reply)
        }
        .await;
        self.rooms.exit(&room);
        admitted
    }

    fn joined(&self, ctx: &SocketCtx, kind: RoomKind, alias: &str) -> Option<String> {
        ctx.joined_room(kind, alias).map(|r| r.key.clone())
    }

    fn relay(
        &self,
        ctx: &SocketCtx,
        alias: &str,
        signal: Signal,
        to: Option<&UserId>,
        body: Arc<RawValue>,
        _reply: &mut Option<Reply>,
    ) -> Result<(), ApiError> {
        let room = ctx
            .joined_room(RoomKind::Call, alias)
            .ok_or_else(|| ApiError::forbidden("join the room before signaling in it"))?;
        let me = &ctx.principal.user_id;
        let mut s = room.lock();
        if s.closed {
            return Err(ApiError::forbidden("the call has ended"));
        }
        if let Some(target) = to
            && (target == me || s.room.member(target).is_none())
        {
            return Err(ApiError::not_found("that user is not in the room"));
        }
        let kind = match signal {
            Signal::Offer | Signal::Answer => SignalKind::Description,
            Signal::IceCandidate => SignalKind::Candidate,
        };
        let size = body.get().len();
        let stored = Stored {
            signal,
            body: body.clone(),
        };
        if s.room.record(me, kind, to.cloned(), stored, size) == Recorded::OverLimit {
            tracing::debug!(call = %room.key, "replay bound reached; candidate relayed live only");
        }
        for member in s.room.others(me) {
            if to.is_some_and(|t| t != &member.user) {
                continue;
            }
            for peer in &member.sockets {
                send_raw(&peer.socket, signal.name(peer.legacy), &body);
            }
        }
        Ok(())
    }

    fn tell_chat(&self, from: &UserId, chat: &str, news: ChatNews<'_>) -> Result<(), ApiError> {
        let Some(room) = self.rooms.get(RoomKind::Chat, chat) else {
            // Nobody is in it any more: nobody to tell.
            return Ok(());
        };
        let s = room.lock();
        match news {
            ChatNews::Typing(is_typing) => {
                if s.ended {
                    return Err(ApiError::Conflict("the chat session has ended".into()));
                }
                to_others(
                    &s.room,
                    from,
                    &["chat:typing"],
                    |alias| json!({ "roomId": alias, "userId": from.as_str(), "isTyping": is_typing }),
                );
            }
            ChatNews::Read(message_id) => to_others(
                &s.room,
                from,
                &["chat:read"],
                |alias| json!({ "roomId": alias, "userId": from.as_str(), "messageId": message_id }),
            ),
        }
        Ok(())
    }

    fn leave(&self, ctx: &SocketCtx, kind: RoomKind, alias: &str) {
        if let Some(room) = ctx.joined_room(kind, alias) {
            ctx.forget_room(&room);
            self.leave_room(ctx, &room);
        }
    }

    fn leave_all(&self, ctx: &SocketCtx) {
        let rooms = {
            let mut joined = lock(&ctx.joined);
            joined.gone = true;
            std::mem::take(&mut joined.rooms)
        };
        let mut seen: Vec<&Arc<SignalRoom>> = Vec::new();
        for (_, room) in &rooms {
            if !seen.iter().any(|r| Arc::ptr_eq(r, room)) {
                seen.push(room);
                self.leave_room(ctx, room);
            }
        }
    }
}

impl LocalRooms {
    fn leave_room(&self, ctx: &SocketCtx, room: &SignalRoom) {
        {
            let mut s = room.lock();
            let Some((user, left)) = s.room.leave(ctx.socket_id) else {
                return;
            };
            if left == Left::LastConnection {
                to_others(
                    &s.room,
                    &user,
                    room.kind.departure_events(),
                    |alias| json!({ "roomId": alias, "userId": user.as_str() }),
                );
            }
            presence_sync(&s);
            tracing::debug!(room = %room.key, kind = ?room.kind, ?left, "left room");
        }
        self.rooms.drop_if_idle(room);
    }
}

fn call_ack(s: &RoomState, me: &UserId, alias: &str) -> Json {
    let peers: Vec<Json> = s
        .room
        .others(me)
        .map(|m| json!({ "userId": m.user.as_str(), "role": m.role }))
        .collect();
    json!({ "ok": true, "roomId": alias, "peers": peers })
}

/// Puts the socket in `room` (either kind): the ack, then — all under the
/// room lock — the replay (signaling), the join events to the others on
/// the user's first connection, and `presence:sync`. Returns the users
/// present now.
fn admit(
    member: Joining<'_>,
    room: &Arc<SignalRoom>,
    reply: &mut Option<Reply>,
) -> Result<Vec<UserId>, ApiError> {
    let Joining {
        ctx,
        socket,
        alias,
        legacy,
        now,
        admission,
    } = member;
    let me = &ctx.principal.user_id;
    let mut joined = lock(&ctx.joined);
    if joined.gone {
        return Err(ApiError::forbidden("the connection has closed"));
    }
    let mut s = room.lock();
    if s.closed {
        return Err(ApiError::forbidden("you may not join this room"));
    }
    s.verified = true;
    let peer = Peer {
        socket: socket.clone(),
        alias: alias.clone(),
        legacy,
    };
    let change = s.room.join(me, ctx.principal.role.as_str(), now, peer);
    // A repeated join under the same spelling is one entry, however often
    // a client repeats it.
    if !joined
        .rooms
        .iter()
        .any(|(a, r)| Arc::ptr_eq(r, room) && *a == alias)
    {
        joined.rooms.push((alias.clone(), room.clone()));
    }
    drop(joined);

    if let Some(r) = reply.take() {
        let ack = match admission {
            Admission::Call(_) => call_ack(&s, me, &alias),
            Admission::Chat { mut extra, .. } => {
                extra.insert("ok".into(), Json::Bool(true));
                extra.insert("roomId".into(), Json::from(&*alias));
                Json::Object(extra)
            }
        };
        r.ok(ack);
    }
    if change != Joined::Again && room.kind == RoomKind::Call {
        for kept in s.room.replay_for(me) {
            send_raw(socket, kept.payload.signal.name(legacy), &kept.payload.body);
        }
    }
    if change == Joined::FirstConnection {
        let role = ctx.principal.role.as_str();
        to_others(
            &s.room,
            me,
            room.kind.arrival_events(),
            |alias| json!({ "roomId": alias, "userId": me.as_str(), "role": role }),
        );
    }
    if change != Joined::Again {
        presence_sync(&s);
    }
    tracing::debug!(room = %room.key, kind = ?room.kind, ?change, "joined room");
    Ok(s.room.members().iter().map(|m| m.user.clone()).collect())
}

/// Closes this node's room of `kind` and `key` for good and takes it out of
/// its sockets' room lists; `false` if there was none.
pub(super) fn close_room(rooms: &Rooms, kind: RoomKind, key: &str) -> bool {
    let Some((room, sockets)) = rooms.close(kind, key) else {
        return false;
    };
    for socket in sockets {
        if let Some(ctx) = socket.extensions.get::<Arc<SocketCtx>>() {
            ctx.forget_room(&room);
        }
    }
    true
}

/// `events`, in order and with one body, to this node's every socket of
/// everyone in `room` but `me`, in the room spelling each joined with.
pub(super) fn to_others(
    room: &Room<Peer, Stored>,
    me: &UserId,
    events: &[&'static str],
    body: impl Fn(&str) -> Json,
) {
    for peer in room.others(me).flat_map(|m| &m.sockets) {
        let body = body(&peer.alias);
        for event in events {
            send(&peer.socket, event, &body);
        }
    }
}

/// `presence:sync` to the whole room: one entry per user.
fn presence_sync(s: &RoomState) {
    let users: Map<String, Json> = s
        .room
        .members()
        .iter()
        .map(|m| {
            (
                m.user.as_str().to_owned(),
                json!({
                    "role": m.role,
                    "onlineAt": format_timestamp(m.online_at),
                    "connections": m.sockets.len(),
                }),
            )
        })
        .collect();
    let users = Json::Object(users);
    for peer in s.room.members().iter().flat_map(|m| &m.sockets) {
        send(
            &peer.socket,
            "presence:sync",
            &json!({ "roomId": &*peer.alias, "users": &users }),
        );
    }
}
