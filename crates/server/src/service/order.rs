//! Commit-then-announce, in order.
//!
//! A transition commits and is then pushed to sockets. Two transitions of
//! the same call (or the same queue) racing could commit in one order and be
//! pushed in the other — a client would see `call_activated` before
//! `call_confirmed`, or a stale `queue_updated` last. Holding a per-key lock
//! from just before the commit until the pushes are out makes the push order
//! the commit order.
//!
//! The rule that keeps it deadlock-free: take it only in a transaction that
//! has done all its reads and writes, right before `commit`, and do no
//! database work while holding it (queue snapshots are read before). A holder
//! then never waits on a row lock or a pool connection, so whoever waits on it
//! is never waited on.

use std::hash::{BuildHasher, RandomState};

use tokio::sync::{Mutex, MutexGuard};

/// Striped: keys share one of a fixed number of locks, so memory does not
/// grow with the number of calls and unrelated keys rarely wait on each other.
pub(crate) struct Sequencer {
    hasher: RandomState,
    stripes: Box<[Mutex<()>]>,
}

impl Sequencer {
    pub(crate) fn new(stripes: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
        }
    }

    pub(crate) async fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let n = self.stripes.len() as u64;
        // The remainder is below `stripes.len()`, so it fits in usize.
        let i = usize::try_from(self.hasher.hash_one(key) % n).unwrap_or(0);
        self.stripes[i].lock().await
    }
}
