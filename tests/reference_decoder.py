"""A slow, obviously-correct pure-Python decoder: the second opinion the Rust core is checked
against (and the orjson + pyarrow baseline of the decode benchmark).

Written from Bybit's documentation, not from the Rust code: field lists and rules are spelled
out here again on purpose, so one misunderstanding cannot hide in both.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation
from typing import Any

import orjson
import pyarrow as pa

DEC = "dec"
INT = "int"
TS = "ts"
STR = "str"
BOOL = "bool"
SIDE = "side"
JSON = "json"

# (Bybit field, column, kind) in the order the columns appear.
POSITION_FIELDS: list[tuple[str, str, str]] = [
    ("side", "side", SIDE),
    ("size", "size", DEC),
    ("entryPrice", "entry_price", DEC),
    ("breakEvenPrice", "break_even_price", DEC),
    ("markPrice", "mark_price", DEC),
    ("positionValue", "position_value", DEC),
    ("leverage", "leverage", DEC),
    ("positionBalance", "position_balance", DEC),
    ("positionIM", "position_im", DEC),
    ("positionIMByMp", "position_im_by_mp", DEC),
    ("positionMM", "position_mm", DEC),
    ("positionMMByMp", "position_mm_by_mp", DEC),
    ("liqPrice", "liq_price", DEC),
    ("bustPrice", "bust_price", DEC),
    ("takeProfit", "take_profit", DEC),
    ("stopLoss", "stop_loss", DEC),
    ("trailingStop", "trailing_stop", DEC),
    ("unrealisedPnl", "unrealised_pnl", DEC),
    ("sessionAvgPrice", "session_avg_price", DEC),
    ("curRealisedPnl", "cur_realised_pnl", DEC),
    ("cumRealisedPnl", "cum_realised_pnl", DEC),
    ("riskId", "risk_id", INT),
    ("riskLimitValue", "risk_limit_value", DEC),
    ("tradeMode", "trade_mode", INT),
    ("autoAddMargin", "auto_add_margin", INT),
    ("tpslMode", "tpsl_mode", STR),
    ("positionStatus", "position_status", STR),
    ("adlRankIndicator", "adl_rank_indicator", INT),
    ("isReduceOnly", "is_reduce_only", BOOL),
    ("mmrSysUpdatedTime", "mmr_sys_updated_ts", TS),
    ("leverageSysUpdatedTime", "leverage_sys_updated_ts", TS),
    ("createdTime", "created_ts", TS),
]

# Older recordings spell these two fields differently; the column takes whichever of the two
# spellings has a value (the current one if both do).
POSITION_OLD_SPELLINGS: dict[str, str] = {
    "tpslMode": "tpSlMode",
    "mmrSysUpdatedTime": "mmrSysUpdateTime",
}

WALLET_COIN_FIELDS: list[tuple[str, str, str]] = [
    ("equity", "equity", DEC),
    ("usdValue", "usd_value", DEC),
    ("walletBalance", "wallet_balance", DEC),
    ("free", "free", DEC),
    ("locked", "locked", DEC),
    ("spotHedgingQty", "spot_hedging_qty", DEC),
    ("borrowAmount", "borrow_amount", DEC),
    ("availableToBorrow", "available_to_borrow", DEC),
    ("availableToWithdraw", "available_to_withdraw", DEC),
    ("accruedInterest", "accrued_interest", DEC),
    ("totalOrderIM", "total_order_im", DEC),
    ("totalPositionIM", "total_position_im", DEC),
    ("totalPositionMM", "total_position_mm", DEC),
    ("unrealisedPnl", "unrealised_pnl", DEC),
    ("cumRealisedPnl", "cum_realised_pnl", DEC),
    ("bonus", "bonus", DEC),
    ("collateralSwitch", "collateral_switch", BOOL),
    ("marginCollateral", "margin_collateral", BOOL),
    ("spotBorrow", "spot_borrow", DEC),
]

WALLET_ACCOUNT_FIELDS: list[tuple[str, str, str]] = [
    ("accountIMRate", "account_im_rate", DEC),
    ("accountMMRate", "account_mm_rate", DEC),
    ("accountIMRateByMp", "account_im_rate_by_mp", DEC),
    ("accountMMRateByMp", "account_mm_rate_by_mp", DEC),
    ("accountLTV", "account_ltv", DEC),
    ("totalEquity", "total_equity", DEC),
    ("totalWalletBalance", "total_wallet_balance", DEC),
    ("totalMarginBalance", "total_margin_balance", DEC),
    ("totalAvailableBalance", "total_available_balance", DEC),
    ("totalPerpUPL", "total_perp_upl", DEC),
    ("totalInitialMargin", "total_initial_margin", DEC),
    ("totalInitialMarginByMp", "total_initial_margin_by_mp", DEC),
    ("totalMaintenanceMargin", "total_maintenance_margin", DEC),
    ("totalMaintenanceMarginByMp", "total_maintenance_margin_by_mp", DEC),
]

# More fields, which the pure-Python benchmark pipeline (benches/pipelines/pure_python.py)
# builds no columns for, since it builds them from the lists above: `openTime` is an integer
# of ms and `colRes` a status code written as a string of digits, where that pipeline types a
# column by its kind's usual JSON type (times are strings, integers numbers); the option
# greeks are absent from the simulator's pushes it reads, where it takes each row's fields in
# one call that expects them all.
POSITION_EXTRA_FIELDS: list[tuple[str, str, str]] = [
    ("delta", "delta", DEC),
    ("gamma", "gamma", DEC),
    ("vega", "vega", DEC),
    ("theta", "theta", DEC),
    ("openTime", "open_ts", TS),
]
WALLET_COIN_EXTRA_FIELDS: list[tuple[str, str, str]] = [("colRes", "col_res", INT)]

# Executions and orders: every documented field but the ones a row needs (category, symbol,
# the id and the time), which `execution_row` and `order_row` read themselves. The nested
# values (`extraFees`, `cumFeeDetail`) are kept as JSON text; `isLeverage` is a "0"/"1" code.
EXECUTION_FIELDS: list[tuple[str, str, str]] = [
    ("orderId", "order_id", STR),
    ("orderLinkId", "order_link_id", STR),
    ("side", "side", STR),
    ("execType", "exec_type", STR),
    ("execPrice", "exec_price", DEC),
    ("execQty", "exec_qty", DEC),
    ("execValue", "exec_value", DEC),
    ("execFee", "exec_fee", DEC),
    ("feeRate", "fee_rate", DEC),
    ("feeCurrency", "fee_currency", STR),
    ("extraFees", "extra_fees", JSON),
    ("execPnl", "exec_pnl", DEC),
    ("isMaker", "is_maker", BOOL),
    ("leavesQty", "leaves_qty", DEC),
    ("closedSize", "closed_size", DEC),
    ("markPrice", "mark_price", DEC),
    ("indexPrice", "index_price", DEC),
    ("underlyingPrice", "underlying_price", DEC),
    ("tradeIv", "trade_iv", DEC),
    ("markIv", "mark_iv", DEC),
    ("orderPrice", "order_price", DEC),
    ("orderQty", "order_qty", DEC),
    ("orderType", "order_type", STR),
    ("stopOrderType", "stop_order_type", STR),
    ("createType", "create_type", STR),
    ("blockTradeId", "block_trade_id", STR),
    ("marketUnit", "market_unit", STR),
    ("isLeverage", "is_leverage", INT),
    ("seq", "seq", INT),
]

ORDER_FIELDS: list[tuple[str, str, str]] = [
    ("orderLinkId", "order_link_id", STR),
    ("parentOrderLinkId", "parent_order_link_id", STR),
    ("blockTradeId", "block_trade_id", STR),
    ("side", "side", STR),
    ("orderType", "order_type", STR),
    ("orderStatus", "order_status", STR),
    ("timeInForce", "time_in_force", STR),
    ("price", "price", DEC),
    ("qty", "qty", DEC),
    ("avgPrice", "avg_price", DEC),
    ("leavesQty", "leaves_qty", DEC),
    ("leavesValue", "leaves_value", DEC),
    ("cumExecQty", "cum_exec_qty", DEC),
    ("cumExecValue", "cum_exec_value", DEC),
    ("cumExecFee", "cum_exec_fee", DEC),
    ("cumFeeDetail", "cum_fee_detail", JSON),
    ("feeCurrency", "fee_currency", STR),
    ("closedPnl", "closed_pnl", DEC),
    ("positionIdx", "position_idx", INT),
    ("reduceOnly", "reduce_only", BOOL),
    ("closeOnTrigger", "close_on_trigger", BOOL),
    ("rejectReason", "reject_reason", STR),
    ("cancelType", "cancel_type", STR),
    ("createType", "create_type", STR),
    ("placeType", "place_type", STR),
    ("stopOrderType", "stop_order_type", STR),
    ("triggerPrice", "trigger_price", DEC),
    ("triggerBy", "trigger_by", STR),
    ("triggerDirection", "trigger_direction", INT),
    ("takeProfit", "take_profit", DEC),
    ("stopLoss", "stop_loss", DEC),
    ("tpslMode", "tpsl_mode", STR),
    ("tpTriggerBy", "tp_trigger_by", STR),
    ("slTriggerBy", "sl_trigger_by", STR),
    ("tpLimitPrice", "tp_limit_price", DEC),
    ("slLimitPrice", "sl_limit_price", DEC),
    ("lastPriceOnCreated", "last_price_on_created", DEC),
    ("smpType", "smp_type", STR),
    ("smpGroup", "smp_group", INT),
    ("smpOrderId", "smp_order_id", STR),
    ("orderIv", "order_iv", DEC),
    ("marketUnit", "market_unit", STR),
    ("isLeverage", "is_leverage", INT),
    ("slippageTolerance", "slippage_tolerance", DEC),
    ("slippageToleranceType", "slippage_tolerance_type", STR),
    ("rpiTakerAccess", "rpi_taker_access", BOOL),
    ("rpiMatchedQty", "rpi_matched_qty", DEC),
    ("createdTime", "created_ts", TS),
]
ORDER_OLD_SPELLINGS: dict[str, str] = {"tpslMode": "tpSlMode"}

# Room for 38 digits and more, so quantize() itself never rounds or overflows.
EXACT = Context(prec=80, traps=[InvalidOperation])
QUANTUM = Decimal("1e-18")
LIMIT = Decimal(10) ** 20
DECIMAL_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,4})?")


class Rejected(Exception):
    """An element that must not become a row."""


def to_decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Rejected(f"not a decimal string: {value!r}")
    if isinstance(value, str) and not DECIMAL_TEXT.fullmatch(value):
        raise Rejected(f"not a decimal: {value!r}")
    number = Decimal(value)
    if number.copy_abs() >= LIMIT or number != number.quantize(QUANTUM, context=EXACT):
        raise Rejected(f"not exact in DECIMAL(38,18): {value!r}")
    return number


def to_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Rejected(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise Rejected(f"not an integer: {value!r}")


def to_ts_us(value: Any) -> int | None:
    ms = to_int(value)
    return None if ms is None else ms * 1000


def to_bool(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise Rejected(f"not a boolean: {value!r}")


def to_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Rejected(f"not a string: {value!r}")
    return value


def to_json(value: Any) -> str | None:
    """A nested value as JSON text (compact, as Bybit writes it); "" and null are NULL."""
    if value is None or value == "":
        return None
    return orjson.dumps(value).decode()


CONVERT = {
    JSON: to_json,
    DEC: to_decimal,
    INT: to_int,
    TS: to_ts_us,
    BOOL: to_bool,
    STR: to_str,
    SIDE: lambda v: None if v == "None" else to_str(v),
}


def convert(
    element: dict[str, Any],
    fields: list[tuple[str, str, str]],
    old_spellings: dict[str, str] | None = None,
) -> dict[str, Any]:
    row = {}
    for key, column, kind in fields:
        value = CONVERT[kind](element.get(key))
        old = (old_spellings or {}).get(key)
        if old is not None:
            # Both spellings must be valid; the current one wins when both have a value.
            older = CONVERT[kind](element.get(old))
            value = older if value is None else value
        row[column] = value
    return row


def position_row(element: Any, topic: str) -> dict[str, Any]:
    if not isinstance(element, dict):
        raise Rejected("element is not an object")
    category = to_str(element.get("category")) or (topic.split(".", 1)[1] if "." in topic else None)
    symbol = to_str(element.get("symbol"))
    position_idx = to_int(element.get("positionIdx"))
    exchange_ts = to_ts_us(element.get("updatedTime"))
    if category is None or symbol is None or position_idx is None or exchange_ts is None:
        raise Rejected("missing required field")
    row = {"category": category, "symbol": symbol, "position_idx": position_idx}
    row.update(convert(element, POSITION_FIELDS + POSITION_EXTRA_FIELDS, POSITION_OLD_SPELLINGS))
    row["exchange_ts"] = exchange_ts
    row["seq"] = to_int(element.get("seq"))
    return row


def topic_category(topic: str) -> str | None:
    """The category a `<topic>.<category>` name implies."""
    return topic.split(".", 1)[1] if "." in topic else None


def ledger_row(
    element: Any,
    topic: str,
    keys: tuple[tuple[str, str], tuple[str, str]],
    fields: list[tuple[str, str, str]],
    old_spellings: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An execution or order row: `keys` are its (Bybit field, column) of the id and the time."""
    if not isinstance(element, dict):
        raise Rejected("element is not an object")
    (id_key, id_column), (time_key, _) = keys
    category = to_str(element.get("category")) or topic_category(topic)
    symbol = to_str(element.get("symbol"))
    identity = to_str(element.get(id_key))
    exchange_ts = to_ts_us(element.get(time_key))
    if category is None or symbol is None or identity is None or exchange_ts is None:
        raise Rejected("missing required field")
    row = {"category": category, "symbol": symbol, id_column: identity}
    row.update(convert(element, fields, old_spellings))
    row["exchange_ts"] = exchange_ts
    return row


def execution_row(element: Any, topic: str) -> dict[str, Any]:
    keys = (("execId", "exec_id"), ("execTime", "exchange_ts"))
    return ledger_row(element, topic, keys, EXECUTION_FIELDS)


def order_row(element: Any, topic: str) -> dict[str, Any]:
    keys = (("orderId", "order_id"), ("updatedTime", "exchange_ts"))
    return ledger_row(element, topic, keys, ORDER_FIELDS, ORDER_OLD_SPELLINGS)


LEDGER = {"execution": ("execution_events", execution_row), "order": ("order_events", order_row)}
LEDGER_CATEGORIES = {"linear", "inverse", "option", "spot"}


def wallet_rows(element: Any, creation_us: int) -> list[dict[str, Any]]:
    if not isinstance(element, dict):
        raise Rejected("element is not an object")
    account_type = to_str(element.get("accountType"))
    if account_type is None:
        raise Rejected("missing accountType")
    totals = convert(element, WALLET_ACCOUNT_FIELDS)
    rows = []
    for coin in element.get("coin") or []:
        name = to_str(coin.get("coin"))
        if name is None:
            raise Rejected("missing coin")
        row = {"account_type": account_type, "coin": name}
        row.update(convert(coin, WALLET_COIN_FIELDS + WALLET_COIN_EXTRA_FIELDS))
        row.update(totals)
        row["exchange_ts"] = creation_us
        rows.append(row)
    return rows


def decode(frames: list[bytes], account_id: str, local_us: int) -> dict[str, list[dict]]:
    """Rows per table as plain Python values (Decimal, int µs, str, bool, None)."""
    out: dict[str, list[dict]] = {
        "position_snapshots": [],
        "wallet_snapshots": [],
        "execution_events": [],
        "order_events": [],
        "rejects": [],
    }
    for frame in frames:
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            out["rejects"].append({"raw": frame})
            continue
        if not isinstance(message, dict) or "op" in message:
            if not isinstance(message, dict):
                out["rejects"].append({"raw": frame})
            continue
        topic = message.get("topic")
        data = message.get("data")
        creation = to_ts_us(message.get("creationTime"))
        if not isinstance(data, list) or creation is None:
            out["rejects"].append({"raw": frame})
            continue
        common = {
            "account_id": account_id,
            "creation_ts": creation,
            "local_ts": local_us,
            "source": "ws",
            "message_id": to_str(message.get("id")),
        }
        for element in data:
            try:
                if topic and topic.startswith("position"):
                    out["position_snapshots"].append({**position_row(element, topic), **common})
                elif topic == "wallet":
                    for row in wallet_rows(element, creation):
                        out["wallet_snapshots"].append({**row, **common})
                elif (
                    topic
                    and topic.split(".", 1)[0] in LEDGER
                    and ("." not in topic or topic_category(topic) in LEDGER_CATEGORIES)
                ):
                    table, read = LEDGER[topic.split(".", 1)[0]]
                    out[table].append({**read(element, topic), **common})
                else:
                    raise Rejected(f"unknown topic {topic!r}")
            except Rejected:
                out["rejects"].append({"raw": element})
    return out


def to_batch(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Rows to an Arrow batch of `schema` (columns missing from the rows are NULL)."""
    columns = {
        field.name: pa.array([row.get(field.name) for row in rows], type=field.type)
        for field in schema
    }
    return pa.RecordBatch.from_pydict(columns, schema=schema)
