"""Every revision of the position, wallet, execution and order examples in Bybit's own docs
(tests/fixtures/bybit-docs, see its README) decodes without a reject, and every field of every
element lands in its column exactly as an independent reading of the JSON says.

The reading here is written from the documentation on purpose (orjson, Python's Decimal and a
camelCase -> column table spelled out below), not from the decoder. Every key of every element
and envelope must be either mapped to a column or named in a "not a column" set with the
reason: a field Bybit adds to its examples fails this test until it is given one or the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

import ingestor
from ingestor import _core

DOCS = Path(__file__).parent / "fixtures" / "bybit-docs"
RECEIVED = datetime(2026, 7, 1, 12, 0, 0, 250000, tzinfo=UTC)
RECEIVED_US = (RECEIVED - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
ACCOUNT = "docs-1"

WS_FILES = ("ws_position.jsonl", "ws_wallet.jsonl", "ws_execution.jsonl", "ws_order.jsonl")
REST_FILES = {
    "rest_position_list.jsonl": "/v5/position/list",
    "rest_wallet_balance.jsonl": "/v5/account/wallet-balance",
    "rest_execution_list.jsonl": "/v5/execution/list",
    "rest_order_realtime.jsonl": "/v5/order/realtime",
}
# The kind of element each REST file's pages list.
REST_KINDS = {
    "rest_position_list.jsonl": "position",
    "rest_wallet_balance.jsonl": "wallet",
    "rest_execution_list.jsonl": "execution",
    "rest_order_realtime.jsonl": "order",
}
TABLES = {
    "position": "position_snapshots",
    "wallet": "wallet_snapshots",
    "execution": "execution_events",
    "order": "order_events",
}


# --- the independent reading: Bybit's rules, value by value ----------------------------------


def dec(value: Any) -> Decimal | None:
    """A decimal string (never a float); "" and null are NULL, not zero."""
    if value is None or value == "":
        return None
    assert isinstance(value, str) and not isinstance(value, bool), value
    return Decimal(value)


def ms(value: Any) -> datetime | None:
    """Milliseconds since the epoch, as a string or (`openTime`) an integer, to UTC."""
    if value is None or value == "":
        return None
    assert isinstance(value, int | str) and not isinstance(value, bool), value
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(value))


def integer(value: Any) -> int | None:
    if value is None or value == "":
        return None
    assert not isinstance(value, bool), value
    return int(value)


def text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    assert isinstance(value, str), value
    return value


def flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    assert isinstance(value, bool), value
    return value


def code(value: Any) -> int | None:
    """`isLeverage`: "0" or "1" as a string (or ""), kept as the integer."""
    if value is None or value == "":
        return None
    assert value in ("0", "1"), value
    return int(value)


def nested(value: Any) -> Any:
    """A nested value (an array or an object) kept as JSON text: "" and null are NULL. The
    column is compared by what its text parses to, and its text is found in the line."""
    if value is None or value == "":
        return None
    assert isinstance(value, list | dict), value
    return value


def side(value: Any) -> str | None:
    """A flat position's side: "" on unified accounts, "None" on classic ones."""
    return None if value == "None" else text(value)


Reader = Callable[[Any], Any]

# Bybit field -> (column, reader). Two fields naming one column are two spellings of it: the
# column takes the first of them (in this order) that has a value.
POSITION: dict[str, tuple[str, Reader]] = {
    "category": ("category", text),
    "symbol": ("symbol", text),
    "positionIdx": ("position_idx", integer),
    "side": ("side", side),
    "size": ("size", dec),
    "entryPrice": ("entry_price", dec),
    # REST's name for the entry price (pushes say `entryPrice`).
    "avgPrice": ("entry_price", dec),
    "breakEvenPrice": ("break_even_price", dec),
    "markPrice": ("mark_price", dec),
    "positionValue": ("position_value", dec),
    "leverage": ("leverage", dec),
    "positionBalance": ("position_balance", dec),
    "positionIM": ("position_im", dec),
    "positionIMByMp": ("position_im_by_mp", dec),
    "positionMM": ("position_mm", dec),
    "positionMMByMp": ("position_mm_by_mp", dec),
    "liqPrice": ("liq_price", dec),
    "bustPrice": ("bust_price", dec),
    "takeProfit": ("take_profit", dec),
    "stopLoss": ("stop_loss", dec),
    "trailingStop": ("trailing_stop", dec),
    "unrealisedPnl": ("unrealised_pnl", dec),
    "sessionAvgPrice": ("session_avg_price", dec),
    "delta": ("delta", dec),
    "gamma": ("gamma", dec),
    "vega": ("vega", dec),
    "theta": ("theta", dec),
    "curRealisedPnl": ("cur_realised_pnl", dec),
    "cumRealisedPnl": ("cum_realised_pnl", dec),
    "riskId": ("risk_id", integer),
    "riskLimitValue": ("risk_limit_value", dec),
    "tradeMode": ("trade_mode", integer),
    "autoAddMargin": ("auto_add_margin", integer),
    "tpslMode": ("tpsl_mode", text),
    # Older recordings' spelling of `tpslMode`.
    "tpSlMode": ("tpsl_mode", text),
    "positionStatus": ("position_status", text),
    "adlRankIndicator": ("adl_rank_indicator", integer),
    "isReduceOnly": ("is_reduce_only", flag),
    "mmrSysUpdatedTime": ("mmr_sys_updated_ts", ms),
    # Older recordings' spelling of `mmrSysUpdatedTime` (the REST examples up to 2023).
    "mmrSysUpdateTime": ("mmr_sys_updated_ts", ms),
    "leverageSysUpdatedTime": ("leverage_sys_updated_ts", ms),
    "createdTime": ("created_ts", ms),
    "openTime": ("open_ts", ms),
    "updatedTime": ("exchange_ts", ms),
    "seq": ("seq", integer),
}

# Position fields that are deliberately no column; each stays in `raw_json`.
POSITION_NOT_COLUMNS: dict[str, str] = {
    # The trailing stop's activation price: only in the first V5 revisions of the REST page
    # (2022-12, marked there as "check whether V5 still has it") and gone from every
    # revision since; Bybit no longer sends it.
    "activePrice": "dropped from the docs in 2023-01",
}

WALLET_ACCOUNT: dict[str, tuple[str, Reader]] = {
    "accountType": ("account_type", text),
    "accountIMRate": ("account_im_rate", dec),
    "accountMMRate": ("account_mm_rate", dec),
    "accountIMRateByMp": ("account_im_rate_by_mp", dec),
    "accountMMRateByMp": ("account_mm_rate_by_mp", dec),
    "accountLTV": ("account_ltv", dec),
    "totalEquity": ("total_equity", dec),
    "totalWalletBalance": ("total_wallet_balance", dec),
    "totalMarginBalance": ("total_margin_balance", dec),
    "totalAvailableBalance": ("total_available_balance", dec),
    "totalPerpUPL": ("total_perp_upl", dec),
    "totalInitialMargin": ("total_initial_margin", dec),
    "totalInitialMarginByMp": ("total_initial_margin_by_mp", dec),
    "totalMaintenanceMargin": ("total_maintenance_margin", dec),
    "totalMaintenanceMarginByMp": ("total_maintenance_margin_by_mp", dec),
}

WALLET_ACCOUNT_NOT_COLUMNS: dict[str, str] = {
    # The coins: each becomes a row of its own, carrying the account's fields.
    "coin": "one row per coin",
}

WALLET_COIN: dict[str, tuple[str, Reader]] = {
    "coin": ("coin", text),
    "equity": ("equity", dec),
    "usdValue": ("usd_value", dec),
    "walletBalance": ("wallet_balance", dec),
    # Classic SPOT accounts only.
    "free": ("free", dec),
    "locked": ("locked", dec),
    "spotHedgingQty": ("spot_hedging_qty", dec),
    "borrowAmount": ("borrow_amount", dec),
    "availableToBorrow": ("available_to_borrow", dec),
    "availableToWithdraw": ("available_to_withdraw", dec),
    "accruedInterest": ("accrued_interest", dec),
    "totalOrderIM": ("total_order_im", dec),
    "totalPositionIM": ("total_position_im", dec),
    "totalPositionMM": ("total_position_mm", dec),
    "unrealisedPnl": ("unrealised_pnl", dec),
    "cumRealisedPnl": ("cum_realised_pnl", dec),
    "bonus": ("bonus", dec),
    "collateralSwitch": ("collateral_switch", flag),
    "marginCollateral": ("margin_collateral", flag),
    # A status code written as a string: "-1" unknown, "0" .. "2".
    "colRes": ("col_res", integer),
    "spotBorrow": ("spot_borrow", dec),
}

EXECUTION: dict[str, tuple[str, Reader]] = {
    "category": ("category", text),
    "symbol": ("symbol", text),
    "execId": ("exec_id", text),
    "orderId": ("order_id", text),
    "orderLinkId": ("order_link_id", text),
    "side": ("side", text),
    "execType": ("exec_type", text),
    "execPrice": ("exec_price", dec),
    "execQty": ("exec_qty", dec),
    "execValue": ("exec_value", dec),
    "execFee": ("exec_fee", dec),
    "feeRate": ("fee_rate", dec),
    "feeCurrency": ("fee_currency", text),
    # Indian GST and the like (2025-06): an array, or "".
    "extraFees": ("extra_fees", nested),
    "execPnl": ("exec_pnl", dec),
    "isMaker": ("is_maker", flag),
    "leavesQty": ("leaves_qty", dec),
    "closedSize": ("closed_size", dec),
    "markPrice": ("mark_price", dec),
    "indexPrice": ("index_price", dec),
    "underlyingPrice": ("underlying_price", dec),
    "tradeIv": ("trade_iv", dec),
    "markIv": ("mark_iv", dec),
    "orderPrice": ("order_price", dec),
    "orderQty": ("order_qty", dec),
    "orderType": ("order_type", text),
    "stopOrderType": ("stop_order_type", text),
    "createType": ("create_type", text),
    "blockTradeId": ("block_trade_id", text),
    "marketUnit": ("market_unit", text),
    "isLeverage": ("is_leverage", code),
    "execTime": ("exchange_ts", ms),
    "seq": ("seq", integer),
}

ORDER: dict[str, tuple[str, Reader]] = {
    "category": ("category", text),
    "symbol": ("symbol", text),
    "orderId": ("order_id", text),
    "orderLinkId": ("order_link_id", text),
    "parentOrderLinkId": ("parent_order_link_id", text),
    "blockTradeId": ("block_trade_id", text),
    "side": ("side", text),
    "orderType": ("order_type", text),
    "orderStatus": ("order_status", text),
    "timeInForce": ("time_in_force", text),
    "price": ("price", dec),
    "qty": ("qty", dec),
    "avgPrice": ("avg_price", dec),
    "leavesQty": ("leaves_qty", dec),
    "leavesValue": ("leaves_value", dec),
    "cumExecQty": ("cum_exec_qty", dec),
    "cumExecValue": ("cum_exec_value", dec),
    "cumExecFee": ("cum_exec_fee", dec),
    # Coin -> fee (linear and spot, 2025-10): an object.
    "cumFeeDetail": ("cum_fee_detail", nested),
    "feeCurrency": ("fee_currency", text),
    "closedPnl": ("closed_pnl", dec),
    "positionIdx": ("position_idx", integer),
    "reduceOnly": ("reduce_only", flag),
    "closeOnTrigger": ("close_on_trigger", flag),
    "rejectReason": ("reject_reason", text),
    "cancelType": ("cancel_type", text),
    "createType": ("create_type", text),
    "placeType": ("place_type", text),
    "stopOrderType": ("stop_order_type", text),
    "triggerPrice": ("trigger_price", dec),
    "triggerBy": ("trigger_by", text),
    "triggerDirection": ("trigger_direction", integer),
    "takeProfit": ("take_profit", dec),
    "stopLoss": ("stop_loss", dec),
    "tpslMode": ("tpsl_mode", text),
    # Older recordings' spelling of `tpslMode`, as for positions.
    "tpSlMode": ("tpsl_mode", text),
    "tpTriggerBy": ("tp_trigger_by", text),
    "slTriggerBy": ("sl_trigger_by", text),
    "tpLimitPrice": ("tp_limit_price", dec),
    "slLimitPrice": ("sl_limit_price", dec),
    "lastPriceOnCreated": ("last_price_on_created", dec),
    "smpType": ("smp_type", text),
    "smpGroup": ("smp_group", integer),
    "smpOrderId": ("smp_order_id", text),
    "orderIv": ("order_iv", dec),
    "marketUnit": ("market_unit", text),
    "isLeverage": ("is_leverage", code),
    "slippageTolerance": ("slippage_tolerance", dec),
    "slippageToleranceType": ("slippage_tolerance_type", text),
    "rpiTakerAccess": ("rpi_taker_access", flag),
    "rpiMatchedQty": ("rpi_matched_qty", dec),
    "createdTime": ("created_ts", ms),
    "updatedTime": ("exchange_ts", ms),
}

# Columns holding a nested value's JSON text.
JSON_COLUMNS = {"extra_fees", "cum_fee_detail"}

# Envelope keys that are no column of a row.
WS_ENVELOPE_NOT_COLUMNS: dict[str, str] = {
    # Which table the push goes to; `position.<category>` also stands in for a missing
    # category (none of these examples lacks one).
    "topic": "routing",
    "data": "the elements",
}
REST_ENVELOPE_NOT_COLUMNS: dict[str, str] = {
    # The answer's status: a non-zero `retCode` adds no rows at all.
    "retCode": "status",
    "retMsg": "status",
    "retExtInfo": "status",
    "result": "holds the elements",
}
REST_RESULT_NOT_COLUMNS: dict[str, str] = {
    "list": "the elements",
    # Paging: where the next page starts.
    "nextPageCursor": "paging",
}

# Columns that come from the envelope or the capture, not from an element's own fields (and
# a wallet row's `exchange_ts`, which is the envelope's time).
PROVENANCE = {"account_id", "creation_ts", "local_ts", "source", "message_id", "raw_json"}


def read_fields(
    element: dict[str, Any],
    mapping: dict[str, tuple[str, Reader]],
    not_columns: dict[str, str],
    where: str,
) -> dict[str, Any]:
    """The columns `element` fills, by `mapping`; every key must be known."""
    unknown = set(element) - set(mapping) - set(not_columns)
    assert not unknown, f"{where}: fields neither mapped to a column nor listed: {unknown}"
    columns: dict[str, Any] = {}
    for key, (column, read) in mapping.items():
        value = read(element.get(key))
        if columns.get(column) is None:
            columns[column] = value
    return columns


# --- the fixtures and what the decoder made of them ------------------------------------------


def duplicate_keys(line: bytes) -> set[str]:
    """Keys an object of `line` holds twice (orjson would quietly keep the last value)."""
    found: set[str] = set()

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in items]
        found.update(key for key in keys if keys.count(key) > 1)
        return dict(items)

    json.loads(line, object_pairs_hook=pairs)
    return found


# The one documented example that repeats a key: the 2022-12 execution push writes
# `"execValue":"8.435","execValue":"0"` (its later revisions: `"execPnl":"0"`). Two values for
# one amount make the element a reject, as any duplicate key does: either would be a guess.
DUPLICATED = {("ws_execution.jsonl", 5): {"execValue"}}


def lines(name: str) -> list[bytes]:
    return [line for line in (DOCS / name).read_bytes().splitlines() if line.strip()]


def cases() -> list[tuple[str, int]]:
    return [(name, i) for name in (*WS_FILES, *REST_FILES) for i in range(len(lines(name)))]


def decoded(name: str, line: bytes) -> dict[str, pa.RecordBatch]:
    if name in REST_FILES:
        return _core.decode_rest(
            line, endpoint=REST_FILES[name], account_id=ACCOUNT, received_at_us=RECEIVED_US
        )
    return ingestor.decode([line], account_id=ACCOUNT, received_at=RECEIVED)


def fnv1a(body: bytes) -> int:
    hash_ = 0xCBF29CE484222325
    for byte in body:
        hash_ = ((hash_ ^ byte) * 0x100000001B3) % 2**64
    return hash_


def expected_rows(name: str, line: bytes) -> tuple[str, list[dict[str, Any]]]:
    """The table and the rows an independent reading of one line gives, every column."""
    document = orjson.loads(line)
    if name in REST_FILES:
        unknown = set(document) - {"time"} - set(REST_ENVELOPE_NOT_COLUMNS)
        assert not unknown, f"{name}: envelope fields neither mapped nor listed: {unknown}"
        result = document["result"]
        unknown = set(result) - {"category"} - set(REST_RESULT_NOT_COLUMNS)
        assert not unknown, f"{name}: result fields neither mapped nor listed: {unknown}"
        elements = result["list"]
        # A REST page's rows carry its own id: `rest:` and the FNV-1a hash of the body.
        common = {
            "creation_ts": ms(document["time"]),
            "source": "rest",
            "message_id": f"rest:{fnv1a(line):016x}",
        }
        page_category = text(result.get("category"))
        kind = REST_KINDS[name]
    else:
        unknown = set(document) - {"id", "creationTime"} - set(WS_ENVELOPE_NOT_COLUMNS)
        assert not unknown, f"{name}: envelope fields neither mapped nor listed: {unknown}"
        elements = document["data"]
        common = {
            "creation_ts": ms(document["creationTime"]),
            "source": "ws",
            "message_id": text(document["id"]),
        }
        topic = document["topic"]
        kind = topic.split(".", 1)[0]
        page_category = topic.split(".", 1)[1] if "." in topic else None
    common |= {"account_id": ACCOUNT, "local_ts": RECEIVED}

    rows = []
    for i, element in enumerate(elements):
        where = f"{name} element {i}"
        if kind in ("position", "execution", "order"):
            mapping = {"position": POSITION, "execution": EXECUTION, "order": ORDER}[kind]
            not_columns = POSITION_NOT_COLUMNS if kind == "position" else {}
            row = read_fields(element, mapping, not_columns, where)
            row["category"] = row["category"] or page_category
            rows.append({**row, **common, "raw_json": element})
            continue
        account = read_fields(element, WALLET_ACCOUNT, WALLET_ACCOUNT_NOT_COLUMNS, where)
        for j, coin in enumerate(element["coin"]):
            row = read_fields(coin, WALLET_COIN, {}, f"{where} coin {j}")
            # A wallet element has no time of its own: the envelope's stands in.
            row |= {**account, **common, "exchange_ts": common["creation_ts"]}
            # The element's JSON once, on its first coin's row; NULL on the others.
            rows.append({**row, "raw_json": element if j == 0 else None})
    return TABLES[kind], rows


# --- the tests ---------------------------------------------------------------------------------


def test_the_fixtures_are_all_there():
    counts = {name: len(lines(name)) for name in (*WS_FILES, *REST_FILES)}
    assert counts == {
        "ws_position.jsonl": 14,
        "ws_wallet.jsonl": 8,
        "ws_execution.jsonl": 12,
        "ws_order.jsonl": 10,
        "rest_position_list.jsonl": 14,
        "rest_wallet_balance.jsonl": 11,
        "rest_execution_list.jsonl": 10,
        "rest_order_realtime.jsonl": 5,
    }


@pytest.mark.parametrize(("name", "index"), cases())
def test_every_line_decodes_without_a_reject(name, index):
    line = lines(name)[index]
    assert duplicate_keys(line) == DUPLICATED.get((name, index), set())
    out = decoded(name, line)
    if (name, index) in DUPLICATED:
        (reject,) = out["rejects"].to_pylist()
        assert "duplicate field `execValue`" in reject["reason"], reject["reason"]
        assert reject["raw"] in line
        assert sum(out[t].num_rows for t in TABLES.values()) == 0
        return
    assert out["rejects"].num_rows == 0, out["rejects"].to_pylist()
    table, rows = expected_rows(name, line)
    assert out[table].num_rows == len(rows) > 0
    for other in set(TABLES.values()) - {table}:
        assert out[other].num_rows == 0, other


@pytest.mark.parametrize(("name", "index"), cases())
def test_every_field_is_the_value_the_json_says(name, index):
    if (name, index) in DUPLICATED:
        pytest.skip("rejected: a key twice (see DUPLICATED)")
    line = lines(name)[index]
    table, want = expected_rows(name, line)
    got = decoded(name, line)[table].to_pylist()
    assert len(got) == len(want)
    for row, expected in zip(got, want, strict=True):
        # Every column is checked: the mapping must know each one the table has.
        assert set(expected) == set(row), set(expected) ^ set(row)
        for column, value in expected.items():
            actual = row[column]
            if column in {"raw_json", *JSON_COLUMNS} and actual is not None:
                assert actual.encode() in line, f"{column} is the value's text exactly"
                actual = orjson.loads(actual)
            assert actual == value, f"{name}:{index + 1} {column}: {actual!r} != {value!r}"
            # Equal is not enough between 0 and False, or a Decimal and an int.
            if value is not None:
                assert type(actual) is type(value), f"{column}: {actual!r}"


def test_the_older_spellings_occur_and_fill_the_columns():
    """The REST examples up to 2023 spell `mmrSysUpdateTime`: they must not leave the column
    to chance (their value is "" there, so the other tests see NULL both ways)."""
    spelled = [line for line in lines("rest_position_list.jsonl") if b'"mmrSysUpdateTime"' in line]
    assert spelled
    document = orjson.loads(spelled[0])
    element = document["result"]["list"][0]
    element.pop("mmrSysUpdatedTime", None)
    element["mmrSysUpdateTime"] = "1672279322668"
    element["tpSlMode"] = element.pop("tpslMode", "Partial")
    out = decoded("rest_position_list.jsonl", orjson.dumps(document))
    row = out["position_snapshots"].to_pylist()[0]
    assert row["mmr_sys_updated_ts"] == datetime(2022, 12, 29, 2, 2, 2, 668000, tzinfo=UTC)
    assert row["tpsl_mode"] == element["tpSlMode"]


def test_rest_errors_raise_and_add_nothing():
    with pytest.raises(ValueError, match="retCode 10004"):
        _core.decode_rest(
            b'{"retCode":10004,"retMsg":"error sign!","result":{},"time":1}',
            endpoint="/v5/position/list",
            account_id=ACCOUNT,
            received_at_us=RECEIVED_US,
        )
    with pytest.raises(ValueError, match="not a REST read"):
        _core.decode_rest(
            b"{}",
            endpoint="/v5/position/closed-pnl",
            account_id=ACCOUNT,
            received_at_us=RECEIVED_US,
        )


def test_the_mappings_cover_every_column():
    schemas = ingestor.schemas()
    position = {column for column, _ in POSITION.values()}
    assert set(schemas["position_snapshots"].names) == position | PROVENANCE
    wallet = {column for column, _ in (*WALLET_ACCOUNT.values(), *WALLET_COIN.values())}
    assert set(schemas["wallet_snapshots"].names) == wallet | PROVENANCE | {"exchange_ts"}
    execution = {column for column, _ in EXECUTION.values()}
    assert set(schemas["execution_events"].names) == execution | PROVENANCE
    order = {column for column, _ in ORDER.values()}
    assert set(schemas["order_events"].names) == order | PROVENANCE


def test_the_nested_values_and_codes_occur():
    """The fixtures hold each shape the new columns must take: else the tests above pass on
    NULLs alone."""
    text = b"".join(line for name in (*WS_FILES, *REST_FILES) for line in lines(name))
    for shape in (b'"extraFees":[{', b'"extraFees":""', b'"cumFeeDetail":{', b'"isLeverage":"0"'):
        assert shape in text, shape


def test_order_history_pages_decode_like_open_order_pages():
    """/v5/order/history answers in the shape of /v5/order/realtime (no example of its own)."""
    line = lines("rest_order_realtime.jsonl")[-1]
    kwargs = {"account_id": ACCOUNT, "received_at_us": RECEIVED_US}
    history = _core.decode_rest(line, endpoint="/v5/order/history", **kwargs)
    realtime = _core.decode_rest(line, endpoint="/v5/order/realtime", **kwargs)
    assert history["order_events"].num_rows == 1
    assert history["order_events"].equals(realtime["order_events"])
