//! The connection engine: every account's private stream held in one tokio runtime, frames
//! decoded into shared Arrow builders, batches handed out by `Collector::next_batches`.
//! Python never touches a frame.

mod backoff;
mod batcher;
mod budget;
pub mod config;
pub mod ledger;
mod rest;
mod session;
pub mod stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_array::RecordBatch;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::decoder::{Decoder, Table};
pub use config::{AccountSpec, EngineConfig};
pub use session::subscribe_requests;
pub use stats::{AccountSnapshot, State};

use batcher::Batcher;
use budget::TokenBudget;
use ledger::LedgerMark;
use rest::{KnownPositions, RestClient};
use stats::AccountStats;

/// µs since the Unix epoch, UTC.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// What every session of a collector shares.
pub(crate) struct Shared {
    config: EngineConfig,
    batcher: Batcher,
    budget: TokenBudget,
    rest: RestClient,
    tls: Option<tokio_tungstenite::Connector>,
}

struct Held {
    stats: Arc<AccountStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    DuplicateAccount(String),
    Config(String),
    Closed,
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::DuplicateAccount(id) => write!(f, "account {id:?} is already held"),
            EngineError::Config(why) => f.write_str(why),
            EngineError::Closed => f.write_str("the collector is closed"),
        }
    }
}

impl std::error::Error for EngineError {}

/// Idle REST connections kept per host between resyncs. Unbounded (reqwest's default), a
/// start of 1,000 accounts left ~1,000 idle keep-alive connections with their buffers for 90 s:
/// ~18 KiB per account of the 47 measured idle at 1,000. Resyncs come at the connect budget's
/// pace (25 at once, then ~2 a second by default), which a few warm connections serve.
const REST_IDLE_CONNECTIONS: usize = 8;

/// Holds the private streams of many accounts.
pub struct Collector {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    held: Mutex<HashMap<String, Held>>,
    /// What each account was last seen to hold; kept across reconnects and across removing
    /// and adding the account again.
    known: Mutex<HashMap<String, Arc<KnownPositions>>>,
    /// Up to when each account's ledger is known complete; kept the same way.
    ledgers: Mutex<HashMap<String, Arc<LedgerMark>>>,
    closed: Mutex<bool>,
}

impl Collector {
    pub fn new(config: EngineConfig, accounts: Vec<AccountSpec>) -> Result<Self, EngineError> {
        // rustls needs one process-wide crypto provider; ring builds without cmake. An
        // already-installed provider (a second collector) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let roots = root_store(config.ca_file.as_deref())?;
        let tls_config = rustls::ClientConfig::builder()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .timeout(config.rest_timeout)
            .pool_max_idle_per_host(REST_IDLE_CONNECTIONS)
            .tls_backend_preconfigured(
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
            .build()
            .map_err(|e| EngineError::Config(format!("HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("ingestor-engine")
            .enable_all()
            .build()
            .map_err(|e| EngineError::Config(format!("runtime: {e}")))?;
        let shared = Arc::new(Shared {
            batcher: Batcher::new(
                Decoder::new(config.decoder),
                config.batch_size,
                config.flush_interval,
                config.max_pending_rows,
                config.max_pending_bytes,
            ),
            budget: TokenBudget::new(
                config.connect_budget,
                config.connect_window,
                config.connect_burst,
            ),
            rest: RestClient::new(
                http,
                config.rest_attempts,
                // A burst of a tenth: a start's resyncs go at once, then at the window's pace.
                TokenBudget::new(
                    config.rest_budget,
                    config.rest_window,
                    (config.rest_budget / 10).max(1),
                ),
            ),
            tls: Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls_config))),
            config,
        });
        let flusher = shared.clone();
        // The flusher sleeps until the oldest row's table is due, so a batch is cut
        // flush_interval after its first row (a fixed 100 ms tick cut it up to 100 ms late:
        // p99 creation -> committed 1.15-1.19 s at flush_interval 1 s), and at most `idle`
        // when nothing waits (a first row's table is due a whole flush_interval later).
        let idle = (shared.config.flush_interval / 4)
            .clamp(Duration::from_millis(5), Duration::from_millis(100));
        runtime.spawn(async move {
            loop {
                let now = tokio::time::Instant::now();
                let wait = flusher.batcher.flush_due().map_or(idle, |due| {
                    due.saturating_duration_since(now.into_std()).min(idle)
                });
                tokio::time::sleep_until(now + wait).await;
            }
        });
        let collector = Collector {
            runtime,
            shared,
            held: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            ledgers: Mutex::new(HashMap::new()),
            closed: Mutex::new(false),
        };
        for account in accounts {
            collector.add_account(account)?;
        }
        Ok(collector)
    }

    /// Starts holding one more account.
    pub fn add_account(&self, account: AccountSpec) -> Result<(), EngineError> {
        if *self.closed.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(EngineError::Closed);
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.contains_key(&account.id) {
            return Err(EngineError::DuplicateAccount(account.id));
        }
        let known = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(account.id.clone())
            .or_default()
            .clone();
        known.update(
            account
                .open_positions
                .iter()
                .map(|key| (key.clone(), true))
                .collect(),
        );
        let ledger = self
            .ledgers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(account.id.clone())
            .or_insert_with(|| Arc::new(LedgerMark::new(account.ledger_complete_ms)))
            .clone();
        let stats = Arc::new(AccountStats::default());
        let (stop, stop_rx) = watch::channel(false);
        let id = account.id.clone();
        let session = session::Session {
            account,
            shared: self.shared.clone(),
            stats: stats.clone(),
            stop: stop_rx,
            known,
            ledger,
            connection: 0,
        };
        let task = self.runtime.spawn(session.run());
        held.insert(id, Held { stats, stop, task });
        Ok(())
    }

    /// Stops holding an account: its connection is closed and its rows so far stay.
    /// Returns whether the account was held.
    pub fn remove_account(&self, account_id: &str) -> bool {
        let removed = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account_id);
        match removed {
            Some(held) => {
                let _ = held.stop.send(true);
                let _ = self.runtime.block_on(async {
                    tokio::time::timeout(Duration::from_secs(3), held.task).await
                });
                true
            }
            None => false,
        }
    }

    /// Finished `(table, batch)` pairs, waiting up to `timeout` for the first.
    pub fn next_batches(&self, timeout: Duration) -> Vec<(Table, RecordBatch)> {
        self.shared.batcher.next_batches(timeout)
    }

    /// Every held account's counters.
    pub fn stats(&self) -> Vec<AccountSnapshot> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = held.iter().map(|(id, h)| h.stats.snapshot(id)).collect();
        out.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        out
    }

    /// Connects waiting for the box's connection budget.
    pub fn connect_queue(&self) -> usize {
        self.shared.budget.queued()
    }

    /// Rows decoded but not yet handed out.
    pub fn undelivered_bytes(&self) -> usize {
        self.shared.batcher.undelivered_bytes()
    }

    pub fn undelivered_rows(&self) -> usize {
        self.shared.batcher.undelivered()
    }

    /// Stops reading every socket, closes them, and returns every batch not yet taken, so
    /// nothing decoded is lost on shutdown.
    pub fn close(&self) -> Vec<(Table, RecordBatch)> {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = true;
        let held: Vec<Held> = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in &held {
            let _ = h.stop.send(true);
        }
        self.runtime.block_on(async {
            for h in held {
                let _ = tokio::time::timeout(Duration::from_secs(3), h.task).await;
            }
        });
        self.shared.batcher.flush_all();
        self.shared.batcher.next_batches(Duration::ZERO)
    }
}

fn root_store(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, EngineError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| EngineError::Config(format!("CA file {}: {e}", path.display())))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| EngineError::Config(format!("CA file {}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| EngineError::Config(format!("CA file {}: {e}", path.display())))?;
        }
    }
    Ok(roots)
}
