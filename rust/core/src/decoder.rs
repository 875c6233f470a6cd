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
use crate::fields::{Millis, Text};
use crate::position::{PositionColumns, PositionElement, PositionKey};
use crate::protocol::{
    classify_topic, ControlFrame, Envelope, TopicKind, REST_POSITION_LIST, REST_WALLET_BALANCE,
};
use crate::reject::{Reject, RejectColumns};
use crate::row::{Provenance, Source};
use crate::wallet::{WalletColumns, WalletElement};

/// The tables a decoder fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    PositionSnapshots,
    WalletSnapshots,
    Rejects,
    ConnectionEvents,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::PositionSnapshots,
        Table::WalletSnapshots,
        Table::Rejects,
        Table::ConnectionEvents,
    ];
    /// The tables that frames fill (what `ingestor.decode` returns).
    pub const FRAME_TABLES: [Table; 3] = [
        Table::PositionSnapshots,
        Table::WalletSnapshots,
        Table::Rejects,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::PositionSnapshots => PositionColumns::NAME,
            Table::WalletSnapshots => WalletColumns::NAME,
            Table::Rejects => RejectColumns::NAME,
            Table::ConnectionEvents => ConnectionEventColumns::NAME,
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::PositionSnapshots => PositionColumns::schema(),
            Table::WalletSnapshots => WalletColumns::schema(),
            Table::Rejects => RejectColumns::schema(),
            Table::ConnectionEvents => ConnectionEventColumns::schema(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
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
    positions: PositionColumns,
    wallets: WalletColumns,
    rejects: RejectColumns,
    events: ConnectionEventColumns,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DecoderConfig::default())
    }
}

impl Decoder {
    pub fn new(config: DecoderConfig) -> Self {
        Decoder {
            config,
            positions: PositionColumns::with_capacity(1024),
            wallets: WalletColumns::with_capacity(1024),
            rejects: RejectColumns::with_capacity(16),
            events: ConnectionEventColumns::with_capacity(16),
        }
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Rows waiting in `table` since its last cut.
    pub fn pending(&self, table: Table) -> usize {
        match table {
            Table::PositionSnapshots => self.positions.len(),
            Table::WalletSnapshots => self.wallets.len(),
            Table::Rejects => self.rejects.len(),
            Table::ConnectionEvents => self.events.len(),
        }
    }

    /// The rows of `table` so far as one batch (possibly empty); the table starts over.
    pub fn cut(&mut self, table: Table) -> RecordBatch {
        match table {
            Table::PositionSnapshots => self.positions.finish(),
            Table::WalletSnapshots => self.wallets.finish(),
            Table::Rejects => self.rejects.finish(),
            Table::ConnectionEvents => self.events.finish(),
        }
    }

    /// The position keys of the last `rows` position rows appended (see
    /// `PositionColumns::recent_keys`).
    pub fn recent_position_keys(&self, rows: usize) -> Vec<(PositionKey, bool)> {
        self.positions.recent_keys(rows)
    }

    /// Records a connection state change.
    pub fn record_event(&mut self, event: &ConnectionEvent<'_>) {
        self.events.append(event);
    }

    /// Decodes one WebSocket text frame of `account_id`, received at `local_ts` (µs, UTC).
    pub fn decode_frame(&mut self, account_id: &str, frame: &[u8], local_ts: i64) -> FrameOutcome {
        let mut reject = Reject {
            account_id,
            local_ts,
            source: Source::Ws,
            topic: None,
            message_id: None,
            reason: "",
            raw: frame,
        };
        if frame.len() > self.config.max_frame_bytes {
            let limit = self.config.max_frame_bytes;
            let reason = format!(
                "frame of {} bytes exceeds the {limit}-byte limit; raw holds its first {limit} bytes",
                frame.len()
            );
            reject.raw = &frame[..limit];
            return self.reject_frame(Reject {
                reason: &reason,
                ..reject
            });
        }
        let text = match std::str::from_utf8(frame) {
            Ok(text) => text,
            Err(e) => {
                let reason = format!("not valid UTF-8: {e}");
                return self.reject_frame(Reject {
                    reason: &reason,
                    ..reject
                });
            }
        };
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

        let (table, category) = match classify_topic(topic) {
            TopicKind::Position { category } => (Table::PositionSnapshots, category),
            TopicKind::Wallet => (Table::WalletSnapshots, None),
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
        let (rows, rejected) = self.append_elements(table, category, data, &provenance, reject);
        FrameOutcome::Push {
            table,
            rows,
            rejected,
        }
    }

    /// Decodes one page of a REST state read (`/v5/position/list` or
    /// `/v5/account/wallet-balance`) into rows with `source = 'rest'`.
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
        let provenance = Provenance {
            account_id,
            creation_ts: answer.time.0.unwrap_or(local_ts),
            local_ts,
            source: Source::Rest,
            message_id: None,
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
        let table = match endpoint {
            RestEndpoint::PositionList => Table::PositionSnapshots,
            RestEndpoint::WalletBalance => Table::WalletSnapshots,
        };
        let (rows, rejected) = self.append_elements(
            table,
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

    /// Appends each element to `table`; a failing element becomes a reject on its own.
    fn append_elements(
        &mut self,
        table: Table,
        category: Option<&str>,
        elements: &[&RawValue],
        provenance: &Provenance<'_>,
        reject: Reject<'_>,
    ) -> (usize, usize) {
        let (mut rows, mut rejected) = (0, 0);
        let what = reject.topic.unwrap_or_default();
        for (index, element) in elements.iter().enumerate() {
            let appended = match table {
                Table::PositionSnapshots => self.append_position(element, category, provenance),
                _ => self.append_wallet(element, provenance),
            };
            match appended {
                Ok(n) => rows += n,
                Err(why) => {
                    rejected += 1;
                    let reason = format!("{what} element {index}: {why}");
                    self.rejects.append(&Reject {
                        reason: &reason,
                        raw: element.get().as_bytes(),
                        ..reject
                    });
                }
            }
        }
        (rows, rejected)
    }

    fn reject_frame(&mut self, reject: Reject<'_>) -> FrameOutcome {
        self.rejects.append(&reject);
        FrameOutcome::Rejected
    }

    fn append_position(
        &mut self,
        raw: &RawValue,
        topic_category: Option<&str>,
        provenance: &Provenance<'_>,
    ) -> Result<usize, String> {
        let text = raw.get();
        let element: PositionElement =
            serde_json::from_str(text).map_err(|_| explain::<PositionElement>(text))?;
        let raw_json = self.config.keep_raw.then_some(text);
        self.positions
            .append(&element, topic_category, provenance, raw_json)
            .map(|()| 1)
            .map_err(|e| e.to_string())
    }

    fn append_wallet(
        &mut self,
        raw: &RawValue,
        provenance: &Provenance<'_>,
    ) -> Result<usize, String> {
        let text = raw.get();
        let element: WalletElement =
            serde_json::from_str(text).map_err(|_| explain::<WalletElement>(text))?;
        let raw_json = self.config.keep_raw.then_some(text);
        self.wallets
            .append(&element, provenance, raw_json)
            .map_err(|e| e.to_string())
    }
}

/// The REST reads that rebuild an account's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestEndpoint {
    PositionList,
    WalletBalance,
}

impl RestEndpoint {
    pub fn path(self) -> &'static str {
        match self {
            RestEndpoint::PositionList => REST_POSITION_LIST,
            RestEndpoint::WalletBalance => REST_WALLET_BALANCE,
        }
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
