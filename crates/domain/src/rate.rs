//! A token bucket, for per-socket event rate limits. Time is an input.

use std::time::{Duration, Instant};

/// Allows `burst` events at once and `per_second` on average after that.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A zero rate or burst disables limiting entirely.
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        Self {
            capacity: f64::from(burst),
            per_second: f64::from(per_second),
            tokens: f64::from(burst),
            last: now,
        }
    }

    fn unlimited(&self) -> bool {
        self.capacity == 0.0 || self.per_second == 0.0
    }

    /// Whether the bucket would be full at `now`: then it is no different
    /// from a new one, and a keyed limiter may forget it.
    pub fn is_full(&self, now: Instant) -> bool {
        if self.unlimited() {
            return true;
        }
        let elapsed = now
            .checked_duration_since(self.last)
            .unwrap_or(Duration::ZERO);
        self.tokens + elapsed.as_secs_f64() * self.per_second >= self.capacity
    }

    /// Takes one token if there is one. `now` earlier than the last call
    /// (a caller's clock quirk) refills nothing rather than panicking.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.unlimited() {
            return true;
        }
        let elapsed = now
            .checked_duration_since(self.last)
            .unwrap_or(Duration::ZERO);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0), "burst exhausted");
        assert!(!b.is_full(t0));
        assert!(
            b.is_full(t0 + Duration::from_millis(300)),
            "3 tokens at 10/s"
        );
        assert!(!b.try_take(t0 + Duration::from_millis(50)), "half a token");
        assert!(
            b.try_take(t0 + Duration::from_millis(100)),
            "one token after 1/rate"
        );
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
        // A long pause refills to the burst, not beyond it.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.try_take(later));
        }
        assert!(!b.try_take(later));
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1, 1, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_secs(5)));
        assert!(!b.try_take(t0 + Duration::from_millis(500)));
        assert!(b.try_take(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn zero_disables_limiting() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 0, t0);
        assert!((0..10_000).all(|_| b.try_take(t0)));
    }
}
