//! Reconnect delays: exponential with full jitter, so accounts that dropped together do not
//! come back together.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The next delay: uniform in [0, min(cap, base * 2^attempt)].
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(fastrand::f64())
    }

    /// After a refused auth: wait about the cap (not in a hot loop, and not all at once).
    pub fn refused_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.cap.mul_f64(0.5 + 0.5 * fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_stay_under_it() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        let mut backoff = Backoff::new(base, cap);
        for attempt in 0..40u32 {
            let ceiling = base
                .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
                .min(cap);
            assert!(backoff.next_delay() <= ceiling, "attempt {attempt}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= base);
    }

    #[test]
    fn delays_are_jittered() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let delays: std::collections::HashSet<_> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays.len() > 10);
    }

    #[test]
    fn refused_auth_waits_at_least_half_the_cap() {
        let cap = Duration::from_secs(60);
        let mut backoff = Backoff::new(Duration::from_secs(1), cap);
        for _ in 0..20 {
            let d = backoff.refused_delay();
            assert!(d >= cap / 2 && d <= cap);
        }
    }
}
