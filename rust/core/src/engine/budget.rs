//! Token buckets for the exchange's per-IP limits: every connect and reconnect of every
//! account draws from one, so a cold start of 10,000 accounts or a mass disconnect cannot
//! exceed the connection limit, and every REST request from another (resyncs and ledger
//! backfills), so they cannot get the IP banned.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct TokenBudget {
    state: Mutex<Bucket>,
    /// Time for one token to come back.
    refill: Duration,
    burst: f64,
    waiting: AtomicUsize,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBudget {
    /// `budget` tokens per `window`, at most `burst` at once.
    pub fn new(budget: u32, window: Duration, burst: u32) -> Self {
        let burst = burst.clamp(1, budget.max(1)) as f64;
        TokenBudget {
            state: Mutex::new(Bucket {
                tokens: burst,
                updated: Instant::now(),
            }),
            refill: window / budget.max(1),
            burst,
            waiting: AtomicUsize::new(0),
        }
    }

    /// Tasks waiting for a token now (connects: shown in stats).
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Waits for a token. Waiters are served in order (tokio's Mutex is fair); a small jitter
    /// spreads connects that became due at the same instant.
    pub async fn acquire(&self) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let mut bucket = self.state.lock().await;
        let now = Instant::now();
        let earned = now.duration_since(bucket.updated).as_secs_f64() / self.refill.as_secs_f64();
        bucket.tokens = (bucket.tokens + earned).min(self.burst);
        bucket.updated = now;
        if bucket.tokens < 1.0 {
            let wait = self.refill.mul_f64(1.0 - bucket.tokens);
            let jitter = self.refill.mul_f64(0.25 * fastrand::f64());
            tokio::time::sleep(wait + jitter).await;
            bucket.tokens = 1.0;
            bucket.updated = Instant::now();
        }
        bucket.tokens -= 1.0;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_goes_at_once_then_one_per_refill() {
        let budget = TokenBudget::new(10, Duration::from_secs(10), 3);
        let start = Instant::now();
        for _ in 0..3 {
            budget.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(1));
        for _ in 0..5 {
            budget.acquire().await;
        }
        // Five more tokens at one per second (plus at most 25% jitter each).
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(5), "{waited:?}");
        assert!(waited <= Duration::from_millis(6_300), "{waited:?}");
        assert_eq!(budget.queued(), 0);
    }
}
