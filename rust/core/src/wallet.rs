//! `wallet` pushes (and `/v5/account/wallet-balance` rows) into `wallet_snapshots`: one row per
//! coin, each carrying its account type's totals.

use serde::Deserialize;

use crate::fields::{Dec, Flag, Int, Text};
use crate::flat::flat_object;
use crate::position::{int32, MULTIPLIER};
use crate::row::{Provenance, RowError};
use crate::table;

table! {
    /// Builders of `wallet_snapshots`. Key: (account_id, account_type, coin).
    WalletColumns = "wallet_snapshots" {
        account_id: Utf8 [required],
        account_type: Utf8 [required],
        coin: Utf8 [required],
        equity: Decimal,
        usd_value: Decimal,
        wallet_balance: Decimal,
        free: Decimal,
        locked: Decimal,
        spot_hedging_qty: Decimal,
        borrow_amount: Decimal,
        available_to_borrow: Decimal,
        /// Empty (NULL) on unified accounts, where `total_available_balance` is the figure.
        available_to_withdraw: Decimal,
        accrued_interest: Decimal,
        total_order_im: Decimal,
        total_position_im: Decimal,
        total_position_mm: Decimal,
        unrealised_pnl: Decimal,
        cum_realised_pnl: Decimal,
        bonus: Decimal,
        collateral_switch: Bool,
        margin_collateral: Bool,
        /// `colRes`, the platform's collateral restriction on the coin: -1 unknown, 0 none,
        /// 1 none but close to the platform's limit, 2 restricted (adding collateral,
        /// switching collateral on and changing the margin mode are refused).
        col_res: Int32,
        spot_borrow: Decimal,
        account_im_rate: Decimal,
        account_mm_rate: Decimal,
        account_im_rate_by_mp: Decimal,
        account_mm_rate_by_mp: Decimal,
        account_ltv: Decimal,
        total_equity: Decimal,
        total_wallet_balance: Decimal,
        total_margin_balance: Decimal,
        total_available_balance: Decimal,
        total_perp_upl: Decimal,
        total_initial_margin: Decimal,
        total_initial_margin_by_mp: Decimal,
        total_maintenance_margin: Decimal,
        total_maintenance_margin_by_mp: Decimal,
        /// A wallet element has no time of its own: this is the envelope's `creationTime`.
        exchange_ts: TimestampUs [required],
        creation_ts: TimestampUs [required],
        local_ts: TimestampUs [required],
        source: Utf8 [required],
        message_id: Utf8,
        /// The whole account-type element exactly as received, once per element: on the row
        /// of its first coin only, NULL on its other coins' rows (and on every row without
        /// `keep_raw`). An element's text is the one row of its (account_id, message_id,
        /// account_type) with `raw_json IS NOT NULL`.
        raw_json: Utf8,
    }
}

/// One element of a wallet push: an account type's totals and its coins.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct WalletElement<'a> {
    #[serde(borrow)]
    pub account_type: Text<'a>,
    #[serde(rename = "accountIMRate")]
    pub account_im_rate: Dec,
    #[serde(rename = "accountMMRate")]
    pub account_mm_rate: Dec,
    #[serde(rename = "accountIMRateByMp")]
    pub account_im_rate_by_mp: Dec,
    #[serde(rename = "accountMMRateByMp")]
    pub account_mm_rate_by_mp: Dec,
    #[serde(rename = "accountLTV")]
    pub account_ltv: Dec,
    pub total_equity: Dec,
    pub total_wallet_balance: Dec,
    pub total_margin_balance: Dec,
    pub total_available_balance: Dec,
    #[serde(rename = "totalPerpUPL")]
    pub total_perp_upl: Dec,
    pub total_initial_margin: Dec,
    pub total_initial_margin_by_mp: Dec,
    pub total_maintenance_margin: Dec,
    pub total_maintenance_margin_by_mp: Dec,
    #[serde(borrow)]
    pub coin: Vec<WalletCoin<'a>>,
}

/// One coin of a wallet element.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct WalletCoin<'a> {
    #[serde(borrow)]
    pub coin: Text<'a>,
    pub equity: Dec,
    pub usd_value: Dec,
    pub wallet_balance: Dec,
    pub free: Dec,
    pub locked: Dec,
    pub spot_hedging_qty: Dec,
    pub borrow_amount: Dec,
    pub available_to_borrow: Dec,
    pub available_to_withdraw: Dec,
    pub accrued_interest: Dec,
    #[serde(rename = "totalOrderIM")]
    pub total_order_im: Dec,
    #[serde(rename = "totalPositionIM")]
    pub total_position_im: Dec,
    #[serde(rename = "totalPositionMM")]
    pub total_position_mm: Dec,
    pub unrealised_pnl: Dec,
    pub cum_realised_pnl: Dec,
    pub bonus: Dec,
    pub collateral_switch: Flag,
    pub margin_collateral: Flag,
    /// A status code sent as a string (`"-1"` .. `"2"`): read as an integer, which takes a
    /// JSON number too should Bybit change the type, as it did for other codes.
    pub col_res: Int,
    pub spot_borrow: Dec,
}

// The fields the flat fast path (`flat.rs`) sets, by the names serde reads (those of the
// derives above; a test checks the lists are the same), each with its reader. Both take the
// position table's multiplier: no two wallet or coin keys share a slot under it either
// (checked at compile time).
flat_object!(WalletElement, order: wallet, multiplier: MULTIPLIER, {
    "accountType" => account_type: text,
    "accountIMRate" => account_im_rate: dec,
    "accountMMRate" => account_mm_rate: dec,
    "accountIMRateByMp" => account_im_rate_by_mp: dec,
    "accountMMRateByMp" => account_mm_rate_by_mp: dec,
    "accountLTV" => account_ltv: dec,
    "totalEquity" => total_equity: dec,
    "totalWalletBalance" => total_wallet_balance: dec,
    "totalMarginBalance" => total_margin_balance: dec,
    "totalAvailableBalance" => total_available_balance: dec,
    "totalPerpUPL" => total_perp_upl: dec,
    "totalInitialMargin" => total_initial_margin: dec,
    "totalInitialMarginByMp" => total_initial_margin_by_mp: dec,
    "totalMaintenanceMargin" => total_maintenance_margin: dec,
    "totalMaintenanceMarginByMp" => total_maintenance_margin_by_mp: dec,
    "coin" => coin: objects,
});

flat_object!(WalletCoin, order: coin, multiplier: MULTIPLIER, {
    "coin" => coin: text,
    "equity" => equity: dec,
    "usdValue" => usd_value: dec,
    "walletBalance" => wallet_balance: dec,
    "free" => free: dec,
    "locked" => locked: dec,
    "spotHedgingQty" => spot_hedging_qty: dec,
    "borrowAmount" => borrow_amount: dec,
    "availableToBorrow" => available_to_borrow: dec,
    "availableToWithdraw" => available_to_withdraw: dec,
    "accruedInterest" => accrued_interest: dec,
    "totalOrderIM" => total_order_im: dec,
    "totalPositionIM" => total_position_im: dec,
    "totalPositionMM" => total_position_mm: dec,
    "unrealisedPnl" => unrealised_pnl: dec,
    "cumRealisedPnl" => cum_realised_pnl: dec,
    "bonus" => bonus: dec,
    "collateralSwitch" => collateral_switch: flag,
    "marginCollateral" => margin_collateral: flag,
    "colRes" => col_res: int,
    "spotBorrow" => spot_borrow: dec,
});

impl WalletColumns {
    /// Appends one row per coin of the element, or nothing and says why. Returns the rows
    /// appended. `raw_json` goes on the first coin's row only: the element's text is kept
    /// once, not once per coin (an element without coins makes no row, so keeps none).
    pub fn append(
        &mut self,
        element: &WalletElement<'_>,
        provenance: &Provenance<'_>,
        raw_json: Option<&str>,
    ) -> Result<usize, RowError> {
        // Checked before any column is touched, so a rejected element leaves no partial rows.
        let account_type = element
            .account_type
            .as_deref()
            .ok_or(RowError::Missing("accountType"))?;
        for c in &element.coin {
            if c.coin.0.is_none() {
                return Err(RowError::Missing("coin[].coin"));
            }
            int32("coin[].colRes", c.col_res)?;
        }

        let a = element;
        let mut raw_json = raw_json;
        for c in &element.coin {
            self.account_id.append_value(provenance.account_id);
            self.account_type.append_value(account_type);
            self.coin.append_option(c.coin.as_deref());
            self.equity.append_option(c.equity.0);
            self.usd_value.append_option(c.usd_value.0);
            self.wallet_balance.append_option(c.wallet_balance.0);
            self.free.append_option(c.free.0);
            self.locked.append_option(c.locked.0);
            self.spot_hedging_qty.append_option(c.spot_hedging_qty.0);
            self.borrow_amount.append_option(c.borrow_amount.0);
            self.available_to_borrow
                .append_option(c.available_to_borrow.0);
            self.available_to_withdraw
                .append_option(c.available_to_withdraw.0);
            self.accrued_interest.append_option(c.accrued_interest.0);
            self.total_order_im.append_option(c.total_order_im.0);
            self.total_position_im.append_option(c.total_position_im.0);
            self.total_position_mm.append_option(c.total_position_mm.0);
            self.unrealised_pnl.append_option(c.unrealised_pnl.0);
            self.cum_realised_pnl.append_option(c.cum_realised_pnl.0);
            self.bonus.append_option(c.bonus.0);
            self.collateral_switch.append_option(c.collateral_switch.0);
            self.margin_collateral.append_option(c.margin_collateral.0);
            // In range: checked above.
            self.col_res.append_option(c.col_res.0.map(|v| v as i32));
            self.spot_borrow.append_option(c.spot_borrow.0);
            self.account_im_rate.append_option(a.account_im_rate.0);
            self.account_mm_rate.append_option(a.account_mm_rate.0);
            self.account_im_rate_by_mp
                .append_option(a.account_im_rate_by_mp.0);
            self.account_mm_rate_by_mp
                .append_option(a.account_mm_rate_by_mp.0);
            self.account_ltv.append_option(a.account_ltv.0);
            self.total_equity.append_option(a.total_equity.0);
            self.total_wallet_balance
                .append_option(a.total_wallet_balance.0);
            self.total_margin_balance
                .append_option(a.total_margin_balance.0);
            self.total_available_balance
                .append_option(a.total_available_balance.0);
            self.total_perp_upl.append_option(a.total_perp_upl.0);
            self.total_initial_margin
                .append_option(a.total_initial_margin.0);
            self.total_initial_margin_by_mp
                .append_option(a.total_initial_margin_by_mp.0);
            self.total_maintenance_margin
                .append_option(a.total_maintenance_margin.0);
            self.total_maintenance_margin_by_mp
                .append_option(a.total_maintenance_margin_by_mp.0);
            self.exchange_ts.append_value(provenance.creation_ts);
            self.creation_ts.append_value(provenance.creation_ts);
            self.local_ts.append_value(provenance.local_ts);
            self.source.append_value(provenance.source.as_str());
            self.message_id.append_option(provenance.message_id);
            self.raw_json.append_option(raw_json.take());
        }
        Ok(element.coin.len())
    }
}
