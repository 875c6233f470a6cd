//! What every row carries besides the exchange's own fields, and why an element can fail.

use std::fmt;

/// Where a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A push on the private WebSocket.
    Ws,
    /// A REST read of the account's state after a (re)connect.
    Rest,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ws => "ws",
            Source::Rest => "rest",
        }
    }
}

/// The per-frame values copied into each row decoded from it.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    pub account_id: &'a str,
    /// The envelope's `creationTime` (µs since the epoch, UTC).
    pub creation_ts: i64,
    /// When the frame arrived here (µs since the epoch, UTC).
    pub local_ts: i64,
    pub source: Source,
    pub message_id: Option<&'a str>,
}

/// Why one element did not become a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowError {
    /// A field the row cannot exist without is absent or empty.
    Missing(&'static str),
    /// An integer that does not fit its column.
    OutOfRange { field: &'static str, value: i64 },
}

impl RowError {
    pub fn out_of_range(field: &'static str, value: i64) -> Self {
        RowError::OutOfRange { field, value }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowError::Missing(field) => write!(f, "missing required field `{field}`"),
            RowError::OutOfRange { field, value } => {
                write!(f, "field `{field}`: {value} is out of range")
            }
        }
    }
}
