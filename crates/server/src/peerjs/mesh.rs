//! The PeerJS broker across several nodes (REDIS_URL): who holds which id
//! lives in Redis, and frames for a peer on another node go to that node
//! over Redis pub/sub.
//!
//! - **Ids.** `{prefix}:id:<peer id>` holds `node|conn|token hash|user`,
//!   set by one script that refuses another token (`ID-TAKEN` across
//!   nodes) and expires after the alive timeout unless its node refreshes
//!   it; a dead node's ids free themselves then, as a silent peer's do.
//! - **Order.** Every publish of a node goes through one writer task and
//!   one connection, and Redis delivers a connection's messages in order:
//!   one sender's frames reach the other node in the order sent.
//! - **Claims.** A node that registers an id tells every node, which then
//!   hand over (in order, and authorised) what their peers sent to that id
//!   while nobody held it.
//! - **Loss.** Pub/sub delivers while connected: a frame published while a
//!   node's subscription is down is lost, as a packet is; the peer's
//!   connection attempt times out and PeerJS reports it.

use std::time::Duration;

use consultd_domain::UserId;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use sha1::Digest;
use tokio::sync::mpsc;

/// What one node tells another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Envelope {
    /// A frame for the peer holding `dst` on the receiving node.
    #[serde(rename = "f")]
    Frame {
        dst: String,
        src: String,
        text: String,
    },
    /// The id moved to another node (same token): close this socket.
    #[serde(rename = "k")]
    Kick { id: String, conn: u64 },
    /// `id` is now held by `user` on `node` (to every node).
    #[serde(rename = "c")]
    Claim {
        id: String,
        user: String,
        node: String,
    },
}

/// Where an id is held, as Redis says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) node: String,
    pub(crate) conn: u64,
    pub(crate) user: UserId,
}

/// What a claim found.
pub(crate) enum Claimed {
    /// Ours now; the earlier holder with the same token, if any.
    Taken(Option<Holder>),
    /// Held with another token.
    Refused,
}

enum Op {
    Publish(String, String),
    Release(String, String),
}

const CLAIM: &str = r"
local old = redis.call('GET', KEYS[1])
if old then
  local tok = string.match(old, '^[^|]*|[^|]*|([^|]*)|')
  if tok ~= ARGV[2] then return {0, old} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {1, old or ''}
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

const REFRESH: &str = r"
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    redis.call('PEXPIRE', key, ARGV[#ARGV])
    n = n + 1
  end
end
return n
";

pub struct Mesh {
    node: String,
    prefix: String,
    commands: ConnectionManager,
    claim: Script,
    refresh: Script,
    writer: mpsc::UnboundedSender<Op>,
    ttl_ms: u64,
}

/// The tasks a node runs for the mesh ([`Mesh::run`]).
pub struct MeshTasks {
    writer: mpsc::UnboundedReceiver<Op>,
    client: redis::Client,
    subscription: redis::aio::PubSub,
}

fn token_hash(token: &str) -> String {
    sha1::Sha1::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_holder(raw: &str) -> Option<Holder> {
    let mut parts = raw.splitn(4, '|');
    let node = parts.next()?.to_owned();
    let conn = parts.next()?.parse().ok()?;
    let _token = parts.next()?;
    let user = UserId::new(parts.next()?)?;
    Some(Holder { node, conn, user })
}

impl Mesh {
    /// Connects and subscribes (so that no claim is missed from the first
    /// registration on); nodes sharing `prefix` share ids. `ttl` is the
    /// alive timeout: an id not refreshed for that long is free.
    pub async fn connect(
        url: &str,
        prefix: &str,
        ttl: Duration,
    ) -> Result<(std::sync::Arc<Self>, MeshTasks), String> {
        let (client, commands) = crate::cluster::redis_commands(url).await?;
        let node = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("{prefix}:pj");
        let subscription = subscribe(&client, &prefix, &node)
            .await
            .map_err(|e| format!("cannot subscribe in Redis: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mesh = std::sync::Arc::new(Self {
            node,
            prefix,
            commands,
            claim: Script::new(CLAIM),
            refresh: Script::new(REFRESH),
            writer: tx,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        });
        Ok((
            mesh,
            MeshTasks {
                writer: rx,
                client,
                subscription,
            },
        ))
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    fn key(&self, id: &str) -> String {
        format!("{}:id:{id}", self.prefix)
    }

    fn value(&self, conn: u64, token: &str, user: &UserId) -> String {
        format!(
            "{}|{conn}|{}|{}",
            self.node,
            token_hash(token),
            user.as_str()
        )
    }

    /// Takes `id` for this node's connection `conn`.
    pub(crate) async fn claim(
        &self,
        id: &str,
        conn: u64,
        token: &str,
        user: &UserId,
    ) -> Result<Claimed, redis::RedisError> {
        let (taken, old): (i64, String) = self
            .claim
            .key(self.key(id))
            .arg(self.value(conn, token, user))
            .arg(token_hash(token))
            .arg(self.ttl_ms)
            .invoke_async(&mut self.commands.clone())
            .await?;
        Ok(if taken == 1 {
            Claimed::Taken(parse_holder(&old))
        } else {
            Claimed::Refused
        })
    }

    /// Frees `id` if this connection still holds it.
    pub(crate) fn release(&self, id: &str, conn: u64, token: &str, user: &UserId) {
        let _ = self
            .writer
            .send(Op::Release(self.key(id), self.value(conn, token, user)));
    }

    /// Who holds `id`, on any node.
    pub(crate) async fn holder(&self, id: &str) -> Result<Option<Holder>, redis::RedisError> {
        let raw: Option<String> = self.commands.clone().get(self.key(id)).await?;
        Ok(raw.as_deref().and_then(parse_holder))
    }

    /// Every id held (discovery).
    pub(crate) async fn ids(&self) -> Result<Vec<String>, redis::RedisError> {
        let pattern = format!("{}:id:*", self.prefix);
        let strip = format!("{}:id:", self.prefix);
        let mut conn = self.commands.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&strip).map(str::to_owned))
            .collect())
    }

    /// Keeps this node's ids from expiring: `(id, conn, token, user)`.
    pub(crate) async fn refresh(
        &self,
        held: &[(String, u64, String, UserId)],
    ) -> Result<(), redis::RedisError> {
        for chunk in held.chunks(500) {
            let mut call = self.refresh.prepare_invoke();
            for (id, conn, token, user) in chunk {
                call.key(self.key(id)).arg(self.value(*conn, token, user));
            }
            call.arg(self.ttl_ms);
            let _: i64 = call.invoke_async(&mut self.commands.clone()).await?;
        }
        Ok(())
    }

    /// Queues `envelope` for `node` (in order with everything else queued).
    pub(crate) fn send(&self, node: &str, envelope: &Envelope) {
        self.publish(format!("{}:node:{node}", self.prefix), envelope);
    }

    /// Queues `envelope` for every node, this one included.
    pub(crate) fn broadcast(&self, envelope: &Envelope) {
        self.publish(format!("{}:all", self.prefix), envelope);
    }

    fn publish(&self, channel: String, envelope: &Envelope) {
        if let Ok(text) = serde_json::to_string(envelope) {
            let _ = self.writer.send(Op::Publish(channel, text));
        }
    }

    /// The writer and the subscription, until aborted; `deliver` gets each
    /// envelope sent to this node, in order.
    pub async fn run(
        self: std::sync::Arc<Self>,
        tasks: MeshTasks,
        deliver: impl Fn(Envelope) + Send + Sync + 'static,
    ) {
        let MeshTasks {
            writer,
            client,
            subscription,
        } = tasks;
        // One task: aborting it stops both.
        tokio::select! {
            () = write(self.commands.clone(), writer) => {}
            () = self.listen(client, subscription, deliver) => {}
        }
    }

    async fn listen(
        &self,
        client: redis::Client,
        subscription: redis::aio::PubSub,
        deliver: impl Fn(Envelope),
    ) {
        let mut subscription = Some(subscription);
        loop {
            let pubsub = match subscription.take() {
                Some(s) => s,
                None => match subscribe(&client, &self.prefix, &self.node).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "PeerJS mesh: Redis subscription down; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                match serde_json::from_slice::<Envelope>(msg.get_payload_bytes()) {
                    Ok(envelope) => deliver(envelope),
                    Err(e) => tracing::warn!(error = %e, "PeerJS mesh: unreadable envelope"),
                }
            }
            tracing::warn!("PeerJS mesh: Redis subscription ended; subscribing again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn subscribe(
    client: &redis::Client,
    prefix: &str,
    node: &str,
) -> Result<redis::aio::PubSub, redis::RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(format!("{prefix}:node:{node}")).await?;
    pubsub.subscribe(format!("{prefix}:all")).await?;
    Ok(pubsub)
}

/// Sends what is queued, in order, as pipelines.
async fn write(mut commands: ConnectionManager, mut ops: mpsc::UnboundedReceiver<Op>) {
    let release = Script::new(RELEASE);
    let mut batch = Vec::new();
    while ops.recv_many(&mut batch, 256).await > 0 {
        let mut pipe = redis::pipe();
        for op in batch.drain(..) {
            match op {
                Op::Publish(channel, text) => {
                    pipe.publish(channel, text).ignore();
                }
                Op::Release(key, value) => {
                    pipe.invoke_script(release.key(key).arg(value)).ignore();
                }
            }
        }
        if let Err(e) = pipe.query_async::<()>(&mut commands).await {
            tracing::warn!(error = %e, "PeerJS mesh: frames to other nodes lost (Redis)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_reads_back_with_any_user_id() {
        let h = parse_holder("n1|7|abc|user|with|bars").unwrap();
        assert_eq!(h.node, "n1");
        assert_eq!(h.conn, 7);
        assert_eq!(h.user.as_str(), "user|with|bars");
        assert!(parse_holder("n1|x|abc|u").is_none());
        assert!(parse_holder("n1|1|abc").is_none());
        assert_eq!(token_hash("t").len(), 40);
    }

    #[test]
    fn envelopes_round_trip() {
        let e = Envelope::Claim {
            id: "a".into(),
            user: "u".into(),
            node: "n".into(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"c":{"id":"a","user":"u","node":"n"}}"#);
        assert!(matches!(
            serde_json::from_str::<Envelope>(&text).unwrap(),
            Envelope::Claim { .. }
        ));
    }
}
