//! `connection_events`: every state change of every account's connection, so an analyst can
//! see each gap in the record and why it happened.

use crate::table;

table! {
    /// Builders of `connection_events`.
    ConnectionEventColumns = "connection_events" {
        account_id: Utf8 [required],
        local_ts: TimestampUs [required],
        /// One of the `Event` names.
        event: Utf8 [required],
        /// Why: Bybit's `ret_msg`, the socket error, the REST error (never a secret).
        reason: Utf8,
        /// For `backoff`: how long the next attempt waits.
        backoff_ms: Int64,
        /// Bybit's connection id, once the server has named one.
        conn_id: Utf8,
    }
}

/// The connection's state changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Connecting,
    Connected,
    AuthOk,
    AuthFailed,
    Subscribed,
    SubscribeFailed,
    Resynced,
    ResyncFailed,
    /// The ledger (executions, orders) read over REST since it was last known complete.
    Backfilled,
    BackfillFailed,
    Disconnected,
    Backoff,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Connecting => "connecting",
            Event::Connected => "connected",
            Event::AuthOk => "auth_ok",
            Event::AuthFailed => "auth_failed",
            Event::Subscribed => "subscribed",
            Event::SubscribeFailed => "subscribe_failed",
            Event::Resynced => "resynced",
            Event::ResyncFailed => "resync_failed",
            Event::Backfilled => "backfilled",
            Event::BackfillFailed => "backfill_failed",
            Event::Disconnected => "disconnected",
            Event::Backoff => "backoff",
        }
    }
}

/// One row of `connection_events`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionEvent<'a> {
    pub account_id: &'a str,
    pub local_ts: i64,
    pub event: Event,
    pub reason: Option<&'a str>,
    pub backoff_ms: Option<i64>,
    pub conn_id: Option<&'a str>,
}

impl ConnectionEventColumns {
    pub fn append(&mut self, e: &ConnectionEvent<'_>) {
        self.account_id.append_value(e.account_id);
        self.local_ts.append_value(e.local_ts);
        self.event.append_value(e.event.as_str());
        self.reason.append_option(e.reason);
        self.backoff_ms.append_option(e.backoff_ms);
        self.conn_id.append_option(e.conn_id);
    }
}
