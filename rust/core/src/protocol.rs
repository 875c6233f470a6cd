//! Bybit V5 private-stream wire facts, in one place.
//!
//! Topic names, control operations and the shape of the frame envelope. The decoder and (later)
//! the connection engine read these; nothing else in the crate spells a topic or op name.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fields::{Flag, Millis, Text};

/// Position pushes: the all-in-one topic and the per-category ones.
pub const POSITION_TOPIC: &str = "position";
/// Wallet pushes: one element per account type, each with a `coin` array.
pub const WALLET_TOPIC: &str = "wallet";
/// Execution pushes (fills, funding, ADL, liquidation, delivery...): one element per execution.
pub const EXECUTION_TOPIC: &str = "execution";
/// Order pushes: one element per version of an order.
pub const ORDER_TOPIC: &str = "order";
/// The categories a `<topic>.<category>` name may carry, per captured topic.
pub const POSITION_CATEGORIES: &[&str] = &["linear", "inverse", "option"];
pub const EXECUTION_CATEGORIES: &[&str] = &["linear", "inverse", "option", "spot"];
pub const ORDER_CATEGORIES: &[&str] = EXECUTION_CATEGORIES;
/// `execution.fast` (and `execution.fast.<category>`): a lower-latency copy of the Trade rows
/// of `execution`, without fee, execPnl or message id. Deliberately not captured: stored in
/// `execution_events` its row would be the first arrival of an exec_id, and the full row of
/// the same fill, arriving later, would be dropped as its duplicate.
pub const EXECUTION_FAST_TOPIC: &str = "execution.fast";
/// Private topics Bybit documents that this capture does not decode.
pub const UNCAPTURED_TOPICS: &[&str] = &[EXECUTION_FAST_TOPIC, "greeks", "dcp"];

/// The text the WebSocket auth signature covers, before the `expires` ms timestamp.
pub const WS_AUTH_PREFIX: &str = "GET/realtime";
/// How far ahead of now an auth request's `expires` is set: long enough for a slow handshake,
/// short enough that a captured auth frame is soon useless.
pub const WS_AUTH_VALIDITY_MS: i64 = 10_000;
/// Bybit asks for a ping every 20 s on private streams.
pub const PING_INTERVAL_SECS: u64 = 20;
/// Control operations on the private stream.
pub const OP_AUTH: &str = "auth";
pub const OP_SUBSCRIBE: &str = "subscribe";
pub const OP_PING: &str = "ping";
pub const OP_PONG: &str = "pong";

/// REST paths read to rebuild an account's state after a (re)connect.
pub const REST_POSITION_LIST: &str = "/v5/position/list";
pub const REST_WALLET_BALANCE: &str = "/v5/account/wallet-balance";
/// REST paths read to backfill the ledger the stream cannot replay (executions and orders of
/// a gap); their pages have the same `{category, list, nextPageCursor}` shape.
pub const REST_EXECUTION_LIST: &str = "/v5/execution/list";
pub const REST_ORDER_HISTORY: &str = "/v5/order/history";
pub const REST_ORDER_REALTIME: &str = "/v5/order/realtime";
/// REST signing headers.
pub const HEADER_API_KEY: &str = "X-BAPI-API-KEY";
pub const HEADER_TIMESTAMP: &str = "X-BAPI-TIMESTAMP";
pub const HEADER_RECV_WINDOW: &str = "X-BAPI-RECV-WINDOW";
pub const HEADER_SIGN: &str = "X-BAPI-SIGN";
pub const REST_RECV_WINDOW_MS: i64 = 5_000;
/// `/v5/position/list` pages hold at most 200 positions.
pub const POSITION_PAGE_LIMIT: u32 = 200;
/// A full position snapshot is one call per category (and, for linear, per settle coin).
pub const POSITION_SNAPSHOT_QUERIES: &[(&str, Option<&str>)] = &[
    ("linear", Some("USDT")),
    ("linear", Some("USDC")),
    ("inverse", None),
    ("option", None),
];

/// The kinds of push the capture decodes, each into a table of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    Position,
    Wallet,
    Execution,
    Order,
}

/// What a push's topic is, as far as the capture is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind<'a> {
    /// A captured topic: the all-in-one name (category in each element) or
    /// `<topic>.<category>`, whose category stands in for an element's missing one.
    Push {
        kind: PushKind,
        category: Option<&'a str>,
    },
    /// A documented private topic without a table.
    Uncaptured,
    Unknown,
}

/// Each captured topic's name, its kind and the categories its per-category names take.
const CAPTURED: [(&str, PushKind, &[&str]); 4] = [
    (POSITION_TOPIC, PushKind::Position, POSITION_CATEGORIES),
    (WALLET_TOPIC, PushKind::Wallet, &[]),
    (EXECUTION_TOPIC, PushKind::Execution, EXECUTION_CATEGORIES),
    (ORDER_TOPIC, PushKind::Order, ORDER_CATEGORIES),
];

pub fn classify_topic(topic: &str) -> TopicKind<'_> {
    for (name, kind, categories) in CAPTURED {
        let Some(rest) = topic.strip_prefix(name) else {
            continue;
        };
        if rest.is_empty() {
            return TopicKind::Push {
                kind,
                category: None,
            };
        }
        if let Some(category) = rest.strip_prefix('.') {
            if categories.contains(&category) {
                return TopicKind::Push {
                    kind,
                    category: Some(category),
                };
            }
        }
    }
    let fast_category = topic
        .strip_prefix(EXECUTION_FAST_TOPIC)
        .and_then(|rest| rest.strip_prefix('.'));
    if UNCAPTURED_TOPICS.contains(&topic)
        || fast_category.is_some_and(|c| EXECUTION_CATEGORIES.contains(&c))
    {
        return TopicKind::Uncaptured;
    }
    TopicKind::Unknown
}

/// Every frame the private stream sends, read only as far as telling its kind needs.
///
/// A push has `topic`, `creationTime` and `data`; a control answer (auth, subscribe, pong)
/// has `op`. The elements of `data` stay raw here so that each is decoded, and if need be
/// rejected, on its own.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Envelope<'a> {
    #[serde(borrow)]
    pub op: Text<'a>,
    #[serde(borrow)]
    pub topic: Text<'a>,
    #[serde(borrow)]
    pub id: Text<'a>,
    #[serde(rename = "creationTime")]
    pub creation_time: Millis,
    #[serde(borrow)]
    pub data: Option<Vec<&'a RawValue>>,
    pub success: Flag,
    #[serde(borrow)]
    pub ret_msg: Text<'a>,
    #[serde(borrow)]
    pub conn_id: Text<'a>,
    #[serde(borrow)]
    pub req_id: Text<'a>,
    #[serde(borrow)]
    pub args: Option<Vec<Text<'a>>>,
}

/// A control answer from the server, handed to the connection code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFrame {
    /// `auth`, `subscribe`, `unsubscribe`, `pong` (private streams) or `ping` (public style).
    pub op: String,
    /// Present on auth and subscribe answers.
    pub success: Option<bool>,
    pub ret_msg: Option<String>,
    pub conn_id: Option<String>,
    pub req_id: Option<String>,
    /// A pong's args hold the server's time in ms.
    pub args: Vec<String>,
}

impl ControlFrame {
    pub(crate) fn from_envelope(op: &str, envelope: &Envelope<'_>) -> Self {
        let owned = |t: &Text<'_>| t.as_deref().map(str::to_owned);
        ControlFrame {
            op: op.to_owned(),
            success: envelope.success.0,
            ret_msg: owned(&envelope.ret_msg),
            conn_id: owned(&envelope.conn_id),
            req_id: owned(&envelope.req_id),
            args: envelope
                .args
                .iter()
                .flatten()
                .map(|a| a.as_deref().unwrap_or_default().to_owned())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(kind: PushKind, category: Option<&str>) -> TopicKind<'_> {
        TopicKind::Push { kind, category }
    }

    #[test]
    fn topics() {
        use PushKind::*;
        assert_eq!(classify_topic("position"), push(Position, None));
        assert_eq!(
            classify_topic("position.inverse"),
            push(Position, Some("inverse"))
        );
        assert_eq!(classify_topic("position.spot"), TopicKind::Unknown);
        assert_eq!(classify_topic("positions"), TopicKind::Unknown);
        assert_eq!(classify_topic("wallet"), push(Wallet, None));
        assert_eq!(classify_topic("wallet.linear"), TopicKind::Unknown);
        assert_eq!(classify_topic("execution"), push(Execution, None));
        assert_eq!(classify_topic("order"), push(Order, None));
        for category in ["linear", "inverse", "option", "spot"] {
            let topic = format!("execution.{category}");
            assert_eq!(classify_topic(&topic), push(Execution, Some(category)));
            let topic = format!("order.{category}");
            assert_eq!(classify_topic(&topic), push(Order, Some(category)));
            let topic = format!("execution.fast.{category}");
            assert_eq!(classify_topic(&topic), TopicKind::Uncaptured);
        }
        assert_eq!(classify_topic("execution.fast"), TopicKind::Uncaptured);
        assert_eq!(classify_topic("execution.fast.x"), TopicKind::Unknown);
        assert_eq!(classify_topic("execution.futures"), TopicKind::Unknown);
        assert_eq!(classify_topic("orders"), TopicKind::Unknown);
        assert_eq!(classify_topic("order."), TopicKind::Unknown);
        assert_eq!(classify_topic("greeks"), TopicKind::Uncaptured);
        assert_eq!(classify_topic("tickers.BTCUSDT"), TopicKind::Unknown);
    }
}
