//! Per-account counters, updated lock-free on the hot path and read by `stats()`.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

/// Where an account's connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Waiting for the box's connection budget.
    Queued,
    Connecting,
    Authenticating,
    Subscribing,
    /// Subscribed and receiving.
    Live,
    /// Live, but not reading: undelivered rows reached the limit.
    Paused,
    /// Waiting to reconnect after a loss.
    Backoff,
    /// Refused by the exchange (auth or subscribe); retrying slowly.
    Failing,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Connecting => "connecting",
            State::Authenticating => "authenticating",
            State::Subscribing => "subscribing",
            State::Live => "live",
            State::Paused => "paused",
            State::Backoff => "backoff",
            State::Failing => "failing",
            State::Closed => "closed",
        }
    }

    fn from_u8(value: u8) -> State {
        const ALL: [State; 9] = [
            State::Queued,
            State::Connecting,
            State::Authenticating,
            State::Subscribing,
            State::Live,
            State::Paused,
            State::Backoff,
            State::Failing,
            State::Closed,
        ];
        ALL[value as usize]
    }
}

#[derive(Debug)]
pub struct AccountStats {
    state: AtomicU8,
    pub frames: AtomicU64,
    pub rows: AtomicU64,
    pub rejects: AtomicU64,
    pub reconnects: AtomicU64,
    pub resyncs: AtomicU64,
    /// µs since the epoch of the last frame received; 0 before the first.
    pub last_message_us: AtomicI64,
    /// The last failure's reason (Bybit's message or the socket error; never a secret).
    last_error: Mutex<Option<String>>,
}

impl Default for AccountStats {
    fn default() -> Self {
        AccountStats {
            state: AtomicU8::new(State::Queued as u8),
            frames: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            rejects: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            last_message_us: AtomicI64::new(0),
            last_error: Mutex::new(None),
        }
    }
}

impl AccountStats {
    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_error(&self, reason: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
    }

    pub fn snapshot(&self, account_id: &str) -> AccountSnapshot {
        AccountSnapshot {
            account_id: account_id.to_owned(),
            state: self.state().as_str(),
            frames: self.frames.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            rejects: self.rejects.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            last_message_us: Some(self.last_message_us.load(Ordering::Relaxed))
                .filter(|&us| us > 0),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// A copy of one account's counters at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSnapshot {
    pub account_id: String,
    pub state: &'static str,
    pub frames: u64,
    pub rows: u64,
    pub rejects: u64,
    pub reconnects: u64,
    pub resyncs: u64,
    pub last_message_us: Option<i64>,
    pub last_error: Option<String>,
}
