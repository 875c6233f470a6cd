//! `execution` pushes (and `/v5/execution/list` rows, which have the same shape) into
//! `execution_events`: one row per element, an execution being a fill, a funding payment, an
//! ADL or liquidation trade, a delivery or settlement (`exec_type` says which).
//!
//! `execution.fast` is not captured (`protocol::EXECUTION_FAST_TOPIC`): its rows lack the fee,
//! execPnl and message id, and stored here they would be the first arrival of an exec_id, the
//! full row of the same fill then dropped as its duplicate.

use serde::Deserialize;

use crate::fields::{Dec, Flag, Int, Json, Millis, Text};
use crate::flat::flat_object;
use crate::position::int32;
use crate::row::{Provenance, RowError};
use crate::table;

table! {
    /// Builders of `execution_events`. Key: (account_id, exec_id): Bybit's execId is unique
    /// within an account.
    ExecutionColumns = "execution_events" {
        account_id: Utf8 [required],
        category: Utf8 [required],
        symbol: Utf8 [required],
        exec_id: Utf8 [required],
        order_id: Utf8,
        order_link_id: Utf8,
        side: Utf8,
        /// Trade, AdlTrade, Funding, BustTrade, Delivery, Settle, BlockTrade, MovePosition...
        exec_type: Utf8,
        exec_price: Decimal,
        exec_qty: Decimal,
        exec_value: Decimal,
        /// Negative for a rebate.
        exec_fee: Decimal,
        fee_rate: Decimal,
        fee_currency: Utf8,
        /// `extraFees` (Indian GST...): the array's exact JSON text; NULL for `""`.
        extra_fees: Utf8,
        /// The transaction log's cashFlow for this execution.
        exec_pnl: Decimal,
        is_maker: Bool,
        leaves_qty: Decimal,
        closed_size: Decimal,
        mark_price: Decimal,
        index_price: Decimal,
        underlying_price: Decimal,
        /// Options only.
        trade_iv: Decimal,
        mark_iv: Decimal,
        order_price: Decimal,
        order_qty: Decimal,
        order_type: Utf8,
        stop_order_type: Utf8,
        create_type: Utf8,
        block_trade_id: Utf8,
        market_unit: Utf8,
        /// `isLeverage`, sent as the string "0" or "1" (spot margin borrowing): kept as the
        /// integer, like the exchange's other codes, not as a boolean (see `order_events`).
        is_leverage: Int32,
        /// The element's `execTime`: when the execution happened.
        exchange_ts: TimestampUs [required],
        /// The push envelope's `creationTime` (for REST rows: the response's `time`).
        creation_ts: TimestampUs [required],
        local_ts: TimestampUs [required],
        source: Utf8 [required],
        message_id: Utf8,
        /// Executions concluded together share it; unique only with the symbol.
        seq: Int64,
        raw_json: Utf8,
    }
}

/// One element of an execution push, every documented field; unknown fields are ignored here
/// and kept in `raw_json`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct ExecutionElement<'a> {
    #[serde(borrow)]
    pub category: Text<'a>,
    #[serde(borrow)]
    pub symbol: Text<'a>,
    #[serde(borrow)]
    pub exec_id: Text<'a>,
    #[serde(borrow)]
    pub order_id: Text<'a>,
    #[serde(borrow)]
    pub order_link_id: Text<'a>,
    #[serde(borrow)]
    pub side: Text<'a>,
    #[serde(borrow)]
    pub exec_type: Text<'a>,
    pub exec_price: Dec,
    pub exec_qty: Dec,
    pub exec_value: Dec,
    pub exec_fee: Dec,
    pub fee_rate: Dec,
    #[serde(borrow)]
    pub fee_currency: Text<'a>,
    #[serde(borrow)]
    pub extra_fees: Json<'a>,
    pub exec_pnl: Dec,
    pub is_maker: Flag,
    pub leaves_qty: Dec,
    pub closed_size: Dec,
    pub mark_price: Dec,
    pub index_price: Dec,
    pub underlying_price: Dec,
    pub trade_iv: Dec,
    pub mark_iv: Dec,
    pub order_price: Dec,
    pub order_qty: Dec,
    #[serde(borrow)]
    pub order_type: Text<'a>,
    #[serde(borrow)]
    pub stop_order_type: Text<'a>,
    #[serde(borrow)]
    pub create_type: Text<'a>,
    #[serde(borrow)]
    pub block_trade_id: Text<'a>,
    #[serde(borrow)]
    pub market_unit: Text<'a>,
    pub is_leverage: Int,
    pub exec_time: Millis,
    pub seq: Int,
}

// The fields the flat fast path (`flat.rs`) sets, by the names serde reads (a test checks the
// two lists are the same), each with its reader.
flat_object!(ExecutionElement, order: execution, multiplier: MULTIPLIER, {
    "category" => category: text,
    "symbol" => symbol: text,
    "execId" => exec_id: text,
    "orderId" => order_id: text,
    "orderLinkId" => order_link_id: text,
    "side" => side: text,
    "execType" => exec_type: text,
    "execPrice" => exec_price: dec,
    "execQty" => exec_qty: dec,
    "execValue" => exec_value: dec,
    "execFee" => exec_fee: dec,
    "feeRate" => fee_rate: dec,
    "feeCurrency" => fee_currency: text,
    "extraFees" => extra_fees: json,
    "execPnl" => exec_pnl: dec,
    "isMaker" => is_maker: flag,
    "leavesQty" => leaves_qty: dec,
    "closedSize" => closed_size: dec,
    "markPrice" => mark_price: dec,
    "indexPrice" => index_price: dec,
    "underlyingPrice" => underlying_price: dec,
    "tradeIv" => trade_iv: dec,
    "markIv" => mark_iv: dec,
    "orderPrice" => order_price: dec,
    "orderQty" => order_qty: dec,
    "orderType" => order_type: text,
    "stopOrderType" => stop_order_type: text,
    "createType" => create_type: text,
    "blockTradeId" => block_trade_id: text,
    "marketUnit" => market_unit: text,
    "isLeverage" => is_leverage: int,
    "execTime" => exec_time: millis,
    "seq" => seq: int,
});

/// Under which the execution keys land in distinct slots (checked at compile time). Found as
/// the position table's was: random odd constants tried until one was free of collisions.
pub(crate) const MULTIPLIER: u64 = 0x2019_880e_2e07_9b05;

impl ExecutionColumns {
    /// Appends one element, or appends nothing and says why.
    ///
    /// `topic_category` is the category an `execution.<category>` topic (or a REST page)
    /// implies, used when the element does not name its own.
    pub fn append(
        &mut self,
        element: &ExecutionElement<'_>,
        topic_category: Option<&str>,
        provenance: &Provenance<'_>,
        raw_json: Option<&str>,
    ) -> Result<(), RowError> {
        // Everything that can fail is checked before the first column is touched, so a
        // rejected element leaves no partial row behind.
        let e = element;
        let category = e
            .category
            .as_deref()
            .or(topic_category)
            .ok_or(RowError::Missing("category"))?;
        let symbol = e.symbol.as_deref().ok_or(RowError::Missing("symbol"))?;
        let exec_id = e.exec_id.as_deref().ok_or(RowError::Missing("execId"))?;
        let exchange_ts = e.exec_time.0.ok_or(RowError::Missing("execTime"))?;
        let is_leverage = int32("isLeverage", e.is_leverage)?;

        self.account_id.append_value(provenance.account_id);
        self.category.append_value(category);
        self.symbol.append_value(symbol);
        self.exec_id.append_value(exec_id);
        self.order_id.append_option(e.order_id.as_deref());
        self.order_link_id.append_option(e.order_link_id.as_deref());
        self.side.append_option(e.side.as_deref());
        self.exec_type.append_option(e.exec_type.as_deref());
        self.exec_price.append_option(e.exec_price.0);
        self.exec_qty.append_option(e.exec_qty.0);
        self.exec_value.append_option(e.exec_value.0);
        self.exec_fee.append_option(e.exec_fee.0);
        self.fee_rate.append_option(e.fee_rate.0);
        self.fee_currency.append_option(e.fee_currency.as_deref());
        self.extra_fees.append_option(e.extra_fees.0);
        self.exec_pnl.append_option(e.exec_pnl.0);
        self.is_maker.append_option(e.is_maker.0);
        self.leaves_qty.append_option(e.leaves_qty.0);
        self.closed_size.append_option(e.closed_size.0);
        self.mark_price.append_option(e.mark_price.0);
        self.index_price.append_option(e.index_price.0);
        self.underlying_price.append_option(e.underlying_price.0);
        self.trade_iv.append_option(e.trade_iv.0);
        self.mark_iv.append_option(e.mark_iv.0);
        self.order_price.append_option(e.order_price.0);
        self.order_qty.append_option(e.order_qty.0);
        self.order_type.append_option(e.order_type.as_deref());
        self.stop_order_type
            .append_option(e.stop_order_type.as_deref());
        self.create_type.append_option(e.create_type.as_deref());
        self.block_trade_id
            .append_option(e.block_trade_id.as_deref());
        self.market_unit.append_option(e.market_unit.as_deref());
        self.is_leverage.append_option(is_leverage);
        self.exchange_ts.append_value(exchange_ts);
        self.creation_ts.append_value(provenance.creation_ts);
        self.local_ts.append_value(provenance.local_ts);
        self.source.append_value(provenance.source.as_str());
        self.message_id.append_option(provenance.message_id);
        self.seq.append_option(e.seq.0);
        self.raw_json.append_option(raw_json);
        Ok(())
    }

    /// The `exchange_ts` (µs, UTC) of the last `rows` rows appended, oldest first, lent
    /// without a copy: the connection engine notes each account's newest execution, where a
    /// backfill after a gap starts. Valid until the next append or cut.
    pub fn recent_exchange_ts(&self, rows: usize) -> &[i64] {
        let times = self.exchange_ts.values_slice();
        &times[times.len().saturating_sub(rows)..]
    }
}
