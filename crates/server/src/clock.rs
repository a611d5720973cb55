//! Where the server reads the time. Services and the deadline timer take
//! it from a [`Clock`], so a test can move time instead of waiting for it.
//!
//! [`SystemClock`] is the wall clock with tokio's timers (production).
//! [`TokioClock`] is anchored on tokio's clock, so under paused tokio time
//! (`#[tokio::test(start_paused = true)]`) both now and sleeps follow
//! `tokio::time::advance`. [`ManualClock`] is moved by hand, for tests that
//! also do real I/O (a database, sockets), where paused tokio time would
//! jump ahead whenever the runtime waits for the network.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::SubsecRound;
use consultd_domain::Timestamp;
use tokio::sync::watch;

/// A future that resolves when the clock reaches an instant.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    /// Now, at the millisecond precision the contract shows and the
    /// database keeps, so what is stored and what is sent are one instant.
    fn now(&self) -> Timestamp;

    /// Resolves once [`Clock::now`] has reached `when`.
    fn sleep_until(&self, when: Timestamp) -> Sleep;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

fn millis(t: Timestamp) -> Timestamp {
    t.trunc_subsecs(3)
}

/// The wall clock; sleeps on tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        millis(chrono::Utc::now())
    }

    fn sleep_until(&self, when: Timestamp) -> Sleep {
        let wait = (when - chrono::Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Wall time read off tokio's clock: `anchor` plus the tokio time elapsed
/// since the clock was made. Follows paused time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: Timestamp,
    instant: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(wall: Timestamp) -> Self {
        Self {
            wall: millis(wall),
            instant: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = chrono::Duration::from_std(self.instant.elapsed()).unwrap_or_default();
        millis(self.wall + elapsed)
    }

    fn sleep_until(&self, when: Timestamp) -> Sleep {
        let after = (when - self.wall).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep_until(self.instant + after))
    }
}

/// A clock that moves only when told ([`ManualClock::frozen`]), or that
/// follows the wall clock plus whatever [`ManualClock::advance`] added
/// ([`ManualClock::following_wall`]: end-to-end tests jump over a deadline
/// instead of waiting for it, while everything else sees time pass).
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// The frozen base instant; `None` follows the wall clock.
    frozen: Option<Timestamp>,
    offset: Arc<watch::Sender<chrono::Duration>>,
}

impl ManualClock {
    pub fn frozen(at: Timestamp) -> Self {
        Self {
            frozen: Some(millis(at)),
            offset: Arc::new(watch::Sender::new(chrono::Duration::zero())),
        }
    }

    pub fn following_wall() -> Self {
        Self {
            frozen: None,
            offset: Arc::new(watch::Sender::new(chrono::Duration::zero())),
        }
    }

    /// Moves the clock forward; every sleep now due resolves.
    pub fn advance(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or_default();
        self.offset.send_modify(|offset| *offset += by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let base = self.frozen.unwrap_or_else(chrono::Utc::now);
        millis(base + *self.offset.borrow())
    }

    fn sleep_until(&self, when: Timestamp) -> Sleep {
        let clock = self.clone();
        let mut moved = self.offset.subscribe();
        Box::pin(async move {
            loop {
                let now = clock.now();
                if now >= when {
                    return;
                }
                let wall = async {
                    match clock.frozen {
                        Some(_) => std::future::pending().await,
                        None => {
                            let wait = (when - now).to_std().unwrap_or_default();
                            tokio::time::sleep(wait).await;
                        }
                    }
                };
                tokio::select! {
                    () = wall => {}
                    changed = moved.changed() => {
                        // The clock is gone: nothing will ever be due.
                        if changed.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            }
        })
    }
}

/// The real wall clock in Unix milliseconds, whatever [`Clock`] is in use:
/// the bus's lag compares nodes' clocks, so it is only as exact as their
/// clock sync.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let start = chrono::Utc::now();
        let clock = TokioClock::starting_at(start);
        let due = clock.now() + chrono::Duration::seconds(30);
        let sleep = clock.sleep_until(due);
        tokio::time::advance(Duration::from_secs(30)).await;
        sleep.await;
        assert_eq!(clock.now(), due);
    }

    #[tokio::test]
    async fn a_manual_sleep_resolves_only_once_the_clock_is_moved() {
        let clock = ManualClock::frozen(chrono::Utc::now());
        let due = clock.now() + chrono::Duration::seconds(5);
        let mut sleep = clock.sleep_until(due);
        clock.advance(Duration::from_secs(4));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut sleep)
                .await
                .is_err(),
            "due in a second, not yet"
        );
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(1), sleep)
            .await
            .expect("due now");
    }
}

#[cfg(test)]
mod wall_tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wall_following_clock_jumps_ahead_when_advanced() {
        let clock = ManualClock::following_wall();
        let before = millis(chrono::Utc::now());
        let due = clock.now() + chrono::Duration::seconds(60);
        let sleep = clock.sleep_until(due);
        clock.advance(Duration::from_secs(60));
        tokio::time::timeout(Duration::from_secs(1), sleep)
            .await
            .expect("due after the jump");
        assert!(clock.now() >= before + chrono::Duration::seconds(60));
    }

    #[tokio::test]
    async fn a_wall_following_clock_also_wakes_by_itself() {
        let clock = ManualClock::following_wall();
        let due = clock.now() + chrono::Duration::milliseconds(30);
        tokio::time::timeout(Duration::from_secs(1), clock.sleep_until(due))
            .await
            .expect("due in 30 ms of real time");
        assert!(clock.now() >= due);
    }
}
