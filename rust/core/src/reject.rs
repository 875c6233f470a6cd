//! `rejects`: every frame or element that did not become a row, with the reason and the
//! bytes as received, so nothing the exchange sent is lost.

use crate::row::Source;
use crate::table;

table! {
    /// Builders of `rejects`.
    RejectColumns = "rejects" {
        account_id: Utf8 [required],
        local_ts: TimestampUs [required],
        source: Utf8 [required],
        /// The push's topic when it could be read.
        topic: Utf8,
        message_id: Utf8,
        reason: Utf8 [required],
        /// The frame (or the one element of it) exactly as received.
        raw: Bytes [required],
    }
}

/// One rejected input.
pub struct Reject<'a> {
    pub account_id: &'a str,
    pub local_ts: i64,
    pub source: Source,
    pub topic: Option<&'a str>,
    pub message_id: Option<&'a str>,
    pub reason: &'a str,
    pub raw: &'a [u8],
}

impl RejectColumns {
    pub fn append(&mut self, reject: &Reject<'_>) {
        self.account_id.append_value(reject.account_id);
        self.local_ts.append_value(reject.local_ts);
        self.source.append_value(reject.source.as_str());
        self.topic.append_option(reject.topic);
        self.message_id.append_option(reject.message_id);
        self.reason.append_value(reject.reason);
        self.raw.append_value(reject.raw);
    }
}
