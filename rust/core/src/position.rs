//! `position` pushes (and `/v5/position/list` rows, which have the same shape) into
//! `position_snapshots`: one row per element.

use serde::Deserialize;

use crate::fields::{Dec, Flag, Int, Millis, Text};
use crate::flat::flat_object;
use crate::row::{Provenance, RowError};
use crate::table;

table! {
    /// Builders of `position_snapshots`. Key: (account_id, category, symbol, position_idx):
    /// hedge mode holds two positions per symbol.
    PositionColumns = "position_snapshots" {
        account_id: Utf8 [required],
        category: Utf8 [required],
        symbol: Utf8 [required],
        position_idx: Int32 [required],
        side: Utf8,
        size: Decimal,
        entry_price: Decimal,
        break_even_price: Decimal,
        mark_price: Decimal,
        position_value: Decimal,
        leverage: Decimal,
        position_balance: Decimal,
        position_im: Decimal,
        position_im_by_mp: Decimal,
        position_mm: Decimal,
        position_mm_by_mp: Decimal,
        liq_price: Decimal,
        bust_price: Decimal,
        take_profit: Decimal,
        stop_loss: Decimal,
        trailing_stop: Decimal,
        unrealised_pnl: Decimal,
        session_avg_price: Decimal,
        /// The option greeks: pushed for option positions only, NULL for the others.
        delta: Decimal,
        gamma: Decimal,
        vega: Decimal,
        theta: Decimal,
        cur_realised_pnl: Decimal,
        cum_realised_pnl: Decimal,
        risk_id: Int64,
        risk_limit_value: Decimal,
        trade_mode: Int32,
        auto_add_margin: Int32,
        tpsl_mode: Utf8,
        position_status: Utf8,
        adl_rank_indicator: Int32,
        is_reduce_only: Bool,
        mmr_sys_updated_ts: TimestampUs,
        leverage_sys_updated_ts: TimestampUs,
        created_ts: TimestampUs,
        /// `openTime`: when the position was opened. Bybit sends `0` for a position without
        /// one, stored as the epoch like every other millisecond field's `0`.
        open_ts: TimestampUs,
        /// The element's `updatedTime`: when the exchange changed this position.
        exchange_ts: TimestampUs [required],
        /// The push envelope's `creationTime` (for REST rows: the response's `time`).
        creation_ts: TimestampUs [required],
        local_ts: TimestampUs [required],
        source: Utf8 [required],
        message_id: Utf8,
        seq: Int64,
        raw_json: Utf8,
    }
}

/// One element of a position push, every documented field; unknown fields are ignored
/// here and kept in `raw_json`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct PositionElement<'a> {
    #[serde(borrow)]
    pub category: Text<'a>,
    #[serde(borrow)]
    pub symbol: Text<'a>,
    #[serde(borrow)]
    pub side: Text<'a>,
    pub size: Dec,
    pub position_idx: Int,
    pub trade_mode: Int,
    pub position_value: Dec,
    pub risk_id: Int,
    pub risk_limit_value: Dec,
    pub entry_price: Dec,
    /// `/v5/position/list` names the entry price `avgPrice`; pushes call it `entryPrice`.
    pub avg_price: Dec,
    pub break_even_price: Dec,
    pub mark_price: Dec,
    pub leverage: Dec,
    pub position_balance: Dec,
    pub auto_add_margin: Int,
    #[serde(rename = "positionIM")]
    pub position_im: Dec,
    #[serde(rename = "positionIMByMp")]
    pub position_im_by_mp: Dec,
    #[serde(rename = "positionMM")]
    pub position_mm: Dec,
    #[serde(rename = "positionMMByMp")]
    pub position_mm_by_mp: Dec,
    pub liq_price: Dec,
    pub bust_price: Dec,
    #[serde(borrow)]
    pub tpsl_mode: Text<'a>,
    /// Older recordings spell `tpslMode` this way. Its own field, not a serde alias: an
    /// element may carry both spellings (an alias would refuse it as a duplicate), and the
    /// column takes the non-empty one.
    #[serde(borrow, rename = "tpSlMode")]
    pub tp_sl_mode: Text<'a>,
    pub take_profit: Dec,
    pub stop_loss: Dec,
    pub trailing_stop: Dec,
    pub unrealised_pnl: Dec,
    pub session_avg_price: Dec,
    pub delta: Dec,
    pub gamma: Dec,
    pub vega: Dec,
    pub theta: Dec,
    pub cur_realised_pnl: Dec,
    pub cum_realised_pnl: Dec,
    #[serde(borrow)]
    pub position_status: Text<'a>,
    pub adl_rank_indicator: Int,
    pub is_reduce_only: Flag,
    pub mmr_sys_updated_time: Millis,
    /// `mmrSysUpdatedTime` as older recordings spell it (see `tp_sl_mode`).
    pub mmr_sys_update_time: Millis,
    pub leverage_sys_updated_time: Millis,
    pub created_time: Millis,
    pub updated_time: Millis,
    /// An integer of milliseconds, where the other times are strings: `Millis` reads both.
    pub open_time: Millis,
    pub seq: Int,
}

// The fields the flat fast path (`flat.rs`) sets, by the names serde reads (those of the
// derive above; a test checks the two lists are the same), each with its reader.
flat_object!(PositionElement, order: position, multiplier: MULTIPLIER, {
    "category" => category: text,
    "symbol" => symbol: text,
    "side" => side: text,
    "size" => size: dec,
    "positionIdx" => position_idx: int,
    "tradeMode" => trade_mode: int,
    "positionValue" => position_value: dec,
    "riskId" => risk_id: int,
    "riskLimitValue" => risk_limit_value: dec,
    "entryPrice" => entry_price: dec,
    "avgPrice" => avg_price: dec,
    "breakEvenPrice" => break_even_price: dec,
    "markPrice" => mark_price: dec,
    "leverage" => leverage: dec,
    "positionBalance" => position_balance: dec,
    "autoAddMargin" => auto_add_margin: int,
    "positionIM" => position_im: dec,
    "positionIMByMp" => position_im_by_mp: dec,
    "positionMM" => position_mm: dec,
    "positionMMByMp" => position_mm_by_mp: dec,
    "liqPrice" => liq_price: dec,
    "bustPrice" => bust_price: dec,
    "tpslMode" => tpsl_mode: text,
    "tpSlMode" => tp_sl_mode: text,
    "takeProfit" => take_profit: dec,
    "stopLoss" => stop_loss: dec,
    "trailingStop" => trailing_stop: dec,
    "unrealisedPnl" => unrealised_pnl: dec,
    "sessionAvgPrice" => session_avg_price: dec,
    "delta" => delta: dec,
    "gamma" => gamma: dec,
    "vega" => vega: dec,
    "theta" => theta: dec,
    "curRealisedPnl" => cur_realised_pnl: dec,
    "cumRealisedPnl" => cum_realised_pnl: dec,
    "positionStatus" => position_status: text,
    "adlRankIndicator" => adl_rank_indicator: int,
    "isReduceOnly" => is_reduce_only: flag,
    "mmrSysUpdatedTime" => mmr_sys_updated_time: millis,
    "mmrSysUpdateTime" => mmr_sys_update_time: millis,
    "leverageSysUpdatedTime" => leverage_sys_updated_time: millis,
    "createdTime" => created_time: millis,
    "updatedTime" => updated_time: millis,
    "openTime" => open_time: millis,
    "seq" => seq: int,
});

/// Under which the position, wallet and coin keys each land in distinct slots (checked at
/// compile time). Found by trying random odd constants until all three tables were free of
/// collisions (about one in a thousand is, for these keys); the one before it collided once
/// `breakEvenPrice`, `openTime`, the old spellings and the greeks came in.
pub(crate) const MULTIPLIER: u64 = 0x1964_4c16_0da3_625d;

/// A flat position's side is `""` on unified accounts and `"None"` on classic ones: both
/// mean "no side", stored as NULL.
fn side<'t>(text: &'t Text<'_>) -> Option<&'t str> {
    text.as_deref().filter(|s| *s != "None")
}

/// An integer for an `Int32` column; out of range is the element's reject.
pub(crate) fn int32(field: &'static str, value: Int) -> Result<Option<i32>, RowError> {
    value
        .0
        .map(|v| i32::try_from(v).map_err(|_| RowError::out_of_range(field, v)))
        .transpose()
}

impl PositionColumns {
    /// Appends one element, or appends nothing and says why.
    ///
    /// `topic_category` is the category a `position.<category>` topic implies, used when the
    /// element does not name its own.
    pub fn append(
        &mut self,
        element: &PositionElement<'_>,
        topic_category: Option<&str>,
        provenance: &Provenance<'_>,
        raw_json: Option<&str>,
    ) -> Result<(), RowError> {
        // Everything that can fail is checked before the first column is touched, so a
        // rejected element leaves no partial row behind.
        let category = element
            .category
            .as_deref()
            .or(topic_category)
            .ok_or(RowError::Missing("category"))?;
        let symbol = element
            .symbol
            .as_deref()
            .ok_or(RowError::Missing("symbol"))?;
        let position_idx =
            int32("positionIdx", element.position_idx)?.ok_or(RowError::Missing("positionIdx"))?;
        let exchange_ts = element
            .updated_time
            .0
            .ok_or(RowError::Missing("updatedTime"))?;
        let trade_mode = int32("tradeMode", element.trade_mode)?;
        let auto_add_margin = int32("autoAddMargin", element.auto_add_margin)?;
        let adl_rank_indicator = int32("adlRankIndicator", element.adl_rank_indicator)?;

        let e = element;
        self.account_id.append_value(provenance.account_id);
        self.category.append_value(category);
        self.symbol.append_value(symbol);
        self.position_idx.append_value(position_idx);
        self.side.append_option(side(&e.side));
        self.size.append_option(e.size.0);
        self.entry_price
            .append_option(e.entry_price.0.or(e.avg_price.0));
        self.break_even_price.append_option(e.break_even_price.0);
        self.mark_price.append_option(e.mark_price.0);
        self.position_value.append_option(e.position_value.0);
        self.leverage.append_option(e.leverage.0);
        self.position_balance.append_option(e.position_balance.0);
        self.position_im.append_option(e.position_im.0);
        self.position_im_by_mp.append_option(e.position_im_by_mp.0);
        self.position_mm.append_option(e.position_mm.0);
        self.position_mm_by_mp.append_option(e.position_mm_by_mp.0);
        self.liq_price.append_option(e.liq_price.0);
        self.bust_price.append_option(e.bust_price.0);
        self.take_profit.append_option(e.take_profit.0);
        self.stop_loss.append_option(e.stop_loss.0);
        self.trailing_stop.append_option(e.trailing_stop.0);
        self.unrealised_pnl.append_option(e.unrealised_pnl.0);
        self.session_avg_price.append_option(e.session_avg_price.0);
        self.delta.append_option(e.delta.0);
        self.gamma.append_option(e.gamma.0);
        self.vega.append_option(e.vega.0);
        self.theta.append_option(e.theta.0);
        self.cur_realised_pnl.append_option(e.cur_realised_pnl.0);
        self.cum_realised_pnl.append_option(e.cum_realised_pnl.0);
        self.risk_id.append_option(e.risk_id.0);
        self.risk_limit_value.append_option(e.risk_limit_value.0);
        self.trade_mode.append_option(trade_mode);
        self.auto_add_margin.append_option(auto_add_margin);
        // Either spelling, the non-empty one (the current spelling if both have a value).
        self.tpsl_mode
            .append_option(e.tpsl_mode.as_deref().or(e.tp_sl_mode.as_deref()));
        self.position_status
            .append_option(e.position_status.as_deref());
        self.adl_rank_indicator.append_option(adl_rank_indicator);
        self.is_reduce_only.append_option(e.is_reduce_only.0);
        self.mmr_sys_updated_ts
            .append_option(e.mmr_sys_updated_time.0.or(e.mmr_sys_update_time.0));
        self.leverage_sys_updated_ts
            .append_option(e.leverage_sys_updated_time.0);
        self.created_ts.append_option(e.created_time.0);
        self.open_ts.append_option(e.open_time.0);
        self.exchange_ts.append_value(exchange_ts);
        self.creation_ts.append_value(provenance.creation_ts);
        self.local_ts.append_value(provenance.local_ts);
        self.source.append_value(provenance.source.as_str());
        self.message_id.append_option(provenance.message_id);
        self.seq.append_option(e.seq.0);
        self.raw_json.append_option(raw_json);
        Ok(())
    }
}

/// A position's identity within an account, and whether its last row had a size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PositionKey {
    pub category: String,
    pub symbol: String,
    pub position_idx: i32,
}

impl PositionColumns {
    /// The keys of the last `rows` rows appended, with whether each is open (size > 0).
    ///
    /// The connection engine uses this to remember which positions an account holds, so a
    /// resync after a gap can ask for the ones the exchange no longer lists (a position closed
    /// during the gap is simply absent from `/v5/position/list`).
    pub fn recent_keys(&self, rows: usize) -> Vec<(PositionKey, bool)> {
        let mut keys = Vec::with_capacity(rows);
        self.for_recent_keys(rows, |category, symbol, position_idx, open| {
            let key = PositionKey {
                category: category.to_owned(),
                symbol: symbol.to_owned(),
                position_idx,
            };
            keys.push((key, open));
        });
        keys
    }

    /// `recent_keys` lent to `f` one by one (category, symbol, position_idx, open), with no
    /// allocation: the engine notes them for every push.
    pub fn for_recent_keys(&self, rows: usize, mut f: impl FnMut(&str, &str, i32, bool)) {
        let len = self.len();
        let first = len.saturating_sub(rows);
        // Appended from `&str`, so always UTF-8.
        fn text(builder: &arrow_array::builder::StringBuilder, i: usize) -> &str {
            let offsets = builder.offsets_slice();
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            std::str::from_utf8(&builder.values_slice()[start..end]).unwrap_or_default()
        }
        let size_valid = |i: usize| {
            self.size
                .validity_slice()
                .is_none_or(|bits| bits[i / 8] & (1 << (i % 8)) != 0)
        };
        let sizes = &self.size.values_slice()[first..len];
        let indexes = &self.position_idx.values_slice()[first..len];
        for (i, (&size, &position_idx)) in (first..).zip(sizes.iter().zip(indexes)) {
            let open = size_valid(i) && size != 0;
            f(
                text(&self.category, i),
                text(&self.symbol, i),
                position_idx,
                open,
            );
        }
    }
}
