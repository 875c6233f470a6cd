//! The ledger backfill: the private stream has no replay, so after every (re)connect and at
//! every start each account's executions and orders are read over REST from the instant its
//! ledger is last known complete to now (Bybit's own advice: take the stream first, fill the
//! gaps between disconnections over REST).
//!
//! "Known complete" (`LedgerMark`) is, at a start, what the store holds (the supervisor reads
//! it: the newest execution and the last instant the service was watching the account), then,
//! after a connection whose backfill succeeded, the instant that connection was lost: while a
//! connection is up the stream delivers every execution and order version, and a push lost
//! with the connection was made moments before (`OVERLAP_MS` reads a little further back;
//! the store's keys make what is read twice one row). A first start reads `depth` back.
//!
//! What REST cannot give back is written to `ledger_gaps`: windows older than Bybit keeps
//! (2 years), and cancelled, rejected and deactivated orders older than 24 h (Bybit forgets
//! them), and a backfill that failed.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::decoder::RestEndpoint;
use crate::engine::batcher::Batcher;
use crate::engine::config::AccountSpec;
use crate::engine::now_us;
use crate::engine::rest::RestClient;
use crate::ledger_gap::{LedgerGap, LedgerKind};
use crate::protocol::{EXECUTION_TOPIC, ORDER_TOPIC};

pub const DAY_MS: i64 = 86_400_000;
/// `/v5/execution/list` and `/v5/order/history` answer for at most 7 days a request.
pub const WINDOW_MS: i64 = 7 * DAY_MS;
/// How long Bybit keeps executions and orders with fills: 2 years.
pub const KEPT_MS: i64 = 730 * DAY_MS;
/// How long it keeps cancelled, rejected and deactivated orders.
pub const CLOSED_ORDERS_KEPT_MS: i64 = DAY_MS;
/// How far before the instant the ledger is known complete a backfill starts reading.
pub const OVERLAP_MS: i64 = 5_000;
/// Page sizes: Bybit's largest.
const EXECUTION_PAGE_LIMIT: u32 = 100;
const ORDER_PAGE_LIMIT: u32 = 50;
/// Pages followed per query at most, a bound on a cursor that never ends: 100,000
/// executions a week per category.
const MAX_PAGES: usize = 1_000;
/// Between two requests of one account: under Bybit's 50 a second per UID (the box-wide IP
/// budget is the REST client's).
const UID_SPACING: Duration = Duration::from_millis(25);
/// Settle coins a linear listing of open orders is asked for one by one.
const LINEAR_SETTLE_COINS: [&str; 2] = ["USDT", "USDC"];

/// Up to when one account's ledger is known complete, kept across its reconnects.
#[derive(Debug)]
pub struct LedgerMark {
    /// ms since the epoch; `i64::MIN`: nothing is known (a first start).
    complete_ms: AtomicI64,
    /// The connection whose backfill succeeded (0: none yet); see `connection_lost`.
    live: AtomicU64,
}

impl LedgerMark {
    pub fn new(complete_ms: Option<i64>) -> Self {
        LedgerMark {
            complete_ms: AtomicI64::new(complete_ms.unwrap_or(i64::MIN)),
            live: AtomicU64::new(0),
        }
    }

    pub fn complete_ms(&self) -> Option<i64> {
        Some(self.complete_ms.load(Ordering::Relaxed)).filter(|&ms| ms != i64::MIN)
    }

    /// The backfill of `connection` has read everything up to its start; from then on the
    /// connection's stream keeps the ledger complete.
    pub fn backfilled(&self, connection: u64) {
        self.live.store(connection, Ordering::Relaxed);
    }

    /// `connection` ended at `now_ms`: if its backfill had succeeded, the ledger is complete
    /// up to now. A backfill still running (or failed) leaves the mark where it was, so the
    /// next connection reads the same window again.
    pub fn connection_lost(&self, connection: u64, now_ms: i64) {
        if self.live.load(Ordering::Relaxed) == connection {
            self.complete_ms.fetch_max(now_ms, Ordering::Relaxed);
        }
    }
}

/// What one backfill of one kind reads, and what it knows it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub kind: LedgerKind,
    /// ms since the epoch: the range read, in `windows`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// (start ms, end ms, reason) of what REST cannot give back.
    pub gaps: Vec<(i64, i64, &'static str)>,
}

pub const TOO_OLD: &str = "older than Bybit keeps executions and orders (2 years)";
pub const CANCELS_FORGOTTEN: &str = "Bybit keeps cancelled, rejected and deactivated orders for \
     24 h only: those of this window cannot be read back";

/// The backfill of `kind` up to `now_ms` for a ledger complete up to `complete_ms` (`None`: a
/// first start, read `depth_ms` back).
pub fn plan(kind: LedgerKind, complete_ms: Option<i64>, now_ms: i64, depth_ms: i64) -> Plan {
    let wanted = complete_ms.map_or(now_ms - depth_ms, |ms| ms - OVERLAP_MS);
    let kept = now_ms - KEPT_MS;
    let from_ms = wanted.max(kept).min(now_ms);
    let mut gaps = Vec::new();
    if wanted < kept {
        gaps.push((wanted, kept, TOO_OLD));
    }
    let cancels_kept = now_ms - CLOSED_ORDERS_KEPT_MS;
    if kind == LedgerKind::Order && from_ms < cancels_kept {
        gaps.push((from_ms, cancels_kept, CANCELS_FORGOTTEN));
    }
    Plan {
        kind,
        from_ms,
        to_ms: now_ms,
        gaps,
    }
}

/// `[start, end]` windows of at most `WINDOW_MS` that cover `[from, to]`, oldest first;
/// neighbours share their bound (a row exactly there is read twice, and stored once).
pub fn windows(from_ms: i64, to_ms: i64) -> Vec<(i64, i64)> {
    let mut windows = Vec::new();
    let mut start = from_ms;
    loop {
        let end = (start + WINDOW_MS).min(to_ms);
        windows.push((start, end));
        if end >= to_ms {
            return windows;
        }
        start = end;
    }
}

/// Which ledger kinds an account subscribes to (`execution.fast` is no ledger: see the
/// decoder).
pub fn kinds(account: &AccountSpec) -> Vec<LedgerKind> {
    let wants = |topic: &str| {
        account
            .topics
            .iter()
            .any(|t| t == topic || t.strip_prefix(topic).is_some_and(is_category))
    };
    let mut kinds = Vec::new();
    if wants(EXECUTION_TOPIC) {
        kinds.push(LedgerKind::Execution);
    }
    if wants(ORDER_TOPIC) {
        kinds.push(LedgerKind::Order);
    }
    kinds
}

/// `.linear`, `.inverse`, `.option`, `.spot`: a per-category topic.
fn is_category(rest: &str) -> bool {
    matches!(rest, ".linear" | ".inverse" | ".option" | ".spot")
}

/// What a finished backfill read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackfillSummary {
    pub requests: usize,
    pub rows: usize,
}

/// Reads every window of every kind the account subscribes to, in every category it trades,
/// into the shared tables; records the gaps the plans name. A kind that fails is reported
/// with its plan and why (the caller records its window as a gap; the next connection reads
/// it again), and the other kinds are still read.
pub async fn backfill(
    rest: &RestClient,
    account: &AccountSpec,
    base: &str,
    batcher: &Batcher,
    complete_ms: Option<i64>,
    depth_ms: i64,
) -> (BackfillSummary, Vec<(Plan, String)>) {
    let now_ms = now_us() / 1000;
    let mut summary = BackfillSummary::default();
    let mut failed = Vec::new();
    for kind in kinds(account) {
        let plan = plan(kind, complete_ms, now_ms, depth_ms);
        record_gaps(batcher, account, &plan);
        if let Err(why) = read_plan(rest, account, base, batcher, &plan, &mut summary).await {
            failed.push((plan, why));
        }
    }
    (summary, failed)
}

/// Writes the plan's gaps (what REST cannot give back) to `ledger_gaps`.
pub fn record_gaps(batcher: &Batcher, account: &AccountSpec, plan: &Plan) {
    for &(start, end, reason) in &plan.gaps {
        record_gap(batcher, account, plan.kind, (start, end), reason);
    }
}

pub fn record_gap(
    batcher: &Batcher,
    account: &AccountSpec,
    kind: LedgerKind,
    (start_ms, end_ms): (i64, i64),
    reason: &str,
) {
    let gap = LedgerGap {
        account_id: &account.id,
        kind,
        start_ts: start_ms * 1000,
        end_ts: end_ms * 1000,
        reason,
        local_ts: now_us(),
    };
    batcher.with_decoder(|d| d.record_ledger_gap(&gap));
}

async fn read_plan(
    rest: &RestClient,
    account: &AccountSpec,
    base: &str,
    batcher: &Batcher,
    plan: &Plan,
    summary: &mut BackfillSummary,
) -> Result<(), String> {
    let (endpoint, limit) = match plan.kind {
        LedgerKind::Execution => (RestEndpoint::ExecutionList, EXECUTION_PAGE_LIMIT),
        LedgerKind::Order => (RestEndpoint::OrderHistory, ORDER_PAGE_LIMIT),
    };
    for category in &account.categories {
        for (start, end) in windows(plan.from_ms, plan.to_ms) {
            let query = format!("category={category}&startTime={start}&endTime={end}");
            pages(
                rest, account, base, batcher, endpoint, &query, limit, summary,
            )
            .await?;
        }
        if plan.kind == LedgerKind::Order {
            // The history's window is on the orders' creation: an order placed before it is
            // in no history read even if it filled or was cancelled within it. The open ones
            // (`openOnly=0`) and the category's 500 most recently closed (`openOnly=1`) give
            // those their present version.
            let settle: &[&str] = if category == "linear" {
                &LINEAR_SETTLE_COINS
            } else {
                &[""]
            };
            for coin in settle {
                for open_only in ["0", "1"] {
                    let mut query = format!("category={category}&openOnly={open_only}");
                    if !coin.is_empty() {
                        query.push_str(&format!("&settleCoin={coin}"));
                    }
                    let endpoint = RestEndpoint::OrderRealtime;
                    pages(
                        rest, account, base, batcher, endpoint, &query, limit, summary,
                    )
                    .await?;
                }
            }
        }
    }
    Ok(())
}

/// Every page of one query, following `nextPageCursor`.
#[allow(clippy::too_many_arguments)]
async fn pages(
    rest: &RestClient,
    account: &AccountSpec,
    base: &str,
    batcher: &Batcher,
    endpoint: RestEndpoint,
    query: &str,
    limit: u32,
    summary: &mut BackfillSummary,
) -> Result<(), String> {
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut paged = format!("{query}&limit={limit}");
        if let Some(cursor) = &cursor {
            paged.push_str(&format!("&cursor={cursor}"));
        }
        tokio::time::sleep(UID_SPACING).await;
        let (page, _) = rest.read(account, base, endpoint, &paged, batcher).await?;
        summary.requests += 1;
        summary.rows += page.rows;
        match page.next_cursor {
            Some(next) if !next.is_empty() && cursor.as_deref() != Some(next.as_str()) => {
                cursor = Some(next)
            }
            _ => return Ok(()),
        }
    }
    Err(format!(
        "{}: more than {MAX_PAGES} pages for `{query}`",
        endpoint.path()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn windows_cover_the_range_in_steps_of_at_most_seven_days() {
        assert_eq!(windows(0, 5), vec![(0, 5)]);
        assert_eq!(windows(5, 5), vec![(5, 5)]);
        let w = windows(0, 2 * WINDOW_MS + 1);
        assert_eq!(
            w,
            vec![
                (0, WINDOW_MS),
                (WINDOW_MS, 2 * WINDOW_MS),
                (2 * WINDOW_MS, 2 * WINDOW_MS + 1)
            ]
        );
        assert!(w.iter().all(|(s, e)| e - s <= WINDOW_MS));
    }

    #[test]
    fn a_reconnect_reads_from_the_mark_less_the_overlap_with_no_gap() {
        let p = plan(LedgerKind::Order, Some(NOW - 60_000), NOW, 7 * DAY_MS);
        assert_eq!((p.from_ms, p.to_ms), (NOW - 60_000 - OVERLAP_MS, NOW));
        assert!(p.gaps.is_empty());
    }

    #[test]
    fn a_first_start_reads_the_depth_and_records_the_cancels_it_cannot() {
        let e = plan(LedgerKind::Execution, None, NOW, 7 * DAY_MS);
        assert_eq!(e.from_ms, NOW - 7 * DAY_MS);
        assert!(e.gaps.is_empty());
        let o = plan(LedgerKind::Order, None, NOW, 7 * DAY_MS);
        assert_eq!(
            o.gaps,
            vec![(NOW - 7 * DAY_MS, NOW - DAY_MS, CANCELS_FORGOTTEN)]
        );
    }

    #[test]
    fn what_is_older_than_bybit_keeps_is_a_gap_and_not_read() {
        let long_ago = NOW - 3 * KEPT_MS;
        let p = plan(LedgerKind::Execution, Some(long_ago), NOW, 7 * DAY_MS);
        assert_eq!(p.from_ms, NOW - KEPT_MS);
        assert_eq!(
            p.gaps,
            vec![(long_ago - OVERLAP_MS, NOW - KEPT_MS, TOO_OLD)]
        );
    }

    #[test]
    fn only_the_connection_whose_backfill_succeeded_moves_the_mark() {
        let mark = LedgerMark::new(None);
        mark.connection_lost(1, NOW);
        assert_eq!(mark.complete_ms(), None);
        mark.backfilled(1);
        mark.connection_lost(2, NOW);
        assert_eq!(mark.complete_ms(), None);
        mark.connection_lost(1, NOW);
        assert_eq!(mark.complete_ms(), Some(NOW));
        mark.connection_lost(1, NOW - 5);
        assert_eq!(mark.complete_ms(), Some(NOW), "never moves back");
    }
}
