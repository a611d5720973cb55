//! The room port for several nodes: rooms live in Redis, changed only by
//! one Lua script (`shared_rooms.lua`), and every change is announced on
//! one Redis stream in the same atomic step. Each node reads the stream
//! with one task and delivers each entry to its own sockets, in stream
//! order, in the spelling each socket joined with.
//!
//! - **Writes keep each socket's order.** Handlers never call Redis
//!   themselves: they queue the step for this node's one writer, which
//!   sends what is queued as one pipeline over one connection. Redis runs
//!   a connection's commands in order, and a socket's events are handled
//!   in order (`dispatch`), so a sender's messages enter the stream in the
//!   order sent. A relay is acked once Redis took it.
//! - **A join is answered at its own stream entry.** The handler parks
//!   what the script returned (the ack, the replay) and the reader sends
//!   it when it reaches that join's entry, then makes the socket a local
//!   member. Everything before the entry is in the replay, everything
//!   after it arrives live: nothing twice, nothing missed.
//! - **Nodes heartbeat.** Every second each node marks itself alive and
//!   reaps any node silent for [`STALE_MS`]: that node's sockets leave
//!   their rooms, and each user's last connection is announced as gone.
//!   A node that finds itself unknown (Redis restarted, or it was reaped
//!   while cut off) registers its sockets again.
//! - **Redis down** is said, not hidden: signaling is answered
//!   `unavailable` and `/readyz` is 503 until a heartbeat succeeds again.
//!
//! This node's own sockets in each room are kept in [`Rooms`] as with one
//! node, so pushes to a chat room (which cross nodes on the PostgreSQL
//! bus) find them the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use consultd_domain::{CallId, ChatId, ReplayLimits, Timestamp, UserId, format_timestamp};
use dashmap::DashMap;
use redis::aio::ConnectionManager;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Script, Value as RedisValue};
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json, json};
use tokio::sync::{mpsc, oneshot};

use super::ctx::SocketCtx;
use super::hub::{Admission, ChatNews, Joining, RoomHub};
use super::local::{close_room, to_others};
use super::reply::Reply;
use super::rooms::{Peer, RoomKind, Rooms, Signal, SignalRoom, Sock};
use super::send::{send, send_raw};
use crate::cluster::RedisHealth;
use crate::error::ApiError;
use crate::presence::{ClusterPresence, Elsewhere};
use crate::service::RoomAccess;
use crate::service::outbox::RoomControl;
use crate::sync::lock;
use crate::telemetry::{NODES_REAPED, ROOM_STREAM_LENGTH};

/// A node silent for this long is taken as dead and reaped.
pub const STALE_MS: u64 = 4_000;
const BEAT: Duration = Duration::from_secs(1);
/// The stream keeps about this many entries; a reader further behind has
/// lost some (it cannot be: it reads continuously).
const STREAM_LEN: &str = "100000";
/// How long a read blocks waiting for entries.
const BLOCK_MS: usize = 1_000;
/// How long the reader waits for a join's handler to hand over its ack.
const PARK_WAIT: Duration = Duration::from_secs(2);
const SCRIPT: &str = include_str!("shared_rooms.lua");

fn unreachable_redis() -> ApiError {
    ApiError::Unavailable("the room service (Redis) is unreachable; retry".into())
}

fn check(health: &RedisHealth) -> Result<(), ApiError> {
    health.ready().map_err(|_| unreachable_redis())
}

/// What to do with a script's answer.
enum Done {
    /// A relay: ack the client (`ok`, or why not).
    Ack(Option<Reply>),
    /// Hand the answer to a waiting handler.
    Answer(oneshot::Sender<Result<RedisValue, ApiError>>),
    /// Nothing waits for it.
    Ignore,
}

struct Op {
    args: Vec<String>,
    done: Done,
}

/// What a join's handler hands to the reader.
struct Parked {
    ctx: Arc<SocketCtx>,
    socket: Sock,
    alias: Arc<str>,
    legacy: bool,
    now: Timestamp,
    reply: Option<Reply>,
    ack: Json,
    /// `signal\nbody` per replayed message.
    replay: Vec<String>,
    /// The chat session no longer takes messages.
    ended: bool,
    admitted: oneshot::Sender<Result<(), ApiError>>,
}

pub struct SharedRooms {
    rooms: Arc<Rooms>,
    node: String,
    prefix: String,
    /// The replay bounds per sender (messages, bytes), as the relay
    /// script's arguments.
    replay_bounds: [String; 2],
    writer: mpsc::UnboundedSender<Op>,
    /// Joins whose script ran, until the reader reaches their entry.
    parked: DashMap<String, oneshot::Receiver<Parked>>,
    health: Arc<RedisHealth>,
}

/// The tasks a node runs for its shared rooms.
pub struct SharedRoomTasks {
    writer: mpsc::UnboundedReceiver<Op>,
    commands: ConnectionManager,
    client: redis::Client,
    script: Script,
    /// The stream position to read after.
    after: String,
}

impl SharedRooms {
    /// Connects to Redis (refusing to start if it does not answer) and
    /// returns the hub with the tasks to spawn ([`SharedRooms::run`]).
    /// Nodes that share `prefix` share rooms.
    pub async fn connect(
        url: &str,
        prefix: &str,
        rooms: Arc<Rooms>,
        limits: ReplayLimits,
    ) -> Result<(Arc<Self>, SharedRoomTasks), String> {
        let (client, mut commands) = crate::cluster::redis_commands(url).await?;
        let script = Script::new(SCRIPT);
        script
            .load_async(&mut commands)
            .await
            .map_err(|e| format!("cannot load the room script into Redis: {e}"))?;
        // Reading starts after what is in the stream now: nothing on this
        // node joined anything yet.
        let stream = format!("{prefix}:ev");
        let last: redis::streams::StreamRangeReply = commands
            .xrevrange_count(&stream, "+", "-", 1)
            .await
            .map_err(|e| format!("cannot read the room stream in Redis: {e}"))?;
        let after = last
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Arc::new(Self {
            rooms,
            node: uuid::Uuid::new_v4().simple().to_string(),
            prefix: prefix.to_owned(),
            replay_bounds: [
                limits.max_messages.to_string(),
                limits.max_bytes.to_string(),
            ],
            writer: tx,
            parked: DashMap::new(),
            health: Arc::new(RedisHealth::new(prefix)),
        });
        let tasks = SharedRoomTasks {
            writer: rx,
            commands,
            client,
            script,
            after,
        };
        Ok((hub, tasks))
    }

    pub fn health(&self) -> Arc<RedisHealth> {
        self.health.clone()
    }

    /// The writer, the stream reader and the heartbeat, until aborted.
    pub async fn run(self: Arc<Self>, tasks: SharedRoomTasks) {
        let SharedRoomTasks {
            writer,
            commands,
            client,
            script,
            after,
        } = tasks;
        let write = tokio::spawn(write(
            writer,
            commands.clone(),
            script.clone(),
            self.health.clone(),
        ));
        let beat = tokio::spawn(self.clone().beat(commands, script));
        self.read(client, after).await;
        write.abort();
        beat.abort();
    }

    fn queue(&self, args: Vec<String>, done: Done) {
        // The writer lives as long as the node; a send fails only while
        // shutting down, when nothing waits for the answer.
        let _ = self.writer.send(Op { args, done });
    }

    fn args(&self, op: &str, rest: &[&str]) -> Vec<String> {
        let mut args = Vec::with_capacity(3 + rest.len());
        args.push(op.to_owned());
        args.push(self.prefix.clone());
        args.push(STREAM_LEN.to_owned());
        args.extend(rest.iter().map(|s| (*s).to_owned()));
        args
    }

    async fn call(&self, args: Vec<String>) -> Result<RedisValue, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.queue(args, Done::Answer(tx));
        rx.await.unwrap_or_else(|_| Err(unreachable_redis()))
    }

    // ---- heartbeat ---------------------------------------------------------

    async fn beat(self: Arc<Self>, mut conn: ConnectionManager, script: Script) {
        let mut first = true;
        loop {
            let mut invocation = script.prepare_invoke();
            for arg in self.args("beat", &[&self.node, &STALE_MS.to_string()]) {
                invocation.arg(arg);
            }
            match invocation.invoke_async::<Vec<String>>(&mut conn).await {
                Ok(answer) => {
                    self.health.set(true);
                    let reaped: u64 = answer.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
                    if reaped > 0 {
                        metrics::counter!(NODES_REAPED).increment(reaped);
                        tracing::warn!(nodes = reaped, "reaped silent nodes' sockets");
                    }
                    if let Some(len) = answer.get(2).and_then(|n| n.parse::<f64>().ok()) {
                        metrics::gauge!(ROOM_STREAM_LENGTH).set(len);
                    }
                    if answer.first().is_some_and(|a| a == "new") && !first {
                        tracing::warn!(
                            "Redis did not know this node (restarted, or it reaped this node): \
                             registering its sockets again"
                        );
                        self.register_again();
                    }
                    first = false;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "heartbeat failed");
                    self.health.set(false);
                }
            }
            tokio::time::sleep(BEAT).await;
        }
    }

    /// Joins every local member again, quietly (no ack, no replay).
    fn register_again(&self) {
        for room in self.rooms.all() {
            let kind = kind_code(room.kind);
            let s = room.lock();
            if s.closed {
                continue;
            }
            for member in s.room.members() {
                for peer in &member.sockets {
                    let Some(ctx) = peer.socket.extensions.get::<Arc<SocketCtx>>() else {
                        continue;
                    };
                    let at = format_timestamp(member.online_at);
                    let args = self.args(
                        "join",
                        &[
                            kind,
                            &room.key,
                            &self.node,
                            &ctx.sid,
                            member.user.as_str(),
                            &member.role,
                            &at,
                            "",
                        ],
                    );
                    self.queue(args, Done::Ignore);
                }
            }
        }
    }

    // ---- the stream --------------------------------------------------------

    async fn read(&self, client: redis::Client, mut after: String) {
        let stream = format!("{}:ev", self.prefix);
        let options = StreamReadOptions::default().block(BLOCK_MS).count(2048);
        let mut conn: Option<redis::aio::MultiplexedConnection> = None;
        loop {
            let c = match &mut conn {
                Some(c) => c,
                None => {
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Duration::from_secs(1))
                        .set_response_timeout(Duration::from_millis(BLOCK_MS as u64 + 2_000));
                    match client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                    {
                        Ok(c) => conn.insert(c),
                        Err(e) => {
                            tracing::debug!(error = %e, "room stream: reconnecting");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                }
            };
            let read: Result<Option<StreamReadReply>, _> =
                c.xread_options(&[&stream], &[&after], &options).await;
            match read {
                Ok(Some(reply)) => {
                    for key in reply.keys {
                        for entry in key.ids {
                            self.deliver(&entry.map).await;
                            after = entry.id;
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "room stream read failed; reconnecting");
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn deliver(&self, entry: &HashMap<String, RedisValue>) {
        let field = |name: &str| -> String {
            entry
                .get(name)
                .and_then(|v| redis::from_redis_value::<String>(v).ok())
                .unwrap_or_default()
        };
        let kind = if field("k") == "h" {
            RoomKind::Chat
        } else {
            RoomKind::Call
        };
        let id = field("r");
        match field("t").as_str() {
            "join" => {
                let (node, change) = (field("n"), field("c"));
                if node == self.node {
                    let join = field("j");
                    if !join.is_empty() {
                        self.admit(kind, &id, &join, &field("s")).await;
                    }
                }
                let Some(room) = self.rooms.get(kind, &id) else {
                    return;
                };
                let Some(user) = UserId::new(field("u")) else {
                    return;
                };
                let role = field("role");
                let mut s = room.lock();
                s.everyone = parse_users(&field("p"));
                if change == "first" {
                    to_others(
                        &s.room,
                        &user,
                        kind.arrival_events(),
                        |alias| json!({ "roomId": alias, "userId": user.as_str(), "role": role }),
                    );
                }
                if change != "again" {
                    presence_sync(&s.room, &s.everyone);
                }
            }
            "relay" => {
                let Some(room) = self.rooms.get(RoomKind::Call, &id) else {
                    return;
                };
                let Some(signal) = signal_of(&field("g")) else {
                    return;
                };
                let Ok(body) = RawValue::from_string(field("b")) else {
                    tracing::error!("unreadable relay body in the room stream");
                    return;
                };
                let (Some(from), to) = (UserId::new(field("u")), field("to")) else {
                    return;
                };
                let s = room.lock();
                for member in s.room.others(&from) {
                    if !to.is_empty() && to != member.user.as_str() {
                        continue;
                    }
                    for peer in &member.sockets {
                        send_raw(&peer.socket, signal.name(peer.legacy), &body);
                    }
                }
            }
            "leave" => {
                let Some(room) = self.rooms.get(kind, &id) else {
                    return;
                };
                let Some(user) = UserId::new(field("u")) else {
                    return;
                };
                {
                    let mut s = room.lock();
                    s.everyone = parse_users(&field("p"));
                    if field("last") == "1" {
                        to_others(
                            &s.room,
                            &user,
                            kind.departure_events(),
                            |alias| json!({ "roomId": alias, "userId": user.as_str() }),
                        );
                    }
                    presence_sync(&s.room, &s.everyone);
                }
                self.rooms.drop_if_idle(&room);
            }
            "close" => {
                close_room(&self.rooms, kind, &id);
            }
            "ended" => {
                if let Some(room) = self.rooms.get(RoomKind::Chat, &id) {
                    room.lock().ended = true;
                }
            }
            "tell" => {
                let Some(room) = self.rooms.get(RoomKind::Chat, &id) else {
                    return;
                };
                let (Some(from), value) = (UserId::new(field("u")), field("v")) else {
                    return;
                };
                let s = room.lock();
                match field("w").as_str() {
                    "typing" => {
                        let typing = value == "1";
                        to_others(
                            &s.room,
                            &from,
                            &["chat:typing"],
                            |alias| json!({ "roomId": alias, "userId": from.as_str(), "isTyping": typing }),
                        );
                    }
                    _ => to_others(
                        &s.room,
                        &from,
                        &["chat:read"],
                        |alias| json!({ "roomId": alias, "userId": from.as_str(), "messageId": value }),
                    ),
                }
            }
            other => tracing::error!(entry = other, "unknown room stream entry skipped"),
        }
    }

    /// This node's own join reached the stream: the ack and the replay go
    /// out now, and the socket hears the room live from here on.
    async fn admit(&self, kind: RoomKind, id: &str, join: &str, sid: &str) {
        let parked = match self.parked.remove(join) {
            Some((_, rx)) => tokio::time::timeout(PARK_WAIT, rx)
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        let Some(p) = parked else {
            // Its handler gave up (Redis failed under it): the socket is
            // not in the room here, so it is not in it anywhere.
            let args = self.args("leave", &[kind_code(kind), id, &self.node, sid]);
            self.queue(args, Done::Ignore);
            return;
        };
        let mut joined = lock(&p.ctx.joined);
        let room = self.rooms.enter(kind, id);
        let refused = {
            let mut s = room.lock();
            if joined.gone || s.closed {
                true
            } else {
                s.verified = true;
                if p.ended {
                    s.ended = true;
                }
                let principal = &p.ctx.principal;
                let peer = Peer {
                    socket: p.socket.clone(),
                    alias: p.alias.clone(),
                    legacy: p.legacy,
                };
                s.room
                    .join(&principal.user_id, principal.role.as_str(), p.now, peer);
                // A repeated join under the same spelling is one entry.
                if !joined
                    .rooms
                    .iter()
                    .any(|(a, r)| Arc::ptr_eq(r, &room) && *a == p.alias)
                {
                    joined.rooms.push((p.alias.clone(), room.clone()));
                }
                if let Some(r) = p.reply {
                    r.ok(p.ack);
                }
                for kept in &p.replay {
                    let Some((signal, body)) = kept.split_once('\n') else {
                        continue;
                    };
                    let (Some(signal), Ok(body)) =
                        (signal_of(signal), RawValue::from_string(body.to_owned()))
                    else {
                        continue;
                    };
                    send_raw(&p.socket, signal.name(p.legacy), &body);
                }
                false
            }
        };
        drop(joined);
        self.rooms.exit(&room);
        if refused {
            let args = self.args("leave", &[kind_code(kind), id, &self.node, sid]);
            self.queue(args, Done::Ignore);
            let _ = p
                .admitted
                .send(Err(ApiError::forbidden("you may not join this room")));
            return;
        }
        let _ = p.admitted.send(Ok(()));
    }

    fn leave_here(&self, ctx: &SocketCtx, room: &SignalRoom) {
        room.lock().room.leave(ctx.socket_id);
        self.rooms.drop_if_idle(room);
    }
}

impl RoomControl for SharedRooms {
    fn close_call(&self, call: &CallId) {
        // Every node hears the call's end (in commit order) and closes its
        // own sockets' room at once, so a relay right after `call_ended` is
        // refused here; the script's close is the same on every node.
        close_room(&self.rooms, RoomKind::Call, call.as_str());
        let args = self.args("close", &["c", call.as_str()]);
        self.queue(args, Done::Ignore);
    }

    fn chat_ended(&self, chat: &ChatId) {
        if let Some(room) = self.rooms.get(RoomKind::Chat, chat.as_str()) {
            room.lock().ended = true;
        }
        let args = self.args("ended", &[chat.as_str()]);
        self.queue(args, Done::Ignore);
    }
}

#[async_trait]
impl RoomHub for SharedRooms {
    fn rejoin_ack(&self, ctx: &SocketCtx, alias: &str) -> Option<Json> {
        let room = ctx.joined_room(RoomKind::Call, alias)?;
        let s = room.lock();
        (!s.closed).then(|| {
            let me = ctx.principal.user_id.as_str();
            let peers: Vec<Json> = s
                .everyone
                .iter()
                .filter(|(user, _)| user.as_str() != me)
                .map(|(user, u)| json!({ "userId": user, "role": u["role"] }))
                .collect();
            json!({ "ok": true, "roomId": alias, "peers": peers })
        })
    }

    async fn join(
        &self,
        member: Joining<'_>,
        // No second read here: a call's end or a chat's end that commits
        // during this join reaches Redis as a `close` / `ended` step from
        // every node. Before the join's script, the script refuses or
        // reports it; after it, its stream entry follows the join's and the
        // reader applies it to the room the join made.
        _access: &RoomAccess,
        reply: &mut Option<Reply>,
    ) -> Result<Vec<UserId>, ApiError> {
        check(&self.health)?;
        let Joining {
            ctx,
            socket,
            alias,
            legacy,
            now,
            admission,
        } = member;
        let Some(owned_ctx) = socket.extensions.get::<Arc<SocketCtx>>() else {
            return Err(ApiError::forbidden("the connection has closed"));
        };
        let (kind, id) = admission.room();
        let join = uuid::Uuid::new_v4().simple().to_string();
        let me = &ctx.principal.user_id;
        let args = self.args(
            "join",
            &[
                kind_code(kind),
                id,
                &self.node,
                &ctx.sid,
                me.as_str(),
                ctx.principal.role.as_str(),
                &format_timestamp(now),
                &join,
            ],
        );
        let (hand_over, parked) = oneshot::channel();
        self.parked.insert(join.clone(), parked);
        let answer = match self.call(args).await {
            Ok(v) => redis::from_redis_value::<Vec<String>>(&v).map_err(ApiError::internal),
            Err(e) => Err(e),
        };
        let answer = match answer {
            Ok(a) if a.first().is_some_and(|s| s == "ok") => a,
            Ok(_) => {
                self.parked.remove(&join);
                return Err(ApiError::forbidden("you may not join this room"));
            }
            Err(e) => {
                // If the script did run, the reader finds no hand-over at
                // its entry and takes the socket out again.
                self.parked.remove(&join);
                return Err(e);
            }
        };
        let ended_here = answer.get(2).is_some_and(|e| e == "1");
        let peer_count: usize = answer.get(3).and_then(|n| n.parse().ok()).unwrap_or(0);
        let peers: Vec<(String, String)> = answer[4..]
            .chunks(2)
            .take(peer_count)
            .filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone())))
            .collect();
        let replay = answer
            .get(4 + 2 * peer_count..)
            .unwrap_or_default()
            .to_vec();
        let (ack, ended) = match admission {
            Admission::Call(_) => {
                let list: Vec<Json> = peers
                    .iter()
                    .map(|(user, role)| json!({ "userId": user, "role": role }))
                    .collect();
                (
                    json!({ "ok": true, "roomId": &*alias, "peers": list }),
                    false,
                )
            }
            Admission::Chat {
                open, mut extra, ..
            } => {
                extra.insert("ok".into(), Json::Bool(true));
                extra.insert("roomId".into(), Json::from(&*alias));
                (Json::Object(extra), !open || ended_here)
            }
        };
        let (admitted, done) = oneshot::channel();
        let handed = hand_over.send(Parked {
            ctx: owned_ctx.clone(),
            socket: socket.clone(),
            alias,
            legacy,
            now,
            reply: reply.take(),
            ack,
            replay,
            ended,
            admitted,
        });
        if handed.is_err() {
            return Err(unreachable_redis());
        }
        match tokio::time::timeout(PARK_WAIT * 2, done).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            _ => return Err(unreachable_redis()),
        }
        let mut present: Vec<UserId> = peers
            .into_iter()
            .filter_map(|(u, _)| UserId::new(u))
            .collect();
        present.push(me.clone());
        Ok(present)
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
        reply: &mut Option<Reply>,
    ) -> Result<(), ApiError> {
        let room = ctx
            .joined_room(RoomKind::Call, alias)
            .ok_or_else(|| ApiError::forbidden("join the room before signaling in it"))?;
        let me = &ctx.principal.user_id;
        {
            let s = room.lock();
            if s.closed {
                return Err(ApiError::forbidden("the call has ended"));
            }
            if let Some(target) = to
                && (target == me || !s.everyone.contains_key(target.as_str()))
            {
                return Err(ApiError::not_found("that user is not in the room"));
            }
        }
        check(&self.health)?;
        let description = matches!(signal, Signal::Offer | Signal::Answer);
        let size = body.get().len().to_string();
        let args = self.args(
            "relay",
            &[
                &room.key,
                &self.node,
                &ctx.sid,
                me.as_str(),
                to.map_or("", UserId::as_str),
                signal_code(signal),
                if description { "1" } else { "0" },
                &size,
                body.get(),
                &self.replay_bounds[0],
                &self.replay_bounds[1],
            ],
        );
        self.queue(args, Done::Ack(reply.take()));
        Ok(())
    }

    fn tell_chat(&self, from: &UserId, chat: &str, news: ChatNews<'_>) -> Result<(), ApiError> {
        let (what, value) = match news {
            ChatNews::Typing(typing) => {
                if self
                    .rooms
                    .get(RoomKind::Chat, chat)
                    .is_some_and(|r| r.lock().ended)
                {
                    return Err(ApiError::Conflict("the chat session has ended".into()));
                }
                ("typing", if typing { "1" } else { "0" })
            }
            ChatNews::Read(message) => ("read", message),
        };
        check(&self.health)?;
        let args = self.args("tell", &[chat, from.as_str(), what, value]);
        self.queue(args, Done::Ignore);
        Ok(())
    }

    fn leave(&self, ctx: &SocketCtx, kind: RoomKind, alias: &str) {
        if let Some(room) = ctx.joined_room(kind, alias) {
            ctx.forget_room(&room);
            self.leave_here(ctx, &room);
            let args = self.args("leave", &[kind_code(kind), &room.key, &self.node, &ctx.sid]);
            self.queue(args, Done::Ignore);
        }
    }

    fn leave_all(&self, ctx: &SocketCtx) {
        let rooms = {
            let mut joined = lock(&ctx.joined);
            joined.gone = true;
            std::mem::take(&mut joined.rooms)
        };
        for (_, room) in &rooms {
            self.leave_here(ctx, room);
        }
        let args = self.args("leave_all", &[&self.node, &ctx.sid]);
        self.queue(args, Done::Ignore);
    }
}

#[async_trait]
impl ClusterPresence for SharedRooms {
    fn connections(&self, user: &UserId, change: i64, at: Timestamp) {
        let (change, at) = (change.to_string(), at.timestamp_millis().to_string());
        let args = self.args("conn", &[&self.node, user.as_str(), &change, &at]);
        self.queue(args, Done::Ignore);
    }

    fn sync(&self, users: Vec<(UserId, usize, Timestamp)>, forget: Timestamp) {
        let mut args = self.args(
            "sync",
            &[&self.node, &forget.timestamp_millis().to_string()],
        );
        for (user, sockets, at) in users {
            args.push(user.as_str().to_owned());
            args.push(sockets.to_string());
            args.push(at.timestamp_millis().to_string());
        }
        self.queue(args, Done::Ignore);
    }

    async fn whereabouts(&self, users: &[UserId]) -> Result<Vec<Elsewhere>, String> {
        let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let answer = self
            .call(self.args("alive", &names))
            .await
            .map_err(|e| e.to_string())?;
        let words: Vec<String> = redis::from_redis_value(&answer).map_err(|e| e.to_string())?;
        Ok(words
            .iter()
            .map(|w| match w.as_str() {
                "on" => Elsewhere::Connected,
                "" => Elsewhere::Unseen,
                ms => ms
                    .parse::<f64>()
                    .ok()
                    .and_then(|ms| {
                        #[allow(clippy::cast_possible_truncation)] // whole milliseconds
                        chrono::DateTime::from_timestamp_millis(ms as i64)
                    })
                    .map_or(Elsewhere::Unseen, Elsewhere::Seen),
            })
            .collect())
    }
}

// ---- the writer ------------------------------------------------------------

/// Sends what is queued, in order, as pipelines on one connection.
async fn write(
    mut queue: mpsc::UnboundedReceiver<Op>,
    mut conn: ConnectionManager,
    script: Script,
    health: Arc<RedisHealth>,
) {
    let mut batch: Vec<Op> = Vec::with_capacity(64);
    while queue.recv_many(&mut batch, 1024).await > 0 {
        // Twice at most: once more for the steps Redis refused because it
        // had lost the script (restarted, or `SCRIPT FLUSH`). Only those
        // are sent again; the others ran, and must not run twice.
        for attempt in 0..2 {
            match send_batch(&mut conn, &script, &batch).await {
                Ok(answers) => {
                    health.set(true);
                    let mut again = Vec::new();
                    for (op, answer) in batch.drain(..).zip(answers) {
                        match answer {
                            RedisValue::ServerError(e)
                                if e.code() == "NOSCRIPT" && attempt == 0 =>
                            {
                                again.push(op);
                            }
                            RedisValue::ServerError(e) => {
                                tracing::error!(error = ?e, "room script failed");
                                finish(op.done, Err(ApiError::Internal));
                            }
                            answer => finish(op.done, Ok(answer)),
                        }
                    }
                    if again.is_empty() || script.load_async(&mut conn).await.is_err() {
                        batch = again;
                        break;
                    }
                    batch = again;
                }
                Err(e) => {
                    tracing::warn!(error = %e, ops = batch.len(), "room steps not written to Redis");
                    health.set(false);
                    break;
                }
            }
        }
        // Whatever is left could not be written.
        for op in batch.drain(..) {
            finish(op.done, Err(unreachable_redis()));
        }
    }
}

/// One pipeline of the batch's script calls; each step's own answer,
/// errors included.
async fn send_batch(
    conn: &mut ConnectionManager,
    script: &Script,
    batch: &[Op],
) -> redis::RedisResult<Vec<RedisValue>> {
    use redis::aio::ConnectionLike;
    let mut pipe = redis::pipe();
    for op in batch {
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(0)
            .arg(&op.args);
    }
    conn.req_packed_commands(&pipe, 0, batch.len()).await
}

fn finish(done: Done, answer: Result<RedisValue, ApiError>) {
    match done {
        Done::Ignore => {
            if let Ok(v) = &answer
                && let Ok(word) = redis::from_redis_value::<String>(v)
                && word != "ok"
            {
                tracing::debug!(answer = word, "room step refused");
            }
        }
        Done::Answer(tx) => {
            let _ = tx.send(answer);
        }
        Done::Ack(reply) => {
            let Some(reply) = reply else { return };
            let word = answer
                .and_then(|v| redis::from_redis_value::<String>(&v).map_err(ApiError::internal));
            match word.as_deref() {
                Ok("ok") => reply.ok(json!({ "ok": true })),
                Ok("closed") => reply.err(&ApiError::forbidden("the call has ended")),
                Ok("no_target") => reply.err(&ApiError::not_found("that user is not in the room")),
                Ok(_) => reply.err(&ApiError::forbidden("join the room before signaling in it")),
                Err(e) => reply.err(e),
            }
        }
    }
}

// ---- helpers ---------------------------------------------------------------

fn kind_code(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Call => "c",
        RoomKind::Chat => "h",
    }
}

fn signal_code(signal: Signal) -> &'static str {
    match signal {
        Signal::Offer => "o",
        Signal::Answer => "a",
        Signal::IceCandidate => "i",
    }
}

fn signal_of(code: &str) -> Option<Signal> {
    match code {
        "o" => Some(Signal::Offer),
        "a" => Some(Signal::Answer),
        "i" => Some(Signal::IceCandidate),
        _ => None,
    }
}

fn parse_users(text: &str) -> Map<String, Json> {
    match serde_json::from_str(text) {
        Ok(Json::Object(users)) => users,
        _ => Map::new(),
    }
}

/// `presence:sync` to every local socket: everyone, on every node.
fn presence_sync(
    members: &consultd_domain::Room<Peer, super::rooms::Stored>,
    everyone: &Map<String, Json>,
) {
    let users = Json::Object(everyone.clone());
    for peer in members.members().iter().flat_map(|m| &m.sockets) {
        send(
            &peer.socket,
            "presence:sync",
            &json!({ "roomId": &*peer.alias, "users": &users }),
        );
    }
}
