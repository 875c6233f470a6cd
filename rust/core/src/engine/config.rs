//! What the engine is told: its settings and the accounts it holds.

use std::path::PathBuf;
use std::time::Duration;

use crate::decoder::DecoderConfig;
use crate::position::PositionKey;
use crate::sign::Secret;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A table's rows are cut into a batch when they reach this many...
    pub batch_size: usize,
    /// ...or when its oldest row has waited this long.
    pub flush_interval: Duration,
    /// Past this many decoded rows not yet taken by `next_batches`, sockets stop being read
    /// (TCP pushes back on the exchange) instead of memory growing or rows being dropped.
    pub max_pending_rows: usize,
    /// ...or this many bytes of them (Arrow memory).
    pub max_pending_bytes: usize,
    pub ping_interval: Duration,
    /// A ping unanswered this long means a zombie connection: reconnect.
    pub pong_timeout: Duration,
    /// How long auth and subscribe answers may take.
    pub handshake_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A connection that stayed up this long counts as healthy: the next failure starts
    /// backing off from `backoff_base` again.
    pub stable_after: Duration,
    /// New connections allowed per `connect_window` for the whole box (Bybit: ~500 per 5 min
    /// per IP, reconnects included)...
    pub connect_budget: u32,
    pub connect_window: Duration,
    /// ...of which this many may go at once.
    pub connect_burst: u32,
    pub rest_timeout: Duration,
    /// Tries per REST read before the resync is reported failed.
    pub rest_attempts: u32,
    /// REST requests this collector may send per `rest_window`, every account's resync and
    /// backfill together: its share of the IP's limit (Bybit: 600 per 5 s; an IP over it is
    /// banned for 10 minutes), which the supervisor divides among its collectors.
    pub rest_budget: u32,
    pub rest_window: Duration,
    /// How far back a first start reads each account's executions and orders (Bybit keeps
    /// 2 years).
    pub backfill_depth: Duration,
    pub decoder: DecoderConfig,
    /// Extra PEM root certificates (a private test CA), trusted beside the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Tokio worker threads of this collector.
    pub worker_threads: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: 10_000,
            flush_interval: Duration::from_secs(1),
            max_pending_rows: 1_000_000,
            max_pending_bytes: usize::MAX,
            ping_interval: Duration::from_secs(crate::protocol::PING_INTERVAL_SECS),
            pong_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            stable_after: Duration::from_secs(30),
            connect_budget: 500,
            connect_window: Duration::from_secs(300),
            connect_burst: 25,
            rest_timeout: Duration::from_secs(10),
            rest_attempts: 3,
            rest_budget: 500,
            rest_window: Duration::from_secs(5),
            backfill_depth: Duration::from_secs(7 * 86_400),
            decoder: DecoderConfig::default(),
            ca_file: None,
            worker_threads: 1,
        }
    }
}

/// One account's private stream.
#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub id: String,
    /// `wss://stream.bybit.com/v5/private` or the like (plain `ws://` for loopback).
    pub ws_url: String,
    /// `https://api.bybit.com` or the like; `None` turns the REST resync off.
    pub rest_url: Option<String>,
    pub api_key: String,
    pub api_secret: Secret,
    /// `position` (or `position.<category>`), `wallet`, ...
    pub topics: Vec<String>,
    /// Position categories read on resync (`linear`, `inverse`, `option`).
    pub categories: Vec<String>,
    /// Wallet account types read on resync (`UNIFIED`, `CONTRACT`, ...).
    pub account_types: Vec<String>,
    /// Positions a previous run saw open (from the store): the first resync reads each by
    /// symbol, so one that closed while nothing was connected is seen closed.
    pub open_positions: Vec<PositionKey>,
    /// Up to when the store holds this account's ledger complete (ms since the epoch; from
    /// the store, see `engine::ledger`); `None`: a first start, read `backfill_depth` back.
    pub ledger_complete_ms: Option<i64>,
}

impl AccountSpec {
    pub fn wants_positions(&self) -> bool {
        self.topics
            .iter()
            .any(|t| t.starts_with(crate::protocol::POSITION_TOPIC))
    }

    pub fn wants_wallet(&self) -> bool {
        self.topics
            .iter()
            .any(|t| t == crate::protocol::WALLET_TOPIC)
    }
}
