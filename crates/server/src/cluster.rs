//! Several nodes on one PostgreSQL database: every node hears every
//! committed change's notices on the bus (`consultd_persistence::bus`), in
//! commit order, and delivers them to its own sockets, rooms and timer.
//! The node that committed hears its own notices the same way, so all
//! nodes deliver one order.
//!
//! What is shared so far: pushes (invitations, call and session moves, the
//! queue, doctor presence, chat status and messages), room closes and chat
//! ends, and deadlines. Signaling rooms, their replay and presence, and chat
//! typing are still per node (issue 17's Redis part).

use std::sync::Arc;

use consultd_persistence::bus::{Bus, Heard, Listener, RETRY};

use crate::service::outbox::{Outbox, RoomControl, Wire};
use crate::telemetry::{BUS_GAPS, BUS_MESSAGES};
use crate::timers::Timer;

/// Where a node delivers what it hears.
pub struct Delivery {
    pub outbox: Arc<dyn Outbox>,
    pub rooms: Arc<dyn RoomControl>,
    pub timer: Timer,
}

/// Hears the bus until aborted. `on_gap` runs after the listening
/// connection was lost and came back: whatever was committed meanwhile
/// was not heard, so the node re-sends what its users must know.
pub async fn listen<G, F>(mut listener: Listener, bus: Bus, to: Delivery, on_gap: G)
where
    G: Fn() -> F + Send,
    F: Future<Output = ()> + Send,
{
    loop {
        match listener.next().await {
            Ok(Heard::Message(text)) => {
                metrics::counter!(BUS_MESSAGES).increment(1);
                deliver(&to, &text).await;
            }
            Ok(Heard::Gap) => {
                metrics::counter!(BUS_GAPS).increment(1);
                tracing::warn!(
                    channel = bus.channel(),
                    "bus connection lost and back; resyncing this node's sockets"
                );
                on_gap().await;
            }
            Err(e) => {
                tracing::warn!(channel = bus.channel(), error = %e, "bus listener failed; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn deliver(to: &Delivery, text: &str) {
    let notices: Vec<Wire> = match serde_json::from_str(text) {
        Ok(n) => n,
        Err(e) => {
            // Written by a node of another version, or not by consultd.
            tracing::error!(error = %e, "unreadable bus message skipped");
            return;
        }
    };
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
