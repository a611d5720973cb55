//! The deadline timer: one task that sleeps until the earliest deadline (by
//! the injected [`crate::clock::Clock`]) and then asks the owning service to
//! act (an unanswered invitation expires).
//!
//! Deadlines live in the database; this task only caches them. On start it
//! reloads every pending one, so an invitation issued before a restart still
//! expires on time, and a chat session live across a restart still ends on
//! time. Firing twice is harmless: the service's transition is a
//! compare-and-set, so exactly one expiry (and one `call_expired`) happens,
//! even with several nodes running this timer.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use consultd_domain::{CallId, Timestamp};
use tokio::sync::mpsc;

use crate::clock::SharedClock;

/// Something the server must do by itself at a given instant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
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

/// What acts when a deadline is due.
pub trait OnDeadline: Clone + Send + Sync + 'static {
    fn on_deadline(&self, what: Deadline) -> impl Future<Output = ()> + Send;
}

/// Runs until aborted (the server aborts it on shutdown).
pub async fn run(
    mut rx: mpsc::UnboundedReceiver<(Timestamp, Deadline)>,
    handler: impl OnDeadline,
    initial: Vec<(Timestamp, Deadline)>,
    clock: SharedClock,
) {
    let mut pending: BTreeSet<(Timestamp, Deadline)> = initial.into_iter().collect();
    tracing::info!(pending = pending.len(), "deadline timer started");
    loop {
        let sleep = match pending.first() {
            Some((when, _)) => clock.sleep_until(*when),
            // Nothing pending: wait for the next deadline only.
            None => Box::pin(std::future::pending()),
        };
        tokio::select! {
            () = sleep => {
                let now = clock.now();
                while let Some(first) = pending.first() {
                    if first.0 > now {
                        break;
                    }
                    let Some((_, what)) = pending.pop_first() else { break };
                    let handler = handler.clone();
                    // Each firing is its own task: a slow database never
                    // delays the deadlines behind it.
                    tokio::spawn(async move { handler.on_deadline(what).await });
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

/// Runs `step` every `period` (the first time one period from now) until
/// aborted; a slow step delays the next one rather than piling up.
pub async fn every<F, Fut>(period: Duration, clock: SharedClock, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let period = chrono::Duration::from_std(period).unwrap_or(chrono::Duration::MAX);
    loop {
        clock.sleep_until(clock.now() + period).await;
        step().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::clock::TokioClock;

    /// Writes down each firing with the clock's time.
    #[derive(Clone)]
    struct Log {
        clock: SharedClock,
        fired: Arc<Mutex<Vec<(Timestamp, Deadline)>>>,
    }

    impl OnDeadline for Log {
        async fn on_deadline(&self, what: Deadline) {
            let now = self.clock.now();
            self.fired.lock().unwrap().push((now, what));
        }
    }

    fn setup() -> (SharedClock, Log, Timestamp) {
        let clock: SharedClock = Arc::new(TokioClock::starting_at(chrono::Utc::now()));
        let log = Log {
            clock: clock.clone(),
            fired: Arc::default(),
        };
        let t0 = clock.now();
        (clock, log, t0)
    }

    fn call(id: &str) -> Deadline {
        Deadline::CallExpiry(CallId::new(id))
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    async fn advance(secs: u64) {
        tokio::time::advance(Duration::from_secs(secs)).await;
        // Let the spawned firings run.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_fire_at_their_instant_in_order_and_never_early() {
        let (clock, log, t0) = setup();
        let (timer, rx) = Timer::channel();
        // One reloaded at start, two added later, out of order.
        let initial = vec![(t0 + secs(20), call("c"))];
        tokio::spawn(run(rx, log.clone(), initial, clock.clone()));
        timer.at(t0 + secs(10), call("b"));
        timer.at(t0 + secs(5), call("a"));
        advance(4).await;
        assert!(log.fired.lock().unwrap().is_empty(), "nothing is due yet");
        advance(1).await;
        advance(5).await;
        advance(10).await;
        let fired = log.fired.lock().unwrap().clone();
        assert_eq!(
            fired,
            vec![
                (t0 + secs(5), call("a")),
                (t0 + secs(10), call("b")),
                (t0 + secs(20), call("c")),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_past_fires_at_once_and_a_chat_end_too() {
        let (clock, log, t0) = setup();
        let (timer, rx) = Timer::channel();
        let past = vec![(t0 - secs(30), call("missed while down"))];
        tokio::spawn(run(rx, log.clone(), past, clock.clone()));
        advance(0).await;
        timer.at(t0 + secs(1), Deadline::ChatEnd("chat".into()));
        advance(1).await;
        let fired: Vec<Deadline> = log
            .fired
            .lock()
            .unwrap()
            .iter()
            .map(|f| f.1.clone())
            .collect();
        assert_eq!(
            fired,
            vec![call("missed while down"), Deadline::ChatEnd("chat".into())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_waits_one_period_before_the_first_step() {
        let count = Arc::new(Mutex::new(0));
        let steps = count.clone();
        let clock: SharedClock = Arc::new(TokioClock::starting_at(chrono::Utc::now()));
        tokio::spawn(every(Duration::from_secs(3), clock, move || {
            let steps = steps.clone();
            async move { *steps.lock().unwrap() += 1 }
        }));
        // Let it start (and take its first, immediate tick) at t = 0.
        advance(0).await;
        advance(2).await;
        assert_eq!(*count.lock().unwrap(), 0);
        advance(1).await;
        assert_eq!(*count.lock().unwrap(), 1);
        advance(3).await;
        advance(3).await;
        assert_eq!(*count.lock().unwrap(), 3);
    }

    #[test]
    fn the_sweep_looks_a_quarter_of_the_time_within_bounds() {
        assert_eq!(
            sweep_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(20)),
            Duration::from_secs(5)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(600)),
            Duration::from_secs(15)
        );
    }
}
