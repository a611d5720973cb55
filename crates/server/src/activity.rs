//! What this node has been doing lately, for the admin view: its sockets by
//! role, the transitions it recorded, the webhook outbox's depth as its
//! delivery worker last read it, and a ring of samples over the last
//! minutes. Counters only: no payload, id or content is ever kept here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use consultd_domain::Timestamp;
use consultd_domain::time::serde_millis;
use consultd_persistence::OutboxDepth;
use serde::Serialize;

use crate::clock::SharedClock;
use crate::sync::lock;

/// How often a sample is taken.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How many samples are kept: five minutes' worth.
pub const SAMPLES_KEPT: usize = 60;

/// One sample: the state at `at`, and what happened since the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Sockets connected to this node at `at`.
    pub sockets: u64,
    /// Transitions this node recorded since the previous sample.
    pub transitions: u64,
    /// Webhook rows waiting, as last read; null when webhooks are off or
    /// nothing was read yet.
    pub outbox_pending: Option<u64>,
}

/// The webhook outbox as the delivery worker last read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxView {
    pub pending: u64,
    pub dead: u64,
}

/// This node's counters. Shared by the socket layer (sockets), the journal
/// (transitions) and the webhook worker (outbox depth).
#[derive(Default)]
pub struct Activity {
    sockets: Mutex<BTreeMap<String, u64>>,
    transitions: AtomicU64,
    outbox: Mutex<Option<OutboxView>>,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    samples: VecDeque<Sample>,
    /// `transitions` at the previous sample.
    transitions_then: u64,
}

impl Activity {
    pub fn socket_opened(&self, role: &str) {
        let mut sockets = lock(&self.sockets);
        match sockets.get_mut(role) {
            Some(n) => *n += 1,
            None => {
                sockets.insert(role.to_owned(), 1);
            }
        }
    }

    pub fn socket_closed(&self, role: &str) {
        let mut sockets = lock(&self.sockets);
        if let Some(n) = sockets.get_mut(role) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                sockets.remove(role);
            }
        }
    }

    /// Sockets connected now, by role (roles with none are left out).
    pub fn sockets_by_role(&self) -> BTreeMap<String, u64> {
        lock(&self.sockets).clone()
    }

    pub fn transition_recorded(&self) {
        self.transitions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn outbox_read(&self, depth: OutboxDepth) {
        *lock(&self.outbox) = Some(OutboxView {
            pending: depth.pending,
            dead: depth.dead,
        });
    }

    pub fn outbox(&self) -> Option<OutboxView> {
        *lock(&self.outbox)
    }

    /// Takes a sample now; the oldest goes once [`SAMPLES_KEPT`] are held.
    pub fn sample(&self, at: Timestamp) {
        let sockets = lock(&self.sockets).values().sum();
        let outbox_pending = self.outbox().map(|o| o.pending);
        let total = self.transitions.load(Ordering::Relaxed);
        let mut ring = lock(&self.ring);
        let transitions = total.saturating_sub(ring.transitions_then);
        ring.transitions_then = total;
        if ring.samples.len() == SAMPLES_KEPT {
            ring.samples.pop_front();
        }
        ring.samples.push_back(Sample {
            at,
            sockets,
            transitions,
            outbox_pending,
        });
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.ring).samples.iter().copied().collect()
    }

    /// Samples every [`SAMPLE_EVERY`] until the task is dropped.
    pub async fn run(self: std::sync::Arc<Self>, clock: SharedClock) {
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: the ring starts with a baseline.
        loop {
            every.tick().await;
            self.sample(clock.now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> Timestamp {
        chrono::Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn sockets_are_counted_by_role_and_never_go_below_zero() {
        let a = Activity::default();
        a.socket_opened("doctor");
        a.socket_opened("doctor");
        a.socket_opened("patient");
        a.socket_closed("doctor");
        a.socket_closed("admin");
        let by_role = a.sockets_by_role();
        assert_eq!(by_role.get("doctor"), Some(&1));
        assert_eq!(by_role.get("patient"), Some(&1));
        assert_eq!(by_role.get("admin"), None);
        a.socket_closed("patient");
        a.socket_closed("patient");
        assert_eq!(a.sockets_by_role().get("patient"), None);
    }

    #[test]
    fn a_sample_holds_the_transitions_since_the_previous_one() {
        let a = Activity::default();
        a.sample(at(0));
        for _ in 0..7 {
            a.transition_recorded();
        }
        a.socket_opened("doctor");
        a.sample(at(5));
        a.sample(at(10));
        let s = a.samples();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].transitions, s[0].sockets), (0, 0));
        assert_eq!((s[1].transitions, s[1].sockets), (7, 1));
        assert_eq!((s[2].transitions, s[2].sockets), (0, 1));
        assert_eq!(s[1].outbox_pending, None);
    }

    #[test]
    fn the_ring_keeps_the_last_five_minutes_only() {
        let a = Activity::default();
        for i in 0..(SAMPLES_KEPT as i64 + 9) {
            a.sample(at(i * 5));
        }
        let s = a.samples();
        assert_eq!(s.len(), SAMPLES_KEPT);
        assert_eq!(s[0].at, at(9 * 5), "the oldest nine went");
        assert_eq!(s[SAMPLES_KEPT - 1].at, at((SAMPLES_KEPT as i64 + 8) * 5));
    }

    #[test]
    fn the_outbox_depth_is_the_last_one_read() {
        let a = Activity::default();
        assert_eq!(a.outbox(), None);
        a.outbox_read(OutboxDepth {
            pending: 4,
            dead: 1,
        });
        a.sample(at(0));
        assert_eq!(
            a.outbox(),
            Some(OutboxView {
                pending: 4,
                dead: 1
            })
        );
        assert_eq!(a.samples()[0].outbox_pending, Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sampler_samples_every_five_seconds() {
        let a = std::sync::Arc::new(Activity::default());
        let clock: SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
        let task = tokio::spawn(a.clone().run(clock));
        tokio::time::sleep(SAMPLE_EVERY * 3 + Duration::from_millis(100)).await;
        assert_eq!(a.samples().len(), 4, "one at start, then one per 5 s");
        task.abort();
    }
}
