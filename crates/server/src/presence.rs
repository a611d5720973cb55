//! Who is connected now, by user: the per-user socket cap and the clock
//! behind abandoned calls.
//!
//! A user is *present* while any of their sockets is open; a REST request
//! also counts as a sign of life (a client whose websocket is blocked
//! completes the whole flow by polling REST, CONTRACT §4). Nothing here is
//! persisted: after a restart everyone's clock starts at the start.
//! Time comes from the server's [`Clock`](crate::clock::Clock), so tests move it.
//!
//! With several nodes, each node also tells the others ([`ClusterPresence`]):
//! each socket opened or closed at once, and every sweep its whole list, so
//! a user connected to another node is not taken for gone here.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use consultd_domain::{Timestamp, UserId};
use dashmap::DashMap;

use crate::clock::SharedClock;

/// Where a user is, as the other nodes said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elsewhere {
    /// A socket is open on a live node.
    Connected,
    /// Last alive then, on some node.
    Seen(Timestamp),
    /// No node has seen them.
    Unseen,
}

/// The nodes' shared view of who is connected (several nodes only).
#[async_trait]
pub trait ClusterPresence: Send + Sync {
    /// `user` opened (`+1`) or closed (`-1`) a socket on this node `at`.
    fn connections(&self, user: &UserId, change: i64, at: Timestamp);
    /// This node's whole view: (user, open sockets, last alive); anyone
    /// left out has no socket here. Seen-times before `forget` are dropped.
    fn sync(&self, users: Vec<(UserId, usize, Timestamp)>, forget: Timestamp);
    /// Where each of `users` is; an error when the nodes cannot be asked.
    async fn whereabouts(&self, users: &[UserId]) -> Result<Vec<Elsewhere>, String>;
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    sockets: usize,
    last_seen: Timestamp,
}

pub struct Presence {
    clock: SharedClock,
    started: Timestamp,
    users: DashMap<UserId, Seen>,
    cluster: Option<Arc<dyn ClusterPresence>>,
}

/// `later - earlier`, or zero if the clock says otherwise.
fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    (later - earlier).to_std().unwrap_or_default()
}

impl Presence {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            started: clock.now(),
            clock,
            users: DashMap::new(),
            cluster: None,
        }
    }

    /// Presence shared with the other nodes through `cluster`.
    pub fn shared(clock: SharedClock, cluster: Arc<dyn ClusterPresence>) -> Self {
        Self {
            cluster: Some(cluster),
            ..Self::new(clock)
        }
    }

    /// Counts a new socket of `user`, unless they already have `cap` open
    /// (`0`: no cap); `false` means refused, nothing counted.
    pub fn socket_opened(&self, user: &UserId, cap: usize) -> bool {
        let now = self.clock.now();
        let mut seen = self.users.entry(user.clone()).or_insert(Seen {
            sockets: 0,
            last_seen: now,
        });
        if cap > 0 && seen.sockets >= cap {
            return false;
        }
        seen.sockets += 1;
        seen.last_seen = now;
        drop(seen);
        if let Some(cluster) = &self.cluster {
            cluster.connections(user, 1, now);
        }
        true
    }

    /// One of `user`'s sockets closed.
    pub fn socket_closed(&self, user: &UserId) {
        let now = self.clock.now();
        if let Some(mut seen) = self.users.get_mut(user) {
            seen.sockets = seen.sockets.saturating_sub(1);
            seen.last_seen = now;
            drop(seen);
            if let Some(cluster) = &self.cluster {
                cluster.connections(user, -1, now);
            }
        }
    }

    /// A sign of life without a socket (a REST request).
    pub fn touch(&self, user: &UserId) {
        let now = self.clock.now();
        if let Some(mut seen) = self.users.get_mut(user) {
            seen.last_seen = now;
            return;
        }
        self.users.insert(
            user.clone(),
            Seen {
                sockets: 0,
                last_seen: now,
            },
        );
    }

    /// `user`'s open sockets on this node.
    pub fn sockets(&self, user: &UserId) -> usize {
        self.users.get(user).map_or(0, |s| s.sockets)
    }

    /// How long `user` has been gone: zero while a socket is open, else
    /// since their last sign of life (or since the start, if none).
    pub fn idle_for(&self, user: &UserId) -> Duration {
        let now = self.clock.now();
        match self.users.get(user).map(|s| *s) {
            Some(seen) if seen.sockets > 0 => Duration::ZERO,
            Some(seen) => since(now, seen.last_seen.max(self.started)),
            None => since(now, self.started),
        }
    }

    /// How long `user` has been gone from every node: as [`idle_for`]
    /// with one node. If the other nodes cannot be asked, zero: nobody's
    /// call is ended on a guess.
    ///
    /// [`idle_for`]: Self::idle_for
    pub async fn idle_everywhere(&self, user: &UserId) -> Duration {
        let here = self.idle_for(user);
        let Some(cluster) = &self.cluster else {
            return here;
        };
        if here.is_zero() {
            return here;
        }
        match cluster.whereabouts(std::slice::from_ref(user)).await {
            Ok(found) => match found.first() {
                Some(Elsewhere::Connected) => Duration::ZERO,
                Some(Elsewhere::Seen(at)) => {
                    here.min(since(self.clock.now(), (*at).max(self.started)))
                }
                Some(Elsewhere::Unseen) | None => here,
            },
            Err(e) => {
                tracing::warn!(
                    error = e,
                    "presence on the other nodes unknown: nobody is idle"
                );
                Duration::ZERO
            }
        }
    }

    /// Tells the other nodes this node's whole view (several nodes; the
    /// sweep does it each round).
    pub fn publish(&self, forget_after: Duration) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let now = self.clock.now();
        let users = self
            .users
            .iter()
            .map(|e| {
                let seen = e.value();
                let at = if seen.sockets > 0 {
                    now
                } else {
                    seen.last_seen
                };
                (e.key().clone(), seen.sockets, at)
            })
            .collect();
        let forget = chrono::Duration::from_std(forget_after)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        cluster.sync(users, forget);
    }

    /// Forgets users gone for longer than `gone`: their idle time only
    /// grows, and "since the start" is at least as long.
    pub fn forget_idle(&self, gone: Duration) {
        let now = self.clock.now();
        self.users
            .retain(|_, s| s.sockets > 0 || since(now, s.last_seen) < gone);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::TokioClock;

    fn presence() -> Presence {
        Presence::new(Arc::new(TokioClock::starting_at(chrono::Utc::now())))
    }

    fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_runs_only_while_no_socket_is_open() {
        let p = presence();
        let (a, b) = (user("a"), user("b"));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            p.idle_for(&a),
            Duration::from_secs(5),
            "unseen: since the start"
        );
        assert!(p.socket_opened(&a, 0));
        assert!(p.socket_opened(&a, 0));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(p.idle_for(&a), Duration::ZERO, "connected");
        p.socket_closed(&a);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(p.idle_for(&a), Duration::ZERO, "one tab still open");
        p.socket_closed(&a);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(p.idle_for(&a), Duration::from_secs(30));
        p.touch(&a);
        assert_eq!(
            p.idle_for(&a),
            Duration::ZERO,
            "a REST request is a sign of life"
        );
        p.touch(&b);
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(p.idle_for(&b), Duration::from_secs(7));
        p.forget_idle(Duration::from_secs(5));
        assert_eq!(p.sockets(&b), 0);
        assert!(
            p.idle_for(&b) >= Duration::from_secs(7),
            "forgetting never shortens"
        );
    }

    #[test]
    fn the_cap_counts_open_sockets_per_user() {
        let p = presence();
        let a = user("a");
        assert!(p.socket_opened(&a, 2));
        assert!(p.socket_opened(&a, 2));
        assert!(!p.socket_opened(&a, 2), "a third is refused");
        assert_eq!(p.sockets(&a), 2, "the refusal counted nothing");
        assert!(p.socket_opened(&user("b"), 2), "per user");
        p.socket_closed(&a);
        assert!(p.socket_opened(&a, 2), "room again after a close");
        p.socket_closed(&user("nobody"));
        assert_eq!(p.sockets(&user("nobody")), 0);
    }
}
