//! The deadline timer: one task that sleeps until the earliest deadline and
//! then asks the owning service to act (an unanswered invitation expires).
//!
//! Deadlines live in the database; this task only caches them. On start it
//! reloads every pending one, so an invitation issued before a restart still
//! expires on time, and a chat session live across a restart still ends on time. Firing twice is harmless: the service's transition is a
//! compare-and-set, so exactly one expiry (and one `call_expired`) happens,
//! even with several nodes running this timer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use consultd_domain::{CallId, Timestamp};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::presence::Presence;
use crate::service::ConsultService;

/// Something the server must do by itself at a given instant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deadline {
    /// An invitation's `expiresAt`.
    CallExpiry(CallId),
    /// A live chat session's `ends_at` (by session id).
    ChatEnd(String),
}

/// The handle services use to add deadlines.
#[derive(Clone)]
pub struct Timer {
    tx: mpsc::UnboundedSender<(Timestamp, Deadline)>,
}

impl Timer {
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<(Timestamp, Deadline)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    pub fn at(&self, when: Timestamp, what: Deadline) {
        // Only fails once the timer task is gone, i.e. during shutdown; the
        // deadline is in the database and is reloaded on the next start.
        let _ = self.tx.send((when, what));
    }
}

/// Runs until aborted (the server aborts it on shutdown).
pub async fn run(
    mut rx: mpsc::UnboundedReceiver<(Timestamp, Deadline)>,
    service: ConsultService,
    initial: Vec<(Timestamp, Deadline)>,
) {
    let mut pending: BTreeSet<(Timestamp, Deadline)> = initial.into_iter().collect();
    tracing::info!(pending = pending.len(), "deadline timer started");
    loop {
        let sleep = match pending.first() {
            Some((when, _)) => {
                let wait = (*when - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait)
            }
            // Nothing pending: wait for the next deadline only.
            None => tokio::time::sleep(std::time::Duration::from_secs(3600)),
        };
        tokio::select! {
            () = sleep => {
                let now = chrono::Utc::now();
                while let Some(first) = pending.first() {
                    if first.0 > now {
                        break;
                    }
                    let Some((_, what)) = pending.pop_first() else { break };
                    let service = service.clone();
                    // Each firing is its own task: a slow database never
                    // delays the deadlines behind it.
                    tokio::spawn(async move { service.on_deadline(what).await });
                }
            }
            next = rx.recv() => match next {
                Some(entry) => { pending.insert(entry); }
                None => break,
            },
        }
    }
}

/// How often the abandon sweep looks: a quarter of the abandon time,
/// between 1 and 15 seconds (so a call ends at most that late).
pub fn sweep_interval(after: Duration) -> Duration {
    (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// Ends calls in progress whose participants have both been gone for
/// `after` (CONTRACT §4: abandoned). Runs until aborted. Presence is this
/// process's, so after a restart every call gets the whole time again.
pub async fn sweep_abandoned(service: ConsultService, presence: Arc<Presence>, after: Duration) {
    let mut tick = tokio::time::interval(sweep_interval(after));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate; nothing can be abandoned yet.
    tick.tick().await;
    loop {
        tick.tick().await;
        match service.abandon_idle(&presence, after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(ended = n, "abandoned calls ended"),
            Err(e) => tracing::warn!(error = %e, "abandon sweep failed; trying again next time"),
        }
        presence.forget_idle(after);
    }
}
