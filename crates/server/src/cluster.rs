//! Several nodes on one PostgreSQL database: every node hears every
//! committed change's notices on the bus (`consultd_persistence::bus`), in
//! commit order, and delivers them to its own sockets, rooms and timer.
//! The node that committed hears its own notices the same way, so all
//! nodes deliver one order.
//!
//! What crosses here: pushes (invitations, call and session moves, the
//! queue, doctor presence, chat status and messages), room closes and chat
//! ends, and deadlines. Rooms themselves (members, replay, room presence,
//! typing) are shared in Redis (`socket::SharedRooms`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use consultd_persistence::bus::{Bus, Heard, Listener, RETRY};

use crate::clock::unix_ms;
use crate::service::outbox::{Envelope, Outbox, RoomControl, Wire};
use crate::telemetry::{BUS_GAPS, BUS_LAG, BUS_MESSAGES, REDIS_UP};
use crate::timers::Timer;

/// Behind by more than this, a node is not ready: what it delivers is
/// that old.
const MAX_LAG_MS: u64 = 5_000;

/// How this node's bus listener is doing, for `/readyz`.
#[derive(Debug)]
pub struct BusHealth {
    listening: AtomicBool,
    lag_ms: AtomicU64,
}

impl Default for BusHealth {
    fn default() -> Self {
        Self {
            listening: AtomicBool::new(true),
            lag_ms: AtomicU64::new(0),
        }
    }
}

impl BusHealth {
    /// Ready unless the listener is reconnecting or far behind.
    pub fn ready(&self) -> Result<(), String> {
        if !self.listening.load(Ordering::Relaxed) {
            return Err("the bus listener is reconnecting".into());
        }
        let lag = self.lag_ms.load(Ordering::Relaxed);
        if lag > MAX_LAG_MS {
            return Err(format!("the bus is {lag} ms behind"));
        }
        Ok(())
    }

    fn heard(&self, sent_at_ms: u64) {
        let lag = unix_ms().saturating_sub(sent_at_ms);
        self.lag_ms.store(lag, Ordering::Relaxed);
        self.listening.store(true, Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)] // milliseconds, far below 2^52
        metrics::gauge!(BUS_LAG).set(lag as f64 / 1000.0);
    }
}

/// A client and a command connection to `REDIS_URL` that fail fast (a
/// second to connect, two to answer) and reconnect by themselves: what the
/// shared rooms and the PeerJS mesh each open.
pub(crate) async fn redis_commands(
    url: &str,
) -> Result<(redis::Client, redis::aio::ConnectionManager), String> {
    let client = redis::Client::open(url).map_err(|e| format!("REDIS_URL: {e}"))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(std::time::Duration::from_secs(1))
        .set_response_timeout(std::time::Duration::from_secs(2))
        .set_number_of_retries(2)
        .set_max_delay(500);
    let commands = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(|e| format!("cannot reach Redis at REDIS_URL: {e}"))?;
    Ok((client, commands))
}

/// Whether Redis answers, for the handlers and `/readyz`, and which of its
/// key spaces this node's rooms use.
#[derive(Debug)]
pub struct RedisHealth {
    down: AtomicBool,
    prefix: String,
}

impl RedisHealth {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            down: AtomicBool::new(false),
            prefix: prefix.to_owned(),
        }
    }

    /// Every key of the shared rooms starts with this and a colon: the
    /// nodes of one database share it (it is the bus channel's name).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn ready(&self) -> Result<(), String> {
        if self.down.load(Ordering::Relaxed) {
            Err("Redis is unreachable".into())
        } else {
            Ok(())
        }
    }

    pub(crate) fn set(&self, up: bool) {
        metrics::gauge!(REDIS_UP).set(if up { 1.0 } else { 0.0 });
        let was_down = self.down.swap(!up, Ordering::Relaxed);
        if was_down && up {
            tracing::info!("Redis answers again");
        } else if !was_down && !up {
            tracing::warn!("Redis is unreachable: signaling is answered `unavailable`");
        }
    }
}

/// Where a node delivers what it hears.
pub struct Delivery {
    pub outbox: Arc<dyn Outbox>,
    pub rooms: Arc<dyn RoomControl>,
    pub timer: Timer,
}

/// Hears the bus until aborted. `on_gap` runs after the listening
/// connection was lost and came back: whatever was committed meanwhile
/// was not heard, so the node re-sends what its users must know.
pub async fn listen<G, F>(
    mut listener: Listener,
    bus: Bus,
    to: Delivery,
    health: Arc<BusHealth>,
    on_gap: G,
) where
    G: Fn() -> F + Send,
    F: Future<Output = ()> + Send,
{
    // After a failure the listener's next success has reconnected
    // (LISTEN again) without a `Gap`; what was committed meanwhile was
    // not heard all the same.
    let mut failed = false;
    loop {
        let heard = listener.next().await;
        let lost = match &heard {
            Ok(h) => std::mem::take(&mut failed) | matches!(h, Heard::Gap),
            Err(_) => false,
        };
        if lost {
            health.listening.store(true, Ordering::Relaxed);
            metrics::counter!(BUS_GAPS).increment(1);
            tracing::warn!(
                channel = bus.channel(),
                "bus connection lost and back; resyncing this node's sockets"
            );
            on_gap().await;
        }
        match heard {
            Ok(Heard::Message(text)) => {
                metrics::counter!(BUS_MESSAGES).increment(1);
                deliver(&to, &health, &text).await;
            }
            Ok(Heard::Gap) => {}
            Err(e) => {
                failed = true;
                health.listening.store(false, Ordering::Relaxed);
                tracing::warn!(channel = bus.channel(), error = %e, "bus listener failed; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn deliver(to: &Delivery, health: &BusHealth, text: &str) {
    let Envelope {
        sent_at_ms,
        notices,
    } = match serde_json::from_str(text) {
        Ok(n) => n,
        Err(e) => {
            // Written by a node of another version, or not by consultd.
            tracing::error!(error = %e, "unreadable bus message skipped");
            return;
        }
    };
    health.heard(sent_at_ms);
    for notice in notices {
        match notice {
            Wire::Push {
                to: who,
                event,
                body,
            } => to.outbox.push_json(who, &event, body).await,
            Wire::CloseCall(call) => to.rooms.close_call(&call),
            Wire::ChatEnded(chat) => to.rooms.chat_ended(&chat),
            Wire::Deadline(at, what) => to.timer.at(at, what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_unless_reconnecting_or_far_behind() {
        let health = BusHealth::default();
        assert_eq!(health.ready(), Ok(()));
        health.heard(unix_ms() - 100);
        assert_eq!(health.ready(), Ok(()));
        health.heard(unix_ms() - 60_000);
        assert!(health.ready().unwrap_err().contains("behind"));
        health.heard(unix_ms());
        health.listening.store(false, Ordering::Relaxed);
        assert!(health.ready().unwrap_err().contains("reconnecting"));
    }
}
