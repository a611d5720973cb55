//! WebRTC signaling (CONTRACT §3), and room membership with presence for
//! signaling and chat rooms alike (§7).
//!
//! Join is the only step that reads the database; relaying is synchronous:
//! find the room in the socket's own list, lock that room, push the body to
//! each peer socket's send queue. Pushing while holding the room lock is
//! what keeps order for everyone: a late joiner's replay and the live
//! messages after it cannot interleave, and one socket's events are handled
//! one after another (see `dispatch`), so they leave in the order they came.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use consultd_domain::{Joined, Left, Recorded, SignalKind, Timestamp, UserId, format_timestamp};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json, json};

use super::ctx::SocketCtx;
use super::node::SocketState;
use super::reply::Reply;
use super::rooms::{Peer, RoomKind, RoomState, Rooms, Signal, SignalRoom, Sock, Stored};
use super::send::{send, send_raw};
use crate::error::ApiError;
use crate::input::raw_id_text;
use crate::sync::lock;

/// The longest room id accepted.
const MAX_ROOM_ID_CHARS: usize = 200;

/// The signaling events, by the name a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignalEvent {
    Join { legacy: bool },
    Relay { signal: Signal, legacy: bool },
    Leave,
}

// ---- payloads --------------------------------------------------------------

/// An object key, borrowed from the event text unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A payload object whose values stay as the client wrote them: forwarded
/// verbatim, never re-encoded (an SDP passes byte for byte).
pub(crate) struct RawObject<'a>(Vec<(Key<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(entry) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(RawObject(fields))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> RawObject<'a> {
    pub(crate) fn parse(payload: &'a RawValue) -> Result<Self, ApiError> {
        serde_json::from_str(payload.get())
            .map_err(|_| ApiError::bad_request("the payload must be an object with a `roomId`"))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a RawValue> {
        // The last one wins, as in JavaScript.
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.0 == key)
            .map(|(_, v)| *v)
    }

    /// The room id as the client spelled it. Legacy events also accept the
    /// older `appointmentId` / `consultationId`; numbers are read as text.
    pub(crate) fn room_id(&self, legacy: bool) -> Result<String, ApiError> {
        let keys: &[&str] = if legacy {
            &["roomId", "appointmentId", "consultationId"]
        } else {
            &["roomId"]
        };
        let raw = keys
            .iter()
            .find_map(|k| self.get(k))
            .ok_or_else(|| ApiError::bad_request("`roomId` is required"))?;
        let id = raw_id_text(raw).ok_or_else(|| {
            ApiError::bad_request("`roomId` must be a non-empty string or an integer")
        })?;
        if id.chars().count() > MAX_ROOM_ID_CHARS {
            return Err(ApiError::bad_request(format!(
                "`roomId` is longer than {MAX_ROOM_ID_CHARS} characters"
            )));
        }
        Ok(id)
    }

    /// The optional `to` (a user id); `null` is the same as absent.
    fn to(&self) -> Result<Option<UserId>, ApiError> {
        match self.get("to") {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            Some(raw) => raw_id_text(raw)
                .and_then(UserId::new)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request("`to` must be a user id")),
        }
    }
}

/// The forwarded body: the sender's fields verbatim, then `from` and
/// `fromSocketId` set by the server (a client cannot forge them: its own
/// `from`/`fromSocketId` are dropped).
struct Forward<'a> {
    fields: &'a RawObject<'a>,
    from: &'a str,
    socket_id: &'a str,
}

impl Serialize for Forward<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in &self.fields.0 {
            if k.0 != "from" && k.0 != "fromSocketId" {
                map.serialize_entry(&k.0, v)?;
            }
        }
        map.serialize_entry("from", self.from)?;
        map.serialize_entry("fromSocketId", self.socket_id)?;
        map.end()
    }
}

// ---- relay -----------------------------------------------------------------

/// `webrtc:offer` / `answer` / `ice_candidate` (and their legacy names).
pub(crate) fn relay(
    ctx: &SocketCtx,
    signal: Signal,
    legacy: bool,
    payload: &RawValue,
) -> Result<Json, ApiError> {
    let fields = RawObject::parse(payload)?;
    let alias = fields.room_id(legacy)?;
    let to = fields.to()?;
    let room = ctx
        .joined_room(RoomKind::Call, &alias)
        .ok_or_else(|| ApiError::forbidden("join the room before signaling in it"))?;
    let body: Arc<RawValue> = serde_json::value::to_raw_value(&Forward {
        fields: &fields,
        from: ctx.principal.user_id.as_str(),
        socket_id: &ctx.sid,
    })
    .map_err(|_| ApiError::bad_request("the payload could not be forwarded"))?
    .into();
    let me = &ctx.principal.user_id;

    let mut s = room.lock();
    if s.closed {
        return Err(ApiError::forbidden("the call has ended"));
    }
    if let Some(target) = &to
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
    if s.room.record(me, kind, to.clone(), stored, size) == Recorded::OverLimit {
        tracing::debug!(call = %room.key, "replay bound reached; candidate relayed live only");
    }
    for member in s.room.others(me) {
        if to.as_ref().is_some_and(|t| t != &member.user) {
            continue;
        }
        for peer in &member.sockets {
            send_raw(&peer.socket, signal.name(peer.legacy), &body);
        }
    }
    Ok(json!({ "ok": true }))
}

// ---- join ------------------------------------------------------------------

/// `webrtc:join_room` / `join_consultation_room`: the one signaling step
/// that reads the database. Answers through `reply` itself, so that the ack
/// goes out before the replay, under the room lock; an error is answered
/// by the caller if `reply` is still there.
pub(crate) async fn join(
    state: &SocketState,
    ctx: &SocketCtx,
    socket: &Sock,
    legacy: bool,
    payload: &RawValue,
    reply: &mut Option<Reply>,
) -> Result<(), ApiError> {
    let alias = RawObject::parse(payload)?.room_id(legacy)?;
    if let Some(room) = ctx.joined_room(RoomKind::Call, &alias) {
        // Joining again on the same socket: the same answer, nothing new.
        let s = room.lock();
        if !s.closed {
            if let Some(r) = reply.take() {
                r.ok(join_ack(&s, &ctx.principal.user_id, &alias));
            }
            return Ok(());
        }
    }
    let access = &state.services.rooms;
    let grant = access.room_grant(&ctx.principal, &alias).await?;
    let room = state.rooms.enter(RoomKind::Call, grant.call_id.as_str());
    let admitted = async {
        if !room.lock().verified && !access.room_still_live(&grant.call_id).await? {
            return Err(ApiError::forbidden("you may not join this room"));
        }
        let me = &ctx.principal.user_id;
        let now = state.clock.now();
        let member = Joining {
            ctx,
            socket,
            alias: alias.into(),
            legacy,
            now,
        };
        admit(member, &room, reply, |s, alias| join_ack(s, me, alias)).map(drop)
    }
    .await;
    state.rooms.exit(&room);
    admitted
}

fn join_ack(s: &RoomState, me: &UserId, alias: &str) -> Json {
    let peers: Vec<Json> = s
        .room
        .others(me)
        .map(|m| json!({ "userId": m.user.as_str(), "role": m.role }))
        .collect();
    json!({ "ok": true, "roomId": alias, "peers": peers })
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
}

/// Puts the socket in `room` (either kind): the ack `ack` builds, then —
/// all under the room lock — the replay (signaling), the join events to the
/// others on the user's first connection, and `presence:sync`. Returns the
/// users present now.
pub(crate) fn admit(
    member: Joining<'_>,
    room: &Arc<SignalRoom>,
    reply: &mut Option<Reply>,
    ack: impl FnOnce(&RoomState, &str) -> Json,
) -> Result<Vec<UserId>, ApiError> {
    let Joining {
        ctx,
        socket,
        alias,
        legacy,
        now,
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
        r.ok(ack(&s, &alias));
    }
    if change != Joined::Again && room.kind == RoomKind::Call {
        for kept in s.room.replay_for(me) {
            send_raw(socket, kept.payload.signal.name(legacy), &kept.payload.body);
        }
    }
    if change == Joined::FirstConnection {
        let role = ctx.principal.role.as_str();
        let events: &[&'static str] = match room.kind {
            RoomKind::Call => &["webrtc:peer_joined", "presence:join"],
            RoomKind::Chat => &["presence:join"],
        };
        to_others(
            &s,
            me,
            events,
            |alias| json!({ "roomId": alias, "userId": me.as_str(), "role": role }),
        );
    }
    if change != Joined::Again {
        presence_sync(&s);
    }
    tracing::debug!(room = %room.key, kind = ?room.kind, ?change, "joined room");
    Ok(s.room.members().iter().map(|m| m.user.clone()).collect())
}

/// `events`, in order and with one body, to every socket of everyone but
/// `me`, in the room spelling each joined with.
pub(crate) fn to_others(
    s: &RoomState,
    me: &UserId,
    events: &[&'static str],
    body: impl Fn(&str) -> Json,
) {
    for peer in s.room.others(me).flat_map(|m| &m.sockets) {
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

// ---- leave -----------------------------------------------------------------

/// `webrtc:leave_room` / `chat:leave_room`. Leaving a room one is not in
/// is not an error.
pub(crate) fn leave(
    ctx: &SocketCtx,
    rooms: &Rooms,
    kind: RoomKind,
    payload: &RawValue,
) -> Result<Json, ApiError> {
    let alias = RawObject::parse(payload)?.room_id(false)?;
    if let Some(room) = ctx.joined_room(kind, &alias) {
        ctx.forget_room(&room);
        leave_room(ctx, rooms, &room);
    }
    Ok(json!({ "ok": true, "roomId": alias }))
}

/// The socket closed: it leaves every room, and joins none after this.
pub(crate) fn leave_all(ctx: &SocketCtx, all: &Rooms) {
    let rooms = {
        let mut joined = lock(&ctx.joined);
        joined.gone = true;
        std::mem::take(&mut joined.rooms)
    };
    let mut seen: Vec<&Arc<SignalRoom>> = Vec::new();
    for (_, room) in &rooms {
        if !seen.iter().any(|r| Arc::ptr_eq(r, room)) {
            seen.push(room);
            leave_room(ctx, all, room);
        }
    }
}

fn leave_room(ctx: &SocketCtx, rooms: &Rooms, room: &SignalRoom) {
    {
        let mut s = room.lock();
        let Some((user, left)) = s.room.leave(ctx.socket_id) else {
            return;
        };
        if left == Left::LastConnection {
            let events: &[&'static str] = match room.kind {
                RoomKind::Call => &["webrtc:peer_left", "presence:leave"],
                RoomKind::Chat => &["presence:leave"],
            };
            to_others(
                &s,
                &user,
                events,
                |alias| json!({ "roomId": alias, "userId": user.as_str() }),
            );
        }
        presence_sync(&s);
        tracing::debug!(room = %room.key, kind = ?room.kind, ?left, "left room");
    }
    rooms.drop_if_idle(room);
}
