//! `order` pushes (and `/v5/order/history`, `/v5/order/realtime` rows, which have the same
//! shape) into `order_events`: one row per element, each a version of an order.

use serde::Deserialize;

use crate::fields::{Dec, Flag, Int, Json, Millis, Text};
use crate::flat::flat_object;
use crate::position::int32;
use crate::row::{Provenance, RowError};
use crate::table;

table! {
    /// Builders of `order_events`. Key: (account_id, order_id, exchange_ts, order_status...):
    /// an order has a row per version, and Bybit can push `Filled` twice for one order when a
    /// cancel races a fill.
    OrderColumns = "order_events" {
        account_id: Utf8 [required],
        category: Utf8 [required],
        symbol: Utf8 [required],
        order_id: Utf8 [required],
        order_link_id: Utf8,
        parent_order_link_id: Utf8,
        block_trade_id: Utf8,
        side: Utf8,
        order_type: Utf8,
        /// New, PartiallyFilled, Untriggered, Rejected, PartiallyFilledCanceled, Filled,
        /// Cancelled, Triggered, Deactivated.
        order_status: Utf8,
        time_in_force: Utf8,
        price: Decimal,
        qty: Decimal,
        avg_price: Decimal,
        leaves_qty: Decimal,
        leaves_value: Decimal,
        cum_exec_qty: Decimal,
        cum_exec_value: Decimal,
        /// Being replaced by `cum_fee_detail` for linear and spot (since 2025-10).
        cum_exec_fee: Decimal,
        /// `cumFeeDetail`, an object of coin to fee: its exact JSON text; NULL for `""`.
        cum_fee_detail: Utf8,
        fee_currency: Utf8,
        closed_pnl: Decimal,
        position_idx: Int32,
        reduce_only: Bool,
        close_on_trigger: Bool,
        reject_reason: Utf8,
        cancel_type: Utf8,
        create_type: Utf8,
        place_type: Utf8,
        stop_order_type: Utf8,
        trigger_price: Decimal,
        trigger_by: Utf8,
        trigger_direction: Int32,
        take_profit: Decimal,
        stop_loss: Decimal,
        tpsl_mode: Utf8,
        tp_trigger_by: Utf8,
        sl_trigger_by: Utf8,
        tp_limit_price: Decimal,
        sl_limit_price: Decimal,
        last_price_on_created: Decimal,
        smp_type: Utf8,
        smp_group: Int64,
        smp_order_id: Utf8,
        /// Options only.
        order_iv: Decimal,
        market_unit: Utf8,
        /// `isLeverage`: the string "0" or "1" (spot margin borrowing), or "" (NULL). Kept as
        /// the integer: `Flag` reads JSON booleans (and "true"/"false") only, and teaching it
        /// "0"/"1" would loosen every boolean column; a code Bybit may extend stays readable
        /// as an integer where a boolean would have to reject the row.
        is_leverage: Int32,
        slippage_tolerance: Decimal,
        slippage_tolerance_type: Utf8,
        rpi_taker_access: Bool,
        rpi_matched_qty: Decimal,
        created_ts: TimestampUs,
        /// The element's `updatedTime`: when the exchange made this version of the order.
        exchange_ts: TimestampUs [required],
        /// The push envelope's `creationTime` (for REST rows: the response's `time`).
        creation_ts: TimestampUs [required],
        local_ts: TimestampUs [required],
        source: Utf8 [required],
        message_id: Utf8,
        raw_json: Utf8,
    }
}

/// One element of an order push, every documented field; unknown fields are ignored here and
/// kept in `raw_json`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct OrderElement<'a> {
    #[serde(borrow)]
    pub category: Text<'a>,
    #[serde(borrow)]
    pub symbol: Text<'a>,
    #[serde(borrow)]
    pub order_id: Text<'a>,
    #[serde(borrow)]
    pub order_link_id: Text<'a>,
    #[serde(borrow)]
    pub parent_order_link_id: Text<'a>,
    #[serde(borrow)]
    pub block_trade_id: Text<'a>,
    #[serde(borrow)]
    pub side: Text<'a>,
    #[serde(borrow)]
    pub order_type: Text<'a>,
    #[serde(borrow)]
    pub order_status: Text<'a>,
    #[serde(borrow)]
    pub time_in_force: Text<'a>,
    pub price: Dec,
    pub qty: Dec,
    pub avg_price: Dec,
    pub leaves_qty: Dec,
    pub leaves_value: Dec,
    pub cum_exec_qty: Dec,
    pub cum_exec_value: Dec,
    pub cum_exec_fee: Dec,
    #[serde(borrow)]
    pub cum_fee_detail: Json<'a>,
    #[serde(borrow)]
    pub fee_currency: Text<'a>,
    pub closed_pnl: Dec,
    pub position_idx: Int,
    pub reduce_only: Flag,
    pub close_on_trigger: Flag,
    #[serde(borrow)]
    pub reject_reason: Text<'a>,
    #[serde(borrow)]
    pub cancel_type: Text<'a>,
    #[serde(borrow)]
    pub create_type: Text<'a>,
    #[serde(borrow)]
    pub place_type: Text<'a>,
    #[serde(borrow)]
    pub stop_order_type: Text<'a>,
    pub trigger_price: Dec,
    #[serde(borrow)]
    pub trigger_by: Text<'a>,
    pub trigger_direction: Int,
    pub take_profit: Dec,
    pub stop_loss: Dec,
    #[serde(borrow)]
    pub tpsl_mode: Text<'a>,
    /// Older recordings spell `tpslMode` this way; as for positions, its own field, not a
    /// serde alias (an element may carry both), and the column takes the non-empty one.
    #[serde(borrow, rename = "tpSlMode")]
    pub tp_sl_mode: Text<'a>,
    #[serde(borrow)]
    pub tp_trigger_by: Text<'a>,
    #[serde(borrow)]
    pub sl_trigger_by: Text<'a>,
    pub tp_limit_price: Dec,
    pub sl_limit_price: Dec,
    pub last_price_on_created: Dec,
    #[serde(borrow)]
    pub smp_type: Text<'a>,
    /// An integer, once seen as a string: `Int` reads both.
    pub smp_group: Int,
    #[serde(borrow)]
    pub smp_order_id: Text<'a>,
    pub order_iv: Dec,
    #[serde(borrow)]
    pub market_unit: Text<'a>,
    pub is_leverage: Int,
    pub slippage_tolerance: Dec,
    #[serde(borrow)]
    pub slippage_tolerance_type: Text<'a>,
    pub rpi_taker_access: Flag,
    pub rpi_matched_qty: Dec,
    pub created_time: Millis,
    pub updated_time: Millis,
}

// The fields the flat fast path (`flat.rs`) sets, by the names serde reads (a test checks the
// two lists are the same), each with its reader.
flat_object!(OrderElement, order: order, multiplier: MULTIPLIER, {
    "category" => category: text,
    "symbol" => symbol: text,
    "orderId" => order_id: text,
    "orderLinkId" => order_link_id: text,
    "parentOrderLinkId" => parent_order_link_id: text,
    "blockTradeId" => block_trade_id: text,
    "side" => side: text,
    "orderType" => order_type: text,
    "orderStatus" => order_status: text,
    "timeInForce" => time_in_force: text,
    "price" => price: dec,
    "qty" => qty: dec,
    "avgPrice" => avg_price: dec,
    "leavesQty" => leaves_qty: dec,
    "leavesValue" => leaves_value: dec,
    "cumExecQty" => cum_exec_qty: dec,
    "cumExecValue" => cum_exec_value: dec,
    "cumExecFee" => cum_exec_fee: dec,
    "cumFeeDetail" => cum_fee_detail: json,
    "feeCurrency" => fee_currency: text,
    "closedPnl" => closed_pnl: dec,
    "positionIdx" => position_idx: int,
    "reduceOnly" => reduce_only: flag,
    "closeOnTrigger" => close_on_trigger: flag,
    "rejectReason" => reject_reason: text,
    "cancelType" => cancel_type: text,
    "createType" => create_type: text,
    "placeType" => place_type: text,
    "stopOrderType" => stop_order_type: text,
    "triggerPrice" => trigger_price: dec,
    "triggerBy" => trigger_by: text,
    "triggerDirection" => trigger_direction: int,
    "takeProfit" => take_profit: dec,
    "stopLoss" => stop_loss: dec,
    "tpslMode" => tpsl_mode: text,
    "tpSlMode" => tp_sl_mode: text,
    "tpTriggerBy" => tp_trigger_by: text,
    "slTriggerBy" => sl_trigger_by: text,
    "tpLimitPrice" => tp_limit_price: dec,
    "slLimitPrice" => sl_limit_price: dec,
    "lastPriceOnCreated" => last_price_on_created: dec,
    "smpType" => smp_type: text,
    "smpGroup" => smp_group: int,
    "smpOrderId" => smp_order_id: text,
    "orderIv" => order_iv: dec,
    "marketUnit" => market_unit: text,
    "isLeverage" => is_leverage: int,
    "slippageTolerance" => slippage_tolerance: dec,
    "slippageToleranceType" => slippage_tolerance_type: text,
    "rpiTakerAccess" => rpi_taker_access: flag,
    "rpiMatchedQty" => rpi_matched_qty: dec,
    "createdTime" => created_time: millis,
    "updatedTime" => updated_time: millis,
});

/// Under which the order keys land in distinct slots (checked at compile time). Found as the
/// position table's was: random odd constants tried until one was free of collisions (53
/// keys in 128 slots: this one came after some 740,000).
pub(crate) const MULTIPLIER: u64 = 0xef96_4b8d_ae75_3ff5;

impl OrderColumns {
    /// Appends one element, or appends nothing and says why.
    ///
    /// `topic_category` is the category an `order.<category>` topic (or a REST page) implies,
    /// used when the element does not name its own.
    pub fn append(
        &mut self,
        element: &OrderElement<'_>,
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
        let order_id = e.order_id.as_deref().ok_or(RowError::Missing("orderId"))?;
        let exchange_ts = e.updated_time.0.ok_or(RowError::Missing("updatedTime"))?;
        let position_idx = int32("positionIdx", e.position_idx)?;
        let trigger_direction = int32("triggerDirection", e.trigger_direction)?;
        let is_leverage = int32("isLeverage", e.is_leverage)?;

        self.account_id.append_value(provenance.account_id);
        self.category.append_value(category);
        self.symbol.append_value(symbol);
        self.order_id.append_value(order_id);
        self.order_link_id.append_option(e.order_link_id.as_deref());
        self.parent_order_link_id
            .append_option(e.parent_order_link_id.as_deref());
        self.block_trade_id
            .append_option(e.block_trade_id.as_deref());
        self.side.append_option(e.side.as_deref());
        self.order_type.append_option(e.order_type.as_deref());
        self.order_status.append_option(e.order_status.as_deref());
        self.time_in_force.append_option(e.time_in_force.as_deref());
        self.price.append_option(e.price.0);
        self.qty.append_option(e.qty.0);
        self.avg_price.append_option(e.avg_price.0);
        self.leaves_qty.append_option(e.leaves_qty.0);
        self.leaves_value.append_option(e.leaves_value.0);
        self.cum_exec_qty.append_option(e.cum_exec_qty.0);
        self.cum_exec_value.append_option(e.cum_exec_value.0);
        self.cum_exec_fee.append_option(e.cum_exec_fee.0);
        self.cum_fee_detail.append_option(e.cum_fee_detail.0);
        self.fee_currency.append_option(e.fee_currency.as_deref());
        self.closed_pnl.append_option(e.closed_pnl.0);
        self.position_idx.append_option(position_idx);
        self.reduce_only.append_option(e.reduce_only.0);
        self.close_on_trigger.append_option(e.close_on_trigger.0);
        self.reject_reason.append_option(e.reject_reason.as_deref());
        self.cancel_type.append_option(e.cancel_type.as_deref());
        self.create_type.append_option(e.create_type.as_deref());
        self.place_type.append_option(e.place_type.as_deref());
        self.stop_order_type
            .append_option(e.stop_order_type.as_deref());
        self.trigger_price.append_option(e.trigger_price.0);
        self.trigger_by.append_option(e.trigger_by.as_deref());
        self.trigger_direction.append_option(trigger_direction);
        self.take_profit.append_option(e.take_profit.0);
        self.stop_loss.append_option(e.stop_loss.0);
        // Either spelling, the non-empty one (the current spelling if both have a value).
        self.tpsl_mode
            .append_option(e.tpsl_mode.as_deref().or(e.tp_sl_mode.as_deref()));
        self.tp_trigger_by.append_option(e.tp_trigger_by.as_deref());
        self.sl_trigger_by.append_option(e.sl_trigger_by.as_deref());
        self.tp_limit_price.append_option(e.tp_limit_price.0);
        self.sl_limit_price.append_option(e.sl_limit_price.0);
        self.last_price_on_created
            .append_option(e.last_price_on_created.0);
        self.smp_type.append_option(e.smp_type.as_deref());
        self.smp_group.append_option(e.smp_group.0);
        self.smp_order_id.append_option(e.smp_order_id.as_deref());
        self.order_iv.append_option(e.order_iv.0);
        self.market_unit.append_option(e.market_unit.as_deref());
        self.is_leverage.append_option(is_leverage);
        self.slippage_tolerance
            .append_option(e.slippage_tolerance.0);
        self.slippage_tolerance_type
            .append_option(e.slippage_tolerance_type.as_deref());
        self.rpi_taker_access.append_option(e.rpi_taker_access.0);
        self.rpi_matched_qty.append_option(e.rpi_matched_qty.0);
        self.created_ts.append_option(e.created_time.0);
        self.exchange_ts.append_value(exchange_ts);
        self.creation_ts.append_value(provenance.creation_ts);
        self.local_ts.append_value(provenance.local_ts);
        self.source.append_value(provenance.source.as_str());
        self.message_id.append_option(provenance.message_id);
        self.raw_json.append_option(raw_json);
        Ok(())
    }
}
