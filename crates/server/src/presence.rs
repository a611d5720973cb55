//! Who is connected now, by user: the per-user socket cap and the clock
//! behind abandoned calls.
//!
//! A user is *present* while any of their sockets is open; a REST request
//! also counts as a sign of life (a client whose websocket is blocked
//! completes the whole flow by polling REST, CONTRACT §4). Nothing here is
//! persisted: after a restart everyone's clock starts at the start.
//! Time comes from the server's [`Clock`](crate::clock::Clock), so tests move it.

use std::time::Duration;

use consultd_domain::{Timestamp, UserId};
use dashmap::DashMap;

use crate::clock::SharedClock;

#[derive(Debug, Clone, Copy)]
struct Seen {
    sockets: usize,
    last_seen: Timestamp,
}

pub struct Presence {
    clock: SharedClock,
    started: Timestamp,
    users: DashMap<UserId, Seen>,
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
        true
    }

    /// One of `user`'s sockets closed.
    pub fn socket_closed(&self, user: &UserId) {
        if let Some(mut seen) = self.users.get_mut(user) {
            seen.sockets = seen.sockets.saturating_sub(1);
            seen.last_seen = self.clock.now();
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
