//! WebRTC signaling (CONTRACT §3): the payloads, read without re-encoding
//! what is forwarded, and the handlers, which parse, ask who may, and hand
//! the step to the room port ([`RoomHub`]). Join is the only step that
//! reads the database.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use consultd_domain::UserId;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value as Json, json};

use super::ctx::SocketCtx;
use super::hub::{Admission, Joining, RoomHub};
use super::node::SocketState;
use super::payload::{self, Field};
use super::reply::Reply;
use super::rooms::{RoomKind, Signal, Sock};
use crate::error::ApiError;
use crate::input::raw_id_text;

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
        payload::room_id(Field::from_raw(keys.iter().find_map(|k| self.get(k))))
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
/// `None`: the hub took `reply` and answers itself.
pub(crate) fn relay(
    hub: &dyn RoomHub,
    ctx: &SocketCtx,
    signal: Signal,
    legacy: bool,
    payload: &RawValue,
    reply: &mut Option<Reply>,
) -> Result<Option<Json>, ApiError> {
    let fields = RawObject::parse(payload)?;
    let alias = fields.room_id(legacy)?;
    let to = fields.to()?;
    let body: Arc<RawValue> = serde_json::value::to_raw_value(&Forward {
        fields: &fields,
        from: ctx.principal.user_id.as_str(),
        socket_id: &ctx.sid,
    })
    .map_err(|_| ApiError::bad_request("the payload could not be forwarded"))?
    .into();
    hub.relay(ctx, &alias, signal, to.as_ref(), body, reply)?;
    Ok(reply.is_some().then(|| json!({ "ok": true })))
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
    // Joining again on the same socket: the same answer, nothing new.
    if let Some(ack) = state.hub.rejoin_ack(ctx, &alias) {
        if let Some(r) = reply.take() {
            r.ok(ack);
        }
        return Ok(());
    }
    let access = &state.services.rooms;
    let grant = access.room_grant(&ctx.principal, &alias).await?;
    let member = Joining {
        ctx,
        socket,
        alias: alias.into(),
        legacy,
        now: state.clock.now(),
        admission: Admission::Call(grant.call_id),
    };
    state.hub.join(member, access, reply).await.map(drop)
}

// ---- leave -----------------------------------------------------------------

/// `webrtc:leave_room`. Leaving a room one is not in is not an error.
pub(crate) fn leave(
    hub: &dyn RoomHub,
    ctx: &SocketCtx,
    payload: &RawValue,
) -> Result<Json, ApiError> {
    let alias = RawObject::parse(payload)?.room_id(false)?;
    hub.leave(ctx, RoomKind::Call, &alias);
    Ok(json!({ "ok": true, "roomId": alias }))
}
