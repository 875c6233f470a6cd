//! Frames in, rows out: the streaming decoder shared by `ingestor.decode` and the connection
//! engine.
//!
//! Frames append into per-table builders as they arrive; a batch is cut on demand. A frame
//! never aborts the decoder: whatever cannot become a row becomes a reject, and the good
//! elements of the same frame still land.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::events::{ConnectionEvent, ConnectionEventColumns};
use crate::execution::{ExecutionColumns, ExecutionElement};
use crate::fields::{Millis, Text};
use crate::flat;
use crate::ledger_gap::{LedgerGap, LedgerGapColumns};
use crate::order::{OrderColumns, OrderElement};
use crate::position::{PositionColumns, PositionElement, PositionKey};
use crate::protocol::{
    classify_topic, ControlFrame, Envelope, PushKind, TopicKind, REST_EXECUTION_LIST,
    REST_ORDER_HISTORY, REST_ORDER_REALTIME, REST_POSITION_LIST, REST_WALLET_BALANCE,
};
use crate::reject::{Reject, RejectColumns};
use crate::row::{Provenance, RowError, Source};
use crate::wallet::{WalletColumns, WalletElement};

/// Declares the decoder's tables once: each `Table`, the builders that hold its rows (a field
/// of `Builders`) and the rows they first have room for. `Table::ALL`, its names and schemas,
/// and the decoder's per-table `pending` and `cut` all come from this one list.
macro_rules! tables {
    ($( $(#[$meta:meta])* $variant:ident => $field:ident: $columns:ident, $rows:expr; )*) => {
        /// The tables a decoder fills.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Table {
            $( $(#[$meta])* $variant, )*
        }

        impl Table {
            /// Every table, in the order the stores create them.
            pub const ALL: [Table; [$(stringify!($variant)),*].len()] = [$(Table::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $( Table::$variant => $columns::NAME, )*
                }
            }

            pub fn schema(self) -> SchemaRef {
                match self {
                    $( Table::$variant => $columns::schema(), )*
                }
            }
        }

        /// The builders of every table.
        struct Builders {
            $( $field: $columns, )*
        }

        impl Builders {
            fn new() -> Self {
                Builders {
                    $( $field: $columns::with_capacity($rows), )*
                }
            }

            fn len(&self, table: Table) -> usize {
                match table {
                    $( Table::$variant => self.$field.len(), )*
                }
            }

            fn finish(&mut self, table: Table) -> RecordBatch {
                match table {
                    $( Table::$variant => self.$field.finish(), )*
                }
            }
        }
    };
}

tables! {
    PositionSnapshots => positions: PositionColumns, 1024;
    WalletSnapshots => wallets: WalletColumns, 1024;
    /// Fewer rows at first: many accounts never subscribe to these (builders grow as needed).
    ExecutionEvents => executions: ExecutionColumns, 64;
    OrderEvents => orders: OrderColumns, 64;
    LedgerGaps => ledger_gaps: LedgerGapColumns, 4;
    Rejects => rejects: RejectColumns, 16;
    ConnectionEvents => events: ConnectionEventColumns, 16;
}

impl Table {
    /// The tables that frames fill (what `ingestor.decode` returns).
    pub const FRAME_TABLES: [Table; 5] = [
        Table::PositionSnapshots,
        Table::WalletSnapshots,
        Table::ExecutionEvents,
        Table::OrderEvents,
        Table::Rejects,
    ];

    /// The table a kind of push fills.
    pub fn of(kind: PushKind) -> Table {
        match kind {
            PushKind::Position => Table::PositionSnapshots,
            PushKind::Wallet => Table::WalletSnapshots,
            PushKind::Execution => Table::ExecutionEvents,
            PushKind::Order => Table::OrderEvents,
        }
    }
}

/// A kind of element, read by either path, appended to its table: how the decoder treats
/// every kind alike. Returns the rows appended.
trait Element<'a>: Deserialize<'a> {
    fn append_to(
        &self,
        builders: &mut Builders,
        topic_category: Option<&str>,
        provenance: &Provenance<'_>,
        raw_json: Option<&str>,
    ) -> Result<usize, RowError>;
}

/// The kinds whose builders take the topic's category and append one row an element.
macro_rules! one_row_element {
    ($($ty:ident => $builders:ident),* $(,)?) => {$(
        impl<'a> Element<'a> for $ty<'a> {
            fn append_to(
                &self,
                b: &mut Builders,
                category: Option<&str>,
                provenance: &Provenance<'_>,
                raw_json: Option<&str>,
            ) -> Result<usize, RowError> {
                b.$builders
                    .append(self, category, provenance, raw_json)
                    .map(|()| 1)
            }
        }
    )*};
}

one_row_element!(
    PositionElement => positions,
    ExecutionElement => executions,
    OrderElement => orders,
);

/// A wallet element is a row per coin, and names its own account type (no category).
impl<'a> Element<'a> for WalletElement<'a> {
    fn append_to(
        &self,
        b: &mut Builders,
        _: Option<&str>,
        provenance: &Provenance<'_>,
        raw_json: Option<&str>,
    ) -> Result<usize, RowError> {
        b.wallets.append(self, provenance, raw_json)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Keep each element's original text in `raw_json`.
    pub keep_raw: bool,
    /// Frames longer than this are rejected unread.
    pub max_frame_bytes: usize,
}

/// Bybit's largest pushes (a wallet with every coin) are tens of KiB; 1 MiB leaves room.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            keep_raw: true,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

/// What one frame turned into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameOutcome {
    /// A push: `rows` appended to `table`, `rejected` of its elements sent to `rejects`.
    Push {
        table: Table,
        rows: usize,
        rejected: usize,
    },
    /// A control answer (auth, subscribe, pong): no rows, handed to the caller.
    Control(ControlFrame),
    /// The whole frame went to `rejects`.
    Rejected,
}

pub struct Decoder {
    config: DecoderConfig,
    tables: Builders,
    /// The flat fast path's element buffers, kept between frames (always empty here).
    scratch: flat::Parsed<'static>,
    /// The field order of recent elements, the fast path's first guess.
    key_orders: flat::KeyOrders,
    /// Off only in tests, to compare the fast path with the serde path.
    fast_path: bool,
    /// Frames the fast path decoded (tests check it is taken, or not).
    #[cfg(test)]
    fast_frames: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DecoderConfig::default())
    }
}

/// A whole frame's reject, its reason still to be given.
fn frame_reject<'a>(account_id: &'a str, raw: &'a [u8], local_ts: i64) -> Reject<'a> {
    Reject {
        account_id,
        local_ts,
        source: Source::Ws,
        topic: None,
        message_id: None,
        reason: "",
        raw,
    }
}

impl Decoder {
    pub fn new(config: DecoderConfig) -> Self {
        Decoder {
            config,
            tables: Builders::new(),
            scratch: flat::Parsed::default(),
            key_orders: flat::KeyOrders::default(),
            fast_path: true,
            #[cfg(test)]
            fast_frames: 0,
        }
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Rows waiting in `table` since its last cut.
    pub fn pending(&self, table: Table) -> usize {
        self.tables.len(table)
    }

    /// The rows of `table` so far as one batch (possibly empty); the table starts over.
    pub fn cut(&mut self, table: Table) -> RecordBatch {
        self.tables.finish(table)
    }

    /// The position keys of the last `rows` position rows appended (see
    /// `PositionColumns::recent_keys`).
    pub fn recent_position_keys(&self, rows: usize) -> Vec<(PositionKey, bool)> {
        self.tables.positions.recent_keys(rows)
    }

    /// The same keys lent to `f` (see `PositionColumns::for_recent_keys`).
    pub fn for_recent_position_keys(&self, rows: usize, f: impl FnMut(&str, &str, i32, bool)) {
        self.tables.positions.for_recent_keys(rows, f)
    }

    /// The `exchange_ts` (`execTime`, µs UTC) of the last `rows` execution rows appended,
    /// oldest first, lent without a copy: after a push (`FrameOutcome::Push` with
    /// `Table::ExecutionEvents`) or a REST page of executions, the engine takes the newest
    /// of its `rows` as the account's latest execution. Valid until the next frame or cut.
    pub fn recent_execution_ts(&self, rows: usize) -> &[i64] {
        self.tables.executions.recent_exchange_ts(rows)
    }

    /// Records a connection state change.
    pub fn record_event(&mut self, event: &ConnectionEvent<'_>) {
        self.tables.events.append(event);
    }

    /// Records a window the ledger cannot be known complete in (see `engine::ledger`).
    pub fn record_ledger_gap(&mut self, gap: &LedgerGap<'_>) {
        self.tables.ledger_gaps.append(gap);
    }

    /// Decodes one WebSocket text frame of `account_id`, received at `local_ts` (µs, UTC).
    pub fn decode_frame(&mut self, account_id: &str, frame: &[u8], local_ts: i64) -> FrameOutcome {
        if frame.len() > self.config.max_frame_bytes {
            return self.reject_oversize(account_id, frame, local_ts);
        }
        match std::str::from_utf8(frame) {
            Ok(text) => self.decode_valid(account_id, text, local_ts),
            Err(e) => {
                let reason = format!("not valid UTF-8: {e}");
                self.reject_frame(Reject {
                    reason: &reason,
                    ..frame_reject(account_id, frame, local_ts)
                })
            }
        }
    }

    /// `decode_frame` for a frame already known to be UTF-8: a WebSocket text message, which
    /// the WebSocket layer has validated, or a Python `str`.
    pub fn decode_text(&mut self, account_id: &str, text: &str, local_ts: i64) -> FrameOutcome {
        if text.len() > self.config.max_frame_bytes {
            return self.reject_oversize(account_id, text.as_bytes(), local_ts);
        }
        self.decode_valid(account_id, text, local_ts)
    }

    fn reject_oversize(&mut self, account_id: &str, frame: &[u8], local_ts: i64) -> FrameOutcome {
        let limit = self.config.max_frame_bytes;
        let reason = format!(
            "frame of {} bytes exceeds the {limit}-byte limit; raw holds its first {limit} bytes",
            frame.len()
        );
        self.reject_frame(Reject {
            reason: &reason,
            ..frame_reject(account_id, &frame[..limit], local_ts)
        })
    }

    fn decode_valid(&mut self, account_id: &str, text: &str, local_ts: i64) -> FrameOutcome {
        let mut reject = frame_reject(account_id, text.as_bytes(), local_ts);
        if self.fast_path {
            let mut parsed = std::mem::take(&mut self.scratch).recycle();
            let outcome = flat::push_frame(text, &mut parsed, &mut self.key_orders)
                .map(|frame| self.append_flat(account_id, frame, &parsed, local_ts, &reject));
            self.scratch = parsed.recycle();
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
        let envelope: Envelope = match serde_json::from_str(text) {
            Ok(envelope) => envelope,
            Err(_) => {
                let reason = format!("not a valid frame: {}", explain::<Envelope>(text));
                return self.reject_frame(Reject {
                    reason: &reason,
                    ..reject
                });
            }
        };
        if let Some(op) = envelope.op.as_deref() {
            return FrameOutcome::Control(ControlFrame::from_envelope(op, &envelope));
        }
        let Some(topic) = envelope.topic.as_deref() else {
            return self.reject_frame(Reject {
                reason: "frame has neither `op` nor `topic`",
                ..reject
            });
        };
        reject.topic = Some(topic);
        reject.message_id = envelope.id.as_deref();

        let (kind, category) = match classify_topic(topic) {
            TopicKind::Push { kind, category } => (kind, category),
            TopicKind::Uncaptured => {
                let reason = format!("topic `{topic}` is not captured");
                return self.reject_frame(Reject {
                    reason: &reason,
                    ..reject
                });
            }
            TopicKind::Unknown => {
                let reason = format!("unknown topic `{topic}`");
                return self.reject_frame(Reject {
                    reason: &reason,
                    ..reject
                });
            }
        };
        let Some(creation_ts) = envelope.creation_time.0 else {
            return self.reject_frame(Reject {
                reason: "push without `creationTime`",
                ..reject
            });
        };
        let Some(data) = envelope.data.as_deref() else {
            return self.reject_frame(Reject {
                reason: "push without a `data` array",
                ..reject
            });
        };

        let provenance = Provenance {
            account_id,
            creation_ts,
            local_ts,
            source: Source::Ws,
            message_id: reject.message_id,
        };
        let (rows, rejected) = self.append_elements(kind, category, data, &provenance, reject);
        FrameOutcome::Push {
            table: Table::of(kind),
            rows,
            rejected,
        }
    }

    /// Decodes one page of a REST read (see `RestEndpoint`) into rows with `source = 'rest'`,
    /// in the table a push of the same kind fills.
    ///
    /// An answer that is not a success (`retCode` other than 0) or not readable is an error
    /// for the caller to report and retry; it adds no rows. Bad elements of a good answer go
    /// to `rejects`, like bad elements of a push.
    pub fn decode_rest(
        &mut self,
        account_id: &str,
        endpoint: RestEndpoint,
        body: &[u8],
        local_ts: i64,
    ) -> Result<RestPage, RestError> {
        let text = std::str::from_utf8(body)
            .map_err(|e| RestError::Unreadable(format!("not valid UTF-8: {e}")))?;
        let answer: RestAnswer = serde_json::from_str(text)
            .map_err(|_| RestError::Unreadable(explain::<RestAnswer>(text)))?;
        if answer.ret_code != 0 {
            return Err(RestError::Api {
                code: answer.ret_code,
                message: answer.ret_msg.as_deref().unwrap_or_default().to_owned(),
            });
        }
        let result = answer
            .result
            .ok_or_else(|| RestError::Unreadable("answer without `result`".into()))?;
        let list: RestList = serde_json::from_str(result.get())
            .map_err(|_| RestError::Unreadable(explain::<RestList>(result.get())))?;
        // An id of its own for the page: a batch delivered again (a writer that died before
        // acknowledging it) is then stored once, like a replayed push, while every resync
        // stays an observation of its own (its body holds the answer's `time`).
        let message_id = rest_message_id(body);
        let provenance = Provenance {
            account_id,
            creation_ts: answer.time.0.unwrap_or(local_ts),
            local_ts,
            source: Source::Rest,
            message_id: Some(&message_id),
        };
        let reject = Reject {
            account_id,
            local_ts,
            source: Source::Rest,
            topic: Some(endpoint.path()),
            message_id: None,
            reason: "",
            raw: body,
        };
        let (rows, rejected) = self.append_elements(
            endpoint.kind(),
            list.category.as_deref(),
            &list.list,
            &provenance,
            reject,
        );
        Ok(RestPage {
            rows,
            rejected,
            next_cursor: list.next_page_cursor.as_deref().map(str::to_owned),
        })
    }

    /// Appends a push the fast path read; the same rows and rejects as the serde path.
    fn append_flat<'a>(
        &mut self,
        account_id: &'a str,
        frame: flat::PushFrame<'a>,
        parsed: &flat::Parsed<'a>,
        local_ts: i64,
        reject: &Reject<'a>,
    ) -> FrameOutcome {
        #[cfg(test)]
        {
            self.fast_frames += 1;
        }
        let reject = Reject {
            topic: Some(frame.topic),
            message_id: frame.id,
            ..*reject
        };
        let provenance = Provenance {
            account_id,
            creation_ts: frame.creation_ts,
            local_ts,
            source: Source::Ws,
            message_id: frame.id,
        };
        let (mut rows, mut rejected) = (0, 0);
        let mut count = (&mut rows, &mut rejected);
        let category = frame.category;
        match frame.kind {
            PushKind::Position => self.append_parsed(
                &parsed.positions,
                category,
                &provenance,
                &reject,
                &mut count,
            ),
            PushKind::Wallet => {
                self.append_parsed(&parsed.wallets, category, &provenance, &reject, &mut count)
            }
            PushKind::Execution => self.append_parsed(
                &parsed.executions,
                category,
                &provenance,
                &reject,
                &mut count,
            ),
            PushKind::Order => {
                self.append_parsed(&parsed.orders, category, &provenance, &reject, &mut count)
            }
        }
        FrameOutcome::Push {
            table: Table::of(frame.kind),
            rows,
            rejected,
        }
    }

    /// Appends the elements the fast path read, each with its text.
    fn append_parsed<'a, E: Element<'a>>(
        &mut self,
        elements: &flat::Elements<'a, E>,
        category: Option<&str>,
        provenance: &Provenance<'_>,
        reject: &Reject<'_>,
        (rows, rejected): &mut (&mut usize, &mut usize),
    ) {
        let keep_raw = self.config.keep_raw;
        for (index, (text, element)) in elements.iter().enumerate() {
            let appended = element
                .append_to(
                    &mut self.tables,
                    category,
                    provenance,
                    keep_raw.then_some(*text),
                )
                .map_err(|e| e.to_string());
            self.count_element(index, text, appended, reject, rows, rejected);
        }
    }

    /// Counts an element's outcome; a failed one becomes a reject on its own.
    fn count_element(
        &mut self,
        index: usize,
        raw: &str,
        appended: Result<usize, String>,
        reject: &Reject<'_>,
        rows: &mut usize,
        rejected: &mut usize,
    ) {
        match appended {
            Ok(n) => *rows += n,
            Err(why) => {
                *rejected += 1;
                let what = reject.topic.unwrap_or_default();
                let reason = format!("{what} element {index}: {why}");
                self.tables.rejects.append(&Reject {
                    reason: &reason,
                    raw: raw.as_bytes(),
                    ..*reject
                });
            }
        }
    }

    /// Appends each element as a `kind`; a failing element becomes a reject on its own.
    fn append_elements(
        &mut self,
        kind: PushKind,
        category: Option<&str>,
        elements: &[&RawValue],
        provenance: &Provenance<'_>,
        reject: Reject<'_>,
    ) -> (usize, usize) {
        let (mut rows, mut rejected) = (0, 0);
        for (index, element) in elements.iter().enumerate() {
            let text = element.get();
            let appended = match kind {
                PushKind::Position => {
                    self.append_raw::<PositionElement>(text, category, provenance)
                }
                PushKind::Wallet => self.append_raw::<WalletElement>(text, category, provenance),
                PushKind::Execution => {
                    self.append_raw::<ExecutionElement>(text, category, provenance)
                }
                PushKind::Order => self.append_raw::<OrderElement>(text, category, provenance),
            };
            self.count_element(index, text, appended, &reject, &mut rows, &mut rejected);
        }
        (rows, rejected)
    }

    fn reject_frame(&mut self, reject: Reject<'_>) -> FrameOutcome {
        self.tables.rejects.append(&reject);
        FrameOutcome::Rejected
    }

    /// Reads one element's text with serde (the reference path) and appends it.
    fn append_raw<'a, E: Element<'a>>(
        &mut self,
        text: &'a str,
        topic_category: Option<&str>,
        provenance: &Provenance<'_>,
    ) -> Result<usize, String> {
        let element: E = serde_json::from_str(text).map_err(|_| explain::<E>(text))?;
        let raw_json = self.config.keep_raw.then_some(text);
        element
            .append_to(&mut self.tables, topic_category, provenance, raw_json)
            .map_err(|e| e.to_string())
    }
}

/// The REST reads the decoder takes: the state read after a (re)connect (positions, wallet)
/// and the ledger's backfill (executions, orders). Every answer is a page of
/// `{"category", "list": [elements of the push's shape], "nextPageCursor"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestEndpoint {
    /// `/v5/position/list` → `position_snapshots`.
    PositionList,
    /// `/v5/account/wallet-balance` → `wallet_snapshots`.
    WalletBalance,
    /// `/v5/execution/list` → `execution_events`.
    ExecutionList,
    /// `/v5/order/history` → `order_events`.
    OrderHistory,
    /// `/v5/order/realtime` (open orders, and the last closed ones) → `order_events`.
    OrderRealtime,
}

impl RestEndpoint {
    pub const ALL: [RestEndpoint; 5] = [
        RestEndpoint::PositionList,
        RestEndpoint::WalletBalance,
        RestEndpoint::ExecutionList,
        RestEndpoint::OrderHistory,
        RestEndpoint::OrderRealtime,
    ];

    pub fn path(self) -> &'static str {
        match self {
            RestEndpoint::PositionList => REST_POSITION_LIST,
            RestEndpoint::WalletBalance => REST_WALLET_BALANCE,
            RestEndpoint::ExecutionList => REST_EXECUTION_LIST,
            RestEndpoint::OrderHistory => REST_ORDER_HISTORY,
            RestEndpoint::OrderRealtime => REST_ORDER_REALTIME,
        }
    }

    /// The endpoint of a path such as `/v5/execution/list`.
    pub fn from_path(path: &str) -> Option<RestEndpoint> {
        RestEndpoint::ALL.into_iter().find(|e| e.path() == path)
    }

    /// The kind of element its pages list.
    pub fn kind(self) -> PushKind {
        match self {
            RestEndpoint::PositionList => PushKind::Position,
            RestEndpoint::WalletBalance => PushKind::Wallet,
            RestEndpoint::ExecutionList => PushKind::Execution,
            RestEndpoint::OrderHistory | RestEndpoint::OrderRealtime => PushKind::Order,
        }
    }

    /// The table its rows go to.
    pub fn table(self) -> Table {
        Table::of(self.kind())
    }
}

/// What one REST page added, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestPage {
    pub rows: usize,
    pub rejected: usize,
    /// `nextPageCursor`: empty or absent on the last page.
    pub next_cursor: Option<String>,
}

/// Why a REST answer added nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestError {
    /// Bybit answered with an error code (10002 stale timestamp, 10004 bad signature,
    /// 10006 rate limited, ...).
    Api {
        code: i64,
        message: String,
    },
    Unreadable(String),
}

impl std::fmt::Display for RestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestError::Api { code, message } => write!(f, "retCode {code}: {message}"),
            RestError::Unreadable(why) => write!(f, "unreadable answer: {why}"),
        }
    }
}

impl std::error::Error for RestError {}

#[derive(Deserialize)]
struct RestAnswer<'a> {
    #[serde(rename = "retCode")]
    ret_code: i64,
    #[serde(rename = "retMsg", borrow, default)]
    ret_msg: Text<'a>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    time: Millis,
}

#[derive(Deserialize)]
struct RestList<'a> {
    #[serde(borrow, default)]
    category: Text<'a>,
    #[serde(borrow)]
    list: Vec<&'a RawValue>,
    #[serde(rename = "nextPageCursor", borrow, default)]
    next_page_cursor: Text<'a>,
}

/// Says which field made `text` fail to deserialize as `T`, and why.
///
/// Only called once the fast parse has failed, so the path tracking costs nothing on the
/// good path.
fn explain<'a, T: Deserialize<'a>>(text: &'a str) -> String {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if matches!(path.as_str(), "" | "." | "?") {
                inner.to_string()
            } else {
                format!("field `{path}`: {inner}")
            }
        }
        Ok(_) => match deserializer.end() {
            Err(e) => e.to_string(),
            Ok(()) => "could not be decoded".to_owned(),
        },
    }
}

/// The flat fast path against the serde path: on every input both must leave the same rows,
/// rejects and outcome, whichever path took the frame.
/// `rest:` and the FNV-1a hash of a REST answer's body: the message id of its rows. Stored
/// with the rows (never recomputed), so the hash need only tell two answers apart.
pub fn rest_message_id(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in body {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("rest:{hash:016x}")
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;
    use crate::wallet::WalletCoin;

    const PUSH: &str = include_str!("../../../tests/fixtures/position_push.json");
    const WALLET: &str = include_str!("../../../tests/fixtures/wallet_push.json");
    const EXECUTIONS: &str = include_str!("../../../tests/fixtures/bybit-docs/ws_execution.jsonl");
    const ORDERS: &str = include_str!("../../../tests/fixtures/bybit-docs/ws_order.jsonl");
    const ACCOUNT: &str = "acct-1";
    const LOCAL_TS: i64 = 1_700_000_000_000_000;

    struct Pair {
        fast: Decoder,
        serde: Decoder,
    }

    impl Pair {
        fn new(config: DecoderConfig) -> Self {
            let mut serde = Decoder::new(config);
            serde.fast_path = false;
            Pair {
                fast: Decoder::new(config),
                serde,
            }
        }

        /// Decodes `frame` both ways, asserts they agree, and says whether the fast path
        /// took it.
        fn check(&mut self, frame: &[u8]) -> bool {
            self.check_rows(frame).0
        }

        /// `check`, also giving the outcome and the rows of the frame's table.
        fn check_rows(&mut self, frame: &[u8]) -> (bool, FrameOutcome, RecordBatch) {
            let before = self.fast.fast_frames;
            let fast = self.fast.decode_frame(ACCOUNT, frame, LOCAL_TS);
            let serde = self.serde.decode_frame(ACCOUNT, frame, LOCAL_TS);
            let shown = String::from_utf8_lossy(frame);
            assert_eq!(fast, serde, "outcome of {shown}");
            let mut rows = RecordBatch::new_empty(Table::PositionSnapshots.schema());
            for table in Table::ALL {
                let batch = self.fast.cut(table);
                assert_eq!(batch, self.serde.cut(table), "{} of {shown}", table.name());
                if matches!(fast, FrameOutcome::Push { table: t, .. } if t == table) {
                    rows = batch;
                }
            }
            assert_eq!(self.serde.fast_frames, 0);
            (self.fast.fast_frames > before, fast, rows)
        }
    }

    fn check(frame: &str) -> bool {
        Pair::new(DecoderConfig::default()).check(frame.as_bytes())
    }

    /// `PUSH` with its element's fields replaced by `fields` (a JSON object body).
    fn push_with(fields: &str) -> String {
        let start = PUSH.find("[{").unwrap() + 2;
        let end = PUSH.rfind("}]").unwrap();
        format!("{}{fields}{}", &PUSH[..start], &PUSH[end..])
    }

    /// The field names a derived `Deserialize` asks for.
    fn serde_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
        use serde::de::{value::Error, Error as _, Visitor};
        struct Grab<'x>(&'x mut &'static [&'static str]);
        impl<'de> serde::Deserializer<'de> for Grab<'_> {
            type Error = Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
                Err(Error::custom("only structs"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Error> {
                *self.0 = fields;
                Err(Error::custom("grabbed"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(Grab(&mut fields));
        fields
    }

    #[test]
    fn fast_path_reads_the_fields_serde_reads() {
        fn same(ours: &[&str], theirs: &[&str]) {
            let (mut ours, mut theirs) = (ours.to_vec(), theirs.to_vec());
            ours.sort_unstable();
            theirs.sort_unstable();
            assert_eq!(ours, theirs);
        }
        same(
            &PositionElement::FLAT_KEYS,
            serde_fields::<PositionElement>(),
        );
        same(&WalletElement::FLAT_KEYS, serde_fields::<WalletElement>());
        same(&WalletCoin::FLAT_KEYS, serde_fields::<WalletCoin>());
        same(
            &ExecutionElement::FLAT_KEYS,
            serde_fields::<ExecutionElement>(),
        );
        same(&OrderElement::FLAT_KEYS, serde_fields::<OrderElement>());
    }

    /// A documented push of `file` whose element holds `nested` (its nested value).
    fn documented(file: &'static str, nested: &str) -> &'static str {
        file.lines().find(|line| line.contains(nested)).unwrap()
    }

    fn execution_push() -> &'static str {
        documented(EXECUTIONS, r#""extraFees":[{"#)
    }

    fn order_push() -> &'static str {
        documented(ORDERS, r#""cumFeeDetail":{"#)
    }

    /// `frame` (a push of one element) with its element's fields replaced by `fields`.
    fn element_with(frame: &str, fields: &str) -> String {
        let start = frame.find("[{").unwrap() + 2;
        let end = frame.rfind("}]").unwrap();
        format!("{}{fields}{}", &frame[..start], &frame[end..])
    }

    /// Nested values, for the fields kept as JSON text: what the fast path takes and what it
    /// leaves to serde (an escape, a fraction, deep nesting, broken JSON).
    const NESTED: [&str; 22] = [
        "[]",
        "{}",
        r#"[{"feeCoin":"USDT","feeType":"GST","fee":"0.006403779"}]"#,
        r#"{"MNT":"0.00242968","USDT":"1.5"}"#,
        r#"[ { "a" : [ 1 , { "b" : null } ] } , true , -3 ]"#,
        r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":[]}}}}}}}"#,
        r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":[]}}}}}}}}"#,
        r#"{"M\u004eT":"1"}"#,
        r#"["\n"]"#,
        "[1.5]",
        r#"{"a":1e3}"#,
        "[01]",
        "[1,]",
        r#"{"a":1,}"#,
        r#"{"a"}"#,
        r#"{"a":1"#,
        "[[]",
        r#"{1:2}"#,
        r#"[""]"#,
        r#""[]""#,
        "[null,false]",
        "[1234567890123456789]",
    ];

    /// Each of `keys` set to each value (before and after the fields a row needs, `base`) in
    /// a push of `frame`'s shape: both paths agree. Returns how many took the fast path, and
    /// of how many.
    fn agree_on_every_value(frame: &str, keys: &[&str], base: &str) -> (usize, usize) {
        let mut pair = Pair::new(DecoderConfig::default());
        let (mut fast, mut total) = (0, 0);
        for key in keys {
            for value in VALUES.iter().chain(&NESTED) {
                for fields in [
                    format!(r#""{key}":{value},{base}"#),
                    format!(r#"{base},"{key}":{value}"#),
                ] {
                    fast += pair.check(element_with(frame, &fields).as_bytes()) as usize;
                    total += 1;
                }
            }
        }
        (fast, total)
    }

    #[test]
    fn every_execution_and_order_field_agrees_on_every_kind_of_value() {
        let base = r#""category":"linear","symbol":"X","execId":"e-1","execTime":"1672364174443""#;
        // The nested values are for two fields only: most combinations elsewhere go to serde.
        let (fast, total) =
            agree_on_every_value(execution_push(), &ExecutionElement::FLAT_KEYS, base);
        assert!(fast > total / 5 && fast < total, "{fast} of {total}");
        let base =
            r#""category":"linear","symbol":"X","orderId":"o-1","updatedTime":"1672364262457""#;
        let (fast, total) = agree_on_every_value(order_push(), &OrderElement::FLAT_KEYS, base);
        assert!(fast > total / 5 && fast < total, "{fast} of {total}");
    }

    /// The one row of `frame`, decoded both ways; whether the fast path took it.
    fn only_row(frame: &str) -> (bool, RecordBatch) {
        let mut pair = Pair::new(DecoderConfig::default());
        let (fast, outcome, rows) = pair.check_rows(frame.as_bytes());
        assert!(
            matches!(
                outcome,
                FrameOutcome::Push {
                    rows: 1,
                    rejected: 0,
                    ..
                }
            ),
            "{outcome:?}: {frame}"
        );
        (fast, rows)
    }

    #[test]
    fn nested_values_are_kept_as_their_exact_text_on_either_path() {
        let cases = [
            (r#"[{"fee":"0.1"}]"#, Some(r#"[{"fee":"0.1"}]"#), true),
            (
                r#"[ {"fee" : "0.1"} ]"#,
                Some(r#"[ {"fee" : "0.1"} ]"#),
                true,
            ),
            ("[]", Some("[]"), true),
            (r#""""#, None, true),
            ("null", None, true),
            // Not what Bybit sends, but kept as sent rather than losing the row.
            (r#""x""#, Some(r#""x""#), true),
            ("7", Some("7"), true),
            // Left to serde, which keeps the same exact text.
            (r#"[{"fee":0.1}]"#, Some(r#"[{"fee":0.1}]"#), false),
            (
                r#"[{"fee":"\u0030.1"}]"#,
                Some(r#"[{"fee":"\u0030.1"}]"#),
                false,
            ),
        ];
        for (value, expected, fast_path) in cases {
            let fields = format!(
                r#""category":"linear","symbol":"X","execId":"e","execTime":"1","extraFees":{value}"#
            );
            let (fast, rows) = only_row(&element_with(execution_push(), &fields));
            assert_eq!(fast, fast_path, "{value}");
            assert_eq!(text_at(&rows, "extra_fees").as_deref(), expected, "{value}");
            let fields = format!(
                r#""category":"spot","symbol":"X","orderId":"o","updatedTime":"1","cumFeeDetail":{value}"#
            );
            let (fast, rows) = only_row(&element_with(order_push(), &fields));
            assert_eq!(fast, fast_path, "{value}");
            assert_eq!(
                text_at(&rows, "cum_fee_detail").as_deref(),
                expected,
                "{value}"
            );
        }
    }

    #[test]
    fn tricky_execution_and_order_frames_agree_and_take_the_expected_path() {
        for frame in [execution_push(), order_push()] {
            let fast = [
                frame.to_owned(),
                frame
                    .replace(':', " : ")
                    .replace(',', " ,\n")
                    .replace('[', " [ "),
                // Several elements, one without what a row needs.
                frame.replacen("}]}", "},{}]}", 1),
                // The per-category topic, and an element that relies on it.
                frame
                    .replacen(r#""topic":"execution""#, r#""topic":"execution.spot""#, 1)
                    .replacen(r#""topic":"order""#, r#""topic":"order.spot""#, 1)
                    .replacen(r#""category":"linear","#, "", 1)
                    .replacen(r#","category":"option""#, "", 1),
            ];
            for frame in &fast {
                assert!(check(frame), "fast path expected for {frame}");
            }
            let serde = [
                frame.replacen("Sell", r"S\u0065ll", 1),
                frame
                    .replacen(r#"":[{""#, r#"":[{"\u0041":1,""#, 1)
                    .replacen(r#"":{""#, r#"":{"\u0041":1,""#, 1),
                frame
                    .replacen(r#""execType""#, r#""meta":{"x":1},"execType""#, 1)
                    .replacen(r#""orderType""#, r#""meta":{"x":1},"orderType""#, 1),
                frame.replacen("}]}", "},]}", 1),
                frame
                    .replacen(r#""execution""#, r#""execution.fast""#, 1)
                    .replacen(r#""order""#, r#""order.futures""#, 1),
            ];
            for edited in &serde {
                assert_ne!(edited, frame, "an edit that matched nothing");
                assert!(!check(edited), "serde path expected for {edited}");
            }
        }
    }

    #[test]
    fn documented_wallet_push_takes_the_fast_path() {
        assert!(check(WALLET));
        let mut pair = Pair::new(DecoderConfig {
            keep_raw: false,
            ..DecoderConfig::default()
        });
        assert!(pair.check(WALLET.as_bytes()));
        let mut decoder = Decoder::default();
        let outcome = decoder.decode_frame(ACCOUNT, WALLET.as_bytes(), LOCAL_TS);
        assert_eq!(
            outcome,
            FrameOutcome::Push {
                table: Table::WalletSnapshots,
                rows: 2,
                rejected: 0
            }
        );
        assert_eq!(decoder.fast_frames, 1);
    }

    /// Both paths keep a wallet element's text once, on its first coin's row.
    #[test]
    fn wallet_raw_json_is_on_each_elements_first_coin_only_both_ways() {
        let start = WALLET.find("[{").unwrap() + 1;
        let element = &WALLET[start..WALLET.rfind(']').unwrap()];
        let other = element.replace(r#""accountType":"UNIFIED""#, r#""accountType":"FUND""#);
        let empty = r#"{"accountType":"SPOT","coin":[]}"#;
        let frame = format!(
            r#"{{"id":"w2","topic":"wallet","creationTime":1,"data":[{element},{empty},{other}]}}"#
        );
        let mut pair = Pair::new(DecoderConfig::default());
        let (fast, outcome, rows) = pair.check_rows(frame.as_bytes());
        assert!(fast, "the fast path takes it");
        assert_eq!(
            outcome,
            FrameOutcome::Push {
                table: Table::WalletSnapshots,
                rows: 4,
                rejected: 0
            }
        );
        assert_eq!(
            raw_json_of(&rows),
            [Some(element), None, Some(other.as_str()), None]
        );
        // The serde path, on a frame it alone takes (an escape in an unknown field).
        let escaped = frame.replace(
            r#"{"accountType":"SPOT""#,
            r#"{"x":"\n","accountType":"SPOT""#,
        );
        let (fast, _, rows) = pair.check_rows(escaped.as_bytes());
        assert!(!fast, "the serde path takes it");
        assert_eq!(
            raw_json_of(&rows),
            [Some(element), None, Some(other.as_str()), None]
        );
    }

    /// The batch's `raw_json` column, row by row.
    fn raw_json_of(rows: &arrow_array::RecordBatch) -> Vec<Option<&str>> {
        rows.column_by_name("raw_json")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap()
            .iter()
            .collect()
    }

    /// `WALLET` with its element's account-level fields before `coin` replaced by `fields`
    /// (a JSON object body) and its coins by `coins` (the body of the `coin` array).
    fn wallet_with(fields: &str, coins: &str) -> String {
        let start = WALLET.find("[{").unwrap() + 2;
        let end = WALLET.find(r#"}],"accountLTV""#).unwrap() + 2;
        let comma = if fields.is_empty() { "" } else { "," };
        format!(
            r#"{}{fields}{comma}"coin":[{coins}]{}"#,
            &WALLET[..start],
            &WALLET[end..]
        )
    }

    #[test]
    fn documented_push_takes_the_fast_path() {
        assert!(check(PUSH));
        let mut decoder = Decoder::default();
        decoder.decode_frame(ACCOUNT, PUSH.as_bytes(), LOCAL_TS);
        assert_eq!(decoder.fast_frames, 1);
        let batch = decoder.cut(Table::PositionSnapshots);
        let raw = batch
            .column_by_name("raw_json")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap()
            .value(0);
        assert_eq!(
            raw,
            &PUSH[PUSH.find("[{").unwrap() + 1..PUSH.rfind(']').unwrap()]
        );
    }

    #[test]
    fn text_frames_decode_as_their_bytes_do() {
        let config = DecoderConfig {
            max_frame_bytes: 600,
            ..DecoderConfig::default()
        };
        let (mut bytes, mut text) = (Decoder::new(config), Decoder::new(config));
        let short = r#"{"topic":"position","creationTime":1,"data":[]}"#;
        let frames = [PUSH, WALLET, short, "{", r#"{"op":"pong","success":true}"#];
        for frame in frames {
            let a = format!(
                "{:?}",
                bytes.decode_frame(ACCOUNT, frame.as_bytes(), LOCAL_TS)
            );
            let b = format!("{:?}", text.decode_text(ACCOUNT, frame, LOCAL_TS));
            assert_eq!(a, b, "{frame}");
        }
        // The documented pushes are over the limit here, and `{` is no frame.
        assert_eq!(bytes.pending(Table::Rejects), 3);
        for table in Table::ALL {
            assert_eq!(bytes.cut(table), text.cut(table), "{table:?}");
        }
    }

    /// Every kind of value a field might hold, good and bad.
    const VALUES: [&str; 37] = [
        r#""1.5""#,
        r#""-0.000000000000000001""#,
        r#""""#,
        "null",
        "7",
        "-7",
        "0",
        "true",
        "false",
        r#""true""#,
        r#""abc""#,
        r#""+5""#,
        r#""1e3""#,
        r#""0.1234567890123456789""#,
        r#""99999999999999999999""#,
        r#""12345678901234567890""#,
        "1.5",
        "-0",
        "01",
        "123456789012345678",
        "1234567890123456789",
        "99999999999999999999",
        "1e5",
        r#""9223372036854775807""#,
        r#""-1""#,
        r#""  1""#,
        r#""1.""#,
        r#"".5""#,
        r#""-""#,
        r#""1\u0030""#,
        r#""a\"b""#,
        "[]",
        "{}",
        r#"{"a":1}"#,
        "tru",
        "nul",
        r#""BTC\n""#,
    ];

    #[test]
    fn every_field_agrees_on_every_kind_of_value() {
        let values = VALUES;
        let mut pair = Pair::new(DecoderConfig::default());
        let mut fast = 0;
        for key in PositionElement::FLAT_KEYS {
            for value in values {
                let base = r#""symbol":"BTCUSDT","positionIdx":1,"updatedTime":"1697682317038""#;
                fast += pair.check(push_with(&format!(r#""{key}":{value},{base}"#)).as_bytes())
                    as usize;
                // After the required fields too, where a repeat of one of them is a duplicate.
                fast += pair.check(push_with(&format!(r#"{base},"{key}":{value}"#)).as_bytes())
                    as usize;
            }
        }
        // Most combinations are plain enough for the fast path; the rest went to serde.
        let total = 2 * PositionElement::FLAT_KEYS.len() * values.len();
        assert!(fast > total / 3 && fast < total, "{fast} of {total}");
    }

    #[test]
    fn every_wallet_field_agrees_on_every_kind_of_value() {
        let mut pair = Pair::new(DecoderConfig::default());
        let (mut fast, mut total) = (0, 0);
        let coin = r#"{"coin":"BTC","equity":"1"}"#;
        for value in VALUES {
            for key in WalletElement::FLAT_KEYS {
                // Not a field the fixture keeps after `coin`: a repeat is a duplicate.
                let base = r#""accountIMRate":"0""#;
                for fields in [
                    format!(r#""{key}":{value},{base}"#),
                    format!(r#"{base},"{key}":{value}"#),
                ] {
                    fast += pair.check(wallet_with(&fields, coin).as_bytes()) as usize;
                    total += 1;
                }
            }
            for key in WalletCoin::FLAT_KEYS {
                for coins in [
                    format!(r#"{{"{key}":{value},"coin":"BTC"}}"#),
                    format!(r#"{{"coin":"BTC","{key}":{value}}},{coin}"#),
                ] {
                    fast += pair.check(wallet_with("", &coins).as_bytes()) as usize;
                    total += 1;
                }
            }
        }
        assert!(fast > total / 3 && fast < total, "{fast} of {total}");
    }

    /// The `data` array of `WALLET`.
    fn wallet_data() -> &'static str {
        let wallet = WALLET.trim_end();
        &wallet[wallet.find("\"data\":").unwrap() + 7..wallet.len() - 1]
    }

    #[test]
    fn tricky_wallet_frames_agree_and_take_the_expected_path() {
        let coin = r#"{"coin":"USDT","walletBalance":"5","collateralSwitch":false}"#;
        let fast = [
            WALLET.to_owned(),
            WALLET
                .replace(':', " : ")
                .replace(',', " ,\n")
                .replace('[', " [ ")
                .replace(']', " ] "),
            wallet_with("", ""),
            wallet_with("", &[coin; 30].join(",")),
            wallet_with(r#""newField":1,"totalEquity":"-3.5""#, coin),
            // A coin without its name: a reject the append decides, on either path.
            wallet_with("", r#"{"equity":"1"}"#),
            // An element without its account type, beside a good one.
            WALLET.replace("}]}", r#"},{"coin":[]}]}"#),
            // Envelope keys in another order.
            format!(
                r#"{{"topic":"wallet","data":{},"creationTime":1,"id":"x"}}"#,
                wallet_data()
            ),
        ];
        for frame in &fast {
            assert!(check(frame), "fast path expected for {frame}");
        }
        let serde = [
            WALLET.replace("\"USDT\"", r#""US\u0044T""#),
            wallet_with("", r#"{"coin":"BTC","extra":{"a":1}}"#),
            wallet_with("", r#"{"coin":"BTC"},[]"#),
            wallet_with("", r#"{"coin":"BTC"},"x""#),
            wallet_with("", r#"{"coin":"BTC","coin":"ETH"}"#),
            wallet_with(r#""coin":[]"#, coin),
            WALLET.replace(r#""coin":["#, r#""coin":null,"x":["#),
            WALLET.replace(r#""coin":["#, r#""coin":{"a":["#),
            WALLET.replace(r#""equity":"0.00102964""#, r#""equity":0.00102964"#),
            WALLET.replace("}]}", "}]}x"),
            WALLET.replace("}]}", "},]}"),
            WALLET.replace(r#"}],"accountLTV""#, r#"},],"accountLTV""#),
            WALLET.replace("\"wallet\"", "\"wallet.x\""),
            // Data first, then a wallet topic: read as positions, so left to serde.
            format!(
                r#"{{"data":{},"topic":"wallet","creationTime":1}}"#,
                wallet_data()
            ),
        ];
        for frame in &serde {
            assert_ne!(frame, WALLET, "an edit that matched nothing");
            assert!(!check(frame), "serde path expected for {frame}");
        }
    }

    #[test]
    fn tricky_frames_agree_and_take_the_expected_path() {
        let element = &PUSH[PUSH.find("[{").unwrap() + 1..PUSH.rfind(']').unwrap()];
        let fast = [
            PUSH.to_owned(),
            // Whitespace between every token.
            PUSH.replace(':', " :\n ").replace(',', "\t,\r\n ").replace('{', " { ").replace('}', " } "),
            // Envelope keys in another order, data first.
            format!(r#"{{"data":[{element}],"creationTime":1697682317044,"topic":"position","id":"x"}}"#),
            // Several elements, one of them missing what a row needs.
            format!(r#"{{"topic":"position.linear","creationTime":"1697682317044","data":[{element},{{}},{element}]}}"#),
            // Unknown flat fields, in the envelope and in an element.
            push_with(r#""symbol":"ETHUSDT","positionIdx":0,"updatedTime":1,"newField":"x","n":-3,"b":true,"z":null"#),
            // Unicode, unescaped.
            push_with(r#""symbol":"ÉTH€USDT😀","positionIdx":0,"updatedTime":1,"tpslMode":"Ünïcode""#),
            // A field the rules make NULL, an id that is empty.
            r#"{"id":"","topic":"position","creationTime":1,"data":[{"symbol":"X","positionIdx":0,"updatedTime":1,"size":""}]}"#.to_owned(),
            r#"{"topic":"position","creationTime":1,"data":[]}"#.to_owned(),
            // Out of range for its column: a reject the append decides, on either path.
            push_with(r#""symbol":"X","positionIdx":3000000000,"updatedTime":1"#),
            push_with(r#""symbol":"X","positionIdx":0"#),
            // Position fields under the wallet topic: unknown there, and no account type.
            PUSH.replace("\"position\"", "\"wallet\""),
            // Under the order topic: read as an order (most fields unknown there).
            PUSH.replace("\"position\"", "\"order\""),
        ];
        for frame in &fast {
            assert!(check(frame), "fast path expected for {frame}");
        }
        let serde = [
            // Escapes anywhere.
            PUSH.replace("BTCUSDT", r"BTC\u0055SDT"),
            PUSH.replace("\"symbol\"", r#""sym\u0062ol""#),
            PUSH.replace("BTCUSDT", r#"BTC\"USDT"#),
            PUSH.replace("\"id\"", r#""\u0069d""#),
            // Nested unknown fields.
            push_with(r#""symbol":"X","positionIdx":0,"updatedTime":1,"extra":{"a":[1,{"b":2}]}"#),
            PUSH.replacen("{", r#"{"meta":{"x":1},"#, 1),
            // Duplicates.
            push_with(r#""symbol":"X","positionIdx":0,"updatedTime":1,"symbol":"Y""#),
            PUSH.replacen("{", r#"{"topic":"position","#, 1),
            PUSH.replacen("{", r#"{"creationTime":5,"#, 1),
            // Broken JSON.
            PUSH.replace("}]}", "},]}"),
            PUSH.replace("}]}", "}]},"),
            PUSH.replace("}]}", "}]}x"),
            PUSH.replace("}]}", "}]"),
            PUSH[..PUSH.len() / 2].to_owned(),
            PUSH.replace(r#""seq":8327597863"#, r#""seq":08327597863"#),
            PUSH.replace("\"Full\"", "\"Fu\u{1}ll\""),
            // Values serde refuses or reads as floats.
            PUSH.replace(r#""seq":8327597863"#, r#""seq":-0"#),
            PUSH.replace(r#""seq":8327597863"#, r#""seq":1.0"#),
            PUSH.replace(r#""seq":8327597863"#, r#""seq":1e3"#),
            PUSH.replace(r#""seq":8327597863"#, r#""seq":"x""#),
            PUSH.replace(r#""markPrice":"28184.5""#, r#""markPrice":28184.5"#),
            PUSH.replace(
                r#""markPrice":"28184.5""#,
                r#""markPrice":"0.0000000000000000001""#,
            ),
            PUSH.replace(
                r#""creationTime":1697682317044"#,
                r#""creationTime":9223372036854776"#,
            ),
            // Not a position push of the common shape.
            PUSH.replace("\"position\"", "\"greeks\""),
            PUSH.replace("\"position\"", "\"position.spot\""),
            PUSH.replace("\"position\"", "\"\""),
            PUSH.replace(r#""creationTime":1697682317044,"#, ""),
            r#"{"topic":"position","creationTime":1,"data":null}"#.to_owned(),
            r#"{"topic":"position","creationTime":1}"#.to_owned(),
            r#"{"topic":"position","creationTime":1,"data":[1,"x"]}"#.to_owned(),
            r#"{"op":"pong","args":["1"],"topic":"position","creationTime":1,"data":[]}"#
                .to_owned(),
            r#"{"success":true,"topic":"position","creationTime":1,"data":[]}"#.to_owned(),
            "[]".to_owned(),
            "".to_owned(),
            "\u{feff}{}".to_owned(),
        ];
        for frame in &serde {
            assert!(!check(frame), "serde path expected for {frame}");
        }
        let mut pair = Pair::new(DecoderConfig {
            keep_raw: false,
            ..DecoderConfig::default()
        });
        assert!(pair.check(PUSH.as_bytes()));
    }

    /// The one documented push that repeats a key: the 2022-12 execution example writes
    /// `"execValue":"8.435","execValue":"0"` (later revisions: `"execPnl":"0"`). Two values
    /// for one amount are the element's reject, as any duplicate is: storing either would be
    /// a guess.
    const DUPLICATE_EXEC_VALUE: &str = r#""execValue":"8.435","execValue":"0""#;

    /// Every push of every revision of Bybit's docs (tests/fixtures/bybit-docs): no rejects
    /// (but `DUPLICATE_EXEC_VALUE`), the same rows both ways, and all of them on the fast path
    /// (they are the shape Bybit sends).
    #[test]
    fn bybit_docs_pushes_decode_alike_without_rejects() {
        let files = [
            include_str!("../../../tests/fixtures/bybit-docs/ws_position.jsonl"),
            include_str!("../../../tests/fixtures/bybit-docs/ws_wallet.jsonl"),
            EXECUTIONS,
            ORDERS,
        ];
        let mut pair = Pair::new(DecoderConfig::default());
        let mut lines = 0;
        for line in files.iter().flat_map(|f| f.lines()) {
            if line.contains(DUPLICATE_EXEC_VALUE) {
                let (fast, outcome, _) = pair.check_rows(line.as_bytes());
                assert!(!fast, "a duplicate is serde's to refuse");
                let rejected = FrameOutcome::Push {
                    table: Table::ExecutionEvents,
                    rows: 0,
                    rejected: 1,
                };
                assert_eq!(outcome, rejected);
                let mut decoder = Decoder::default();
                decoder.decode_frame(ACCOUNT, line.as_bytes(), LOCAL_TS);
                let reasons = decoder.cut(Table::Rejects);
                assert!(text_at(&reasons, "reason")
                    .unwrap()
                    .contains("duplicate field `execValue`"));
                lines += 1;
                continue;
            }
            let (fast, outcome, rows) = pair.check_rows(line.as_bytes());
            assert!(
                matches!(outcome, FrameOutcome::Push { rejected: 0, rows: n, .. } if n > 0),
                "{outcome:?}: {line}"
            );
            assert!(rows.num_rows() > 0);
            assert!(fast, "fast path expected for {line}");
            lines += 1;
        }
        assert_eq!(lines, 44);
    }

    /// The row of a position element of `fields` (and what a row needs: category, symbol,
    /// index and update time), decoded both ways, on the fast path.
    fn position_row(fields: &str) -> RecordBatch {
        let frame = push_with(&format!(
            r#""category":"linear","symbol":"X","positionIdx":0,"updatedTime":1,{fields}"#
        ));
        let mut pair = Pair::new(DecoderConfig::default());
        let (fast, outcome, rows) = pair.check_rows(frame.as_bytes());
        assert!(fast, "fast path expected for {frame}");
        assert!(
            matches!(outcome, FrameOutcome::Push { rows: 1, .. }),
            "{outcome:?}"
        );
        rows
    }

    fn text_at(batch: &RecordBatch, column: &str) -> Option<String> {
        use arrow_array::cast::AsArray;
        use arrow_array::Array;
        let array = batch.column_by_name(column).unwrap().as_string::<i32>();
        array.is_valid(0).then(|| array.value(0).to_owned())
    }

    fn micros_at(batch: &RecordBatch, column: &str) -> Option<i64> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::TimestampMicrosecondType;
        use arrow_array::Array;
        let array = batch
            .column_by_name(column)
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        array.is_valid(0).then(|| array.value(0))
    }

    #[test]
    fn older_spellings_fill_the_same_columns_the_non_empty_one_winning() {
        let cases = [
            (
                r#""tpSlMode":"Partial","mmrSysUpdateTime":"5""#,
                Some("Partial"),
                Some(5_000),
            ),
            (
                r#""tpslMode":"","tpSlMode":"Partial","mmrSysUpdatedTime":"","mmrSysUpdateTime":"5""#,
                Some("Partial"),
                Some(5_000),
            ),
            (
                r#""tpSlMode":"Partial","tpslMode":"","mmrSysUpdateTime":5,"mmrSysUpdatedTime":null"#,
                Some("Partial"),
                Some(5_000),
            ),
            (
                r#""tpslMode":"Full","tpSlMode":"","mmrSysUpdatedTime":"7","mmrSysUpdateTime":"""#,
                Some("Full"),
                Some(7_000),
            ),
            // Both with a value (not seen in any recording): the current spelling.
            (
                r#""tpslMode":"Full","tpSlMode":"Partial","mmrSysUpdatedTime":"7","mmrSysUpdateTime":"5""#,
                Some("Full"),
                Some(7_000),
            ),
            (r#""tpSlMode":null,"mmrSysUpdateTime":"""#, None, None),
            (r#""tpslMode":"Full""#, Some("Full"), None),
        ];
        for (fields, tpsl_mode, mmr_us) in cases {
            let rows = position_row(fields);
            assert_eq!(
                text_at(&rows, "tpsl_mode").as_deref(),
                tpsl_mode,
                "{fields}"
            );
            assert_eq!(micros_at(&rows, "mmr_sys_updated_ts"), mmr_us, "{fields}");
        }
        // One spelling twice is still a duplicate, which serde refuses.
        let twice = push_with(
            r#""symbol":"X","positionIdx":0,"updatedTime":1,"tpSlMode":"a","tpSlMode":"b""#,
        );
        assert!(!check(&twice));
    }

    #[test]
    fn open_time_reads_integers_and_digit_strings() {
        for (value, us) in [
            ("1776729600123", Some(1_776_729_600_123_000)),
            (r#""1776729600123""#, Some(1_776_729_600_123_000)),
            // Bybit's default for a position without one: the epoch, as for every `0` ms.
            ("0", Some(0)),
            (r#""""#, None),
            ("null", None),
        ] {
            let rows = position_row(&format!(r#""openTime":{value}"#));
            assert_eq!(micros_at(&rows, "open_ts"), us, "{value}");
        }
    }

    /// Random edits of a push, most of them breaking it somewhere: the two paths never
    /// disagree and nothing panics.
    #[test]
    fn mutated_frames_agree() {
        let mut rng = fastrand::Rng::with_seed(7);
        let pieces: [&str; 24] = [
            "\"",
            "\\",
            ",",
            ":",
            "{",
            "}",
            "[",
            "]",
            " ",
            "0",
            "1",
            "-",
            ".",
            "e",
            "null",
            "true",
            "\"\"",
            "\\u0041",
            "é",
            "\u{1}",
            "9999999999999999999",
            "\"x\":1",
            "\"size\":\"1\"",
            "\"data\":[]",
        ];
        let mut pair = Pair::new(DecoderConfig::default());
        let mut fast = 0;
        let rounds = 30_000;
        for round in 0..rounds {
            let mut frame = match round % 5 {
                0 | 1 => PUSH,
                2 => WALLET,
                3 => execution_push(),
                _ => order_push(),
            }
            .to_owned();
            for _ in 0..rng.usize(1..=3) {
                let mut at = rng.usize(..=frame.len());
                while !frame.is_char_boundary(at) {
                    at -= 1;
                }
                match rng.u8(..3) {
                    0 => frame.insert_str(at, pieces[rng.usize(..pieces.len())]),
                    1 => {
                        let mut end = (at + rng.usize(1..4)).min(frame.len());
                        while !frame.is_char_boundary(end) {
                            end += 1;
                        }
                        frame.replace_range(at..end, "");
                    }
                    _ => {
                        let mut end = (at + 1).min(frame.len());
                        while !frame.is_char_boundary(end) {
                            end += 1;
                        }
                        frame.replace_range(at..end, pieces[rng.usize(..pieces.len())]);
                    }
                }
            }
            fast += pair.check(frame.as_bytes()) as usize;
        }
        assert!(fast > rounds / 10 && fast < rounds, "{fast} of {rounds}");
    }
}
