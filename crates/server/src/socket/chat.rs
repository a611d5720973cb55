//! Chat rooms (CONTRACT §7): join with history, send with idempotent
//! resend, typing, read markers, leave. A chat room's id is its session id.
//!
//! Authorisation is decided at join (the customer, or the assigned host);
//! every later event needs the socket to be in the room. Events that touch
//! the database (join, send, read) run in the socket's ordered lane, so one
//! socket's messages are stored and broadcast in the order it sent them.

use consultd_domain::{ContentError, MessageContent};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json, json};

use super::ctx::SocketCtx;
use super::hub::{Admission, ChatNews, Joining};
use super::node::SocketState;
use super::payload::{self, Field, IdText};
use super::reply::Reply;
use super::rooms::{RoomKind, Sock};
use crate::error::ApiError;
use crate::service::views::ChatSessionView;

/// The longest client message id kept.
const MAX_CLIENT_MESSAGE_ID_CHARS: usize = 200;

/// The chat events, by the name a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChatEvent {
    Join,
    Send,
    Typing,
    Read,
    Leave,
}

impl ChatEvent {
    /// Whether it waits on the database (and so runs in the socket's lane).
    pub(crate) fn needs_task(self) -> bool {
        matches!(self, Self::Join | Self::Send | Self::Read)
    }
}

fn bad(msg: &str) -> ApiError {
    ApiError::bad_request(msg)
}

/// The session id of the chat room the socket joined as `alias`. Asked
/// only once the whole payload is known to be well formed: a wrong type is
/// `bad_request` whoever sends it (parse, validate, then authorise).
fn in_room(state: &SocketState, ctx: &SocketCtx, alias: &str) -> Result<String, ApiError> {
    state
        .hub
        .joined(ctx, RoomKind::Chat, alias)
        .ok_or_else(|| ApiError::forbidden("join the chat room first"))
}

// ---- payloads --------------------------------------------------------------

/// `chat:join_room` and `chat:leave_room`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RoomPayload {
    room_id: Field<IdText>,
}

/// `chat:send_message`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SendPayload {
    room_id: Field<IdText>,
    content: Field<String>,
    client_message_id: Field<IdText>,
}

/// `chat:typing`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TypingPayload {
    room_id: Field<IdText>,
    is_typing: Field<bool>,
}

/// `chat:read`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ReadPayload {
    room_id: Field<IdText>,
    message_id: Field<IdText>,
}

// ---- join --------------------------------------------------------------------

/// `chat:join_room {roomId}`: ack `{ok, roomId, messages, session,
/// readMarkers}` (the latest 50 messages, oldest first), then presence.
/// If the customer and the assigned host are now both here, the session
/// may go live.
pub(crate) async fn join(
    state: &SocketState,
    ctx: &SocketCtx,
    socket: &Sock,
    payload: &RawValue,
    reply: &mut Option<Reply>,
) -> Result<(), ApiError> {
    let alias = payload::room_id(payload::parse::<RoomPayload>(payload)?.room_id)?;
    let access = &state.services.rooms;
    let grant = access.chat_grant(&ctx.principal, &alias).await?;
    let session = ChatSessionView::from(&grant.session);
    let read_markers: Map<String, Json> = grant
        .read_markers
        .into_iter()
        .map(|(user, message)| (user, Json::String(message)))
        .collect();
    let mut extra = Map::new();
    extra.insert("messages".into(), json!(grant.messages));
    extra.insert("session".into(), json!(session));
    extra.insert("readMarkers".into(), Json::Object(read_markers));
    let open = grant.session.accepts_messages();
    let chat = grant.session.id;
    let member = Joining {
        ctx,
        socket,
        alias: alias.into(),
        legacy: false,
        now: state.clock.now(),
        admission: Admission::Chat {
            chat: chat.clone(),
            open,
            extra,
        },
    };
    let present = state.hub.join(member, access, reply).await?;
    if present.len() >= 2
        && let Err(e) = state
            .services
            .chat
            .chat_presence(chat.as_str(), &present)
            .await
    {
        // The next join (or a reconnect's) tries again.
        tracing::warn!(chat = %chat, error = %e, "presence start failed");
    }
    Ok(())
}

// ---- send ------------------------------------------------------------------

/// `chat:send_message {roomId, content, clientMessageId?}`: stored, then
/// `chat:new_message` to every socket in the room (the sender's included);
/// ack `{ok, message}`. A resend of a stored `clientMessageId` is answered
/// with the stored message (and `duplicate: true`) and broadcast to no one.
pub(crate) async fn send(
    state: &SocketState,
    ctx: &SocketCtx,
    payload: &RawValue,
) -> Result<Json, ApiError> {
    let fields: SendPayload = payload::parse(payload)?;
    let alias = payload::room_id(fields.room_id)?;
    let content = fields.content.required("content", "a string")?;
    let content =
        MessageContent::parse(content, state.config.max_chat_chars).map_err(|e| match e {
            ContentError::Empty => bad("`content` must not be empty"),
            ContentError::TooLong { max_chars } => {
                ApiError::TooLarge(format!("messages are limited to {max_chars} characters"))
            }
        })?;
    let client_message_id = client_message_id(fields.client_message_id)?;
    let chat = in_room(state, ctx, &alias)?;
    let posted = state
        .services
        .chat
        .post_message(&ctx.principal, &chat, content, client_message_id)
        .await?;
    let mut ack = json!({ "ok": true, "message": posted.message });
    if !posted.created {
        ack["duplicate"] = Json::Bool(true);
    }
    Ok(ack)
}

/// The optional `clientMessageId`: a string or an integer (as text);
/// `null` is the same as absent.
fn client_message_id(field: Field<IdText>) -> Result<Option<String>, ApiError> {
    field
        .optional()
        .and_then(|id| match id {
            Some(IdText(id))
                if id.chars().count() > MAX_CLIENT_MESSAGE_ID_CHARS
                    || id.chars().any(char::is_control) =>
            {
                Err(())
            }
            id => Ok(id.map(|IdText(id)| id)),
        })
        .map_err(|()| {
            bad("`clientMessageId` must be a non-empty string (at most 200 characters) or an integer")
        })
}

// ---- typing, read ----------------------------------------------------------

/// `chat:typing {roomId, isTyping}` → `chat:typing {roomId, userId,
/// isTyping}` to the others.
pub(crate) fn typing(
    state: &SocketState,
    ctx: &SocketCtx,
    payload: &RawValue,
) -> Result<Json, ApiError> {
    let fields: TypingPayload = payload::parse(payload)?;
    let alias = payload::room_id(fields.room_id)?;
    let is_typing = fields.is_typing.required("isTyping", "true or false")?;
    let chat = in_room(state, ctx, &alias)?;
    state
        .hub
        .tell_chat(&ctx.principal.user_id, &chat, ChatNews::Typing(is_typing))?;
    Ok(json!({ "ok": true }))
}

/// `chat:read {roomId, messageId}`: the read marker moves forward (never
/// back), and the others get `chat:read {roomId, userId, messageId}`.
pub(crate) async fn read(
    state: &SocketState,
    ctx: &SocketCtx,
    payload: &RawValue,
) -> Result<Json, ApiError> {
    let fields: ReadPayload = payload::parse(payload)?;
    let alias = payload::room_id(fields.room_id)?;
    let Field::Given(IdText(message_id)) = fields.message_id else {
        return Err(bad("`messageId` must be a message id"));
    };
    let chat = in_room(state, ctx, &alias)?;
    let moved = state
        .services
        .chat
        .mark_read(&ctx.principal, &chat, &message_id)
        .await?;
    if moved {
        state
            .hub
            .tell_chat(&ctx.principal.user_id, &chat, ChatNews::Read(&message_id))?;
    }
    Ok(json!({ "ok": true, "roomId": chat, "messageId": message_id }))
}

// ---- leave -----------------------------------------------------------------

/// `chat:leave_room {roomId}`. Leaving a room one is not in is not an error.
pub(crate) fn leave(
    state: &SocketState,
    ctx: &SocketCtx,
    payload: &RawValue,
) -> Result<Json, ApiError> {
    let alias = payload::room_id(payload::parse::<RoomPayload>(payload)?.room_id)?;
    state.hub.leave(ctx, RoomKind::Chat, &alias);
    Ok(json!({ "ok": true, "roomId": alias }))
}
