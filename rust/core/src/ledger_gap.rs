//! `ledger_gaps`: every window in which an account's ledger (executions, orders) cannot be
//! known complete, and why. The stream has no replay and REST keeps only so much (Bybit
//! forgets cancelled orders after 24 h): what cannot be backfilled is recorded here, never
//! passed over in silence.

use crate::table;

table! {
    /// Builders of `ledger_gaps`.
    LedgerGapColumns = "ledger_gaps" {
        account_id: Utf8 [required],
        /// `execution` or `order`.
        kind: Utf8 [required],
        /// The window the ledger of that kind may be missing rows in.
        start_ts: TimestampUs [required],
        end_ts: TimestampUs [required],
        /// Why (never a secret).
        reason: Utf8 [required],
        /// When the backfill that found it ran.
        local_ts: TimestampUs [required],
    }
}

/// The ledger's kinds, as `ledger_gaps.kind` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    Execution,
    Order,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Execution => "execution",
            LedgerKind::Order => "order",
        }
    }
}

/// One row of `ledger_gaps`; times in µs since the epoch, UTC.
#[derive(Debug, Clone, Copy)]
pub struct LedgerGap<'a> {
    pub account_id: &'a str,
    pub kind: LedgerKind,
    pub start_ts: i64,
    pub end_ts: i64,
    pub reason: &'a str,
    pub local_ts: i64,
}

impl LedgerGapColumns {
    pub fn append(&mut self, g: &LedgerGap<'_>) {
        self.account_id.append_value(g.account_id);
        self.kind.append_value(g.kind.as_str());
        self.start_ts.append_value(g.start_ts);
        self.end_ts.append_value(g.end_ts);
        self.reason.append_value(g.reason);
        self.local_ts.append_value(g.local_ts);
    }
}
