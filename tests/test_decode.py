"""`ingestor.decode` on Bybit's documented pushes, on control frames and on hostile input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

import ingestor

FIXTURES = Path(__file__).parent / "fixtures"
POSITION_PUSH = (FIXTURES / "position_push.json").read_bytes()
WALLET_PUSH = (FIXTURES / "wallet_push.json").read_bytes()
# Bybit's documented pushes with the nested fee values: a linear fill with `extraFees`, an
# option order with `cumFeeDetail`.
EXECUTION_PUSH = next(
    line
    for line in (FIXTURES / "bybit-docs" / "ws_execution.jsonl").read_bytes().splitlines()
    if b'"feeCurrency":"USDT"' in line and b"XRPUSDT" in line
)
ORDER_PUSH = next(
    line
    for line in (FIXTURES / "bybit-docs" / "ws_order.jsonl").read_bytes().splitlines()
    if b'"rpiMatchedQty"' in line and b"ETH-30DEC22-1400-C" in line
)
TABLES = {"position_snapshots", "wallet_snapshots", "execution_events", "order_events", "rejects"}
RECEIVED = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def decode(frames, **kwargs):
    kwargs.setdefault("account_id", "acct-1")
    kwargs.setdefault("received_at", RECEIVED)
    return ingestor.decode(frames, **kwargs)


def only_row(batch: pa.RecordBatch) -> dict:
    rows = batch.to_pylist()
    assert len(rows) == 1
    return rows[0]


def test_result_has_exactly_the_frame_tables_with_the_store_schemas():
    out = decode([])
    assert set(out) == TABLES == set(ingestor.TABLES)
    assert set(ingestor.schemas()) > TABLES
    schemas = ingestor.schemas()
    for name, batch in out.items():
        assert isinstance(batch, pa.RecordBatch)
        assert batch.num_rows == 0
        assert batch.schema == schemas[name]


def test_documented_position_push():
    row = only_row(decode([POSITION_PUSH])["position_snapshots"])
    assert row["account_id"] == "acct-1"
    assert (row["category"], row["symbol"], row["position_idx"]) == ("linear", "BTCUSDT", 2)
    assert row["side"] is None  # "" is a flat position
    assert row["mark_price"] == Decimal("28184.5")
    assert row["cum_realised_pnl"] == Decimal("-25.06579337")
    assert row["risk_limit_value"] == Decimal("2000000")
    assert row["size"] == 0 and row["size"] is not None
    assert row["liq_price"] is None and row["bust_price"] is None  # "" is NULL, not 0
    assert row["tpsl_mode"] == "Full" and row["position_status"] == "Normal"
    assert row["is_reduce_only"] is False
    assert row["seq"] == 8327597863
    assert row["exchange_ts"] == datetime(2023, 10, 19, 2, 25, 17, 38000, tzinfo=UTC)
    assert row["creation_ts"] == datetime(2023, 10, 19, 2, 25, 17, 44000, tzinfo=UTC)
    assert row["created_ts"] == datetime(2023, 9, 11, 3, 21, 36, 913000, tzinfo=UTC)
    assert row["local_ts"] == RECEIVED
    assert row["source"] == "ws"
    assert row["message_id"] == "1003076014fb7eedb-c7e6-45d6-a8c1-270f0169171a"
    element = orjson.loads(POSITION_PUSH)["data"][0]
    assert orjson.loads(row["raw_json"]) == element


def test_documented_wallet_push_one_row_per_coin():
    rows = decode([WALLET_PUSH])["wallet_snapshots"].to_pylist()
    assert [r["coin"] for r in rows] == ["BTC", "USDT"]
    btc, usdt = rows
    assert btc["wallet_balance"] == Decimal("0.00102964")
    assert btc["available_to_withdraw"] == Decimal("0.00102964")
    assert usdt["available_to_withdraw"] is None  # "" on unified accounts
    assert usdt["total_position_im"] == Decimal("127.8573")
    assert btc["total_order_im"] is None
    for row in rows:
        assert row["account_type"] == "UNIFIED"
        assert row["total_equity"] == Decimal("10262.91335023")
        assert row["total_available_balance"] == Decimal("9556.6056555")
        assert row["exchange_ts"] == row["creation_ts"]
        assert row["collateral_switch"] is True
    # The element's JSON exactly, once: on its first coin's row, NULL on the other.
    element = WALLET_PUSH[WALLET_PUSH.index(b'"data":[') + 8 : WALLET_PUSH.rindex(b"]")]
    assert [r["raw_json"] for r in rows] == [element.decode(), None]


def test_wallet_raw_json_is_kept_once_per_element_not_per_coin():
    elements = [
        b'{"accountType":"UNIFIED","totalEquity":"10","coin":'
        b'[{"coin":"BTC","equity":"1"},{"coin":"ETH"},{"coin":"USDT","equity":"3"}]}',
        b'{"accountType":"FUND","coin":[]}',
        b'{"accountType":"CONTRACT","coin":[{"coin":"USDC"},{"coin":"SOL","equity":"5"}]}',
    ]
    frame = b'{"id":"w1","topic":"wallet","creationTime":7,"data":[%s]}' % b",".join(elements)
    out = decode([frame])
    assert out["rejects"].num_rows == 0
    rows = out["wallet_snapshots"].to_pylist()
    assert [(r["account_type"], r["coin"]) for r in rows] == [
        ("UNIFIED", "BTC"),
        ("UNIFIED", "ETH"),
        ("UNIFIED", "USDT"),
        ("CONTRACT", "USDC"),
        ("CONTRACT", "SOL"),
    ]
    unified, _, contract = (e.decode() for e in elements)
    assert [r["raw_json"] for r in rows] == [unified, None, None, contract, None]
    # Repeated per coin, the raw text would be 3x and 2x the elements' own bytes.
    kept = sum(len(r["raw_json"].encode()) for r in rows if r["raw_json"] is not None)
    assert kept == len(elements[0]) + len(elements[2])
    # Each element's JSON back by its key: the one row of it with raw_json.
    by_element = {
        (r["message_id"], r["account_id"], r["account_type"]): r["raw_json"]
        for r in rows
        if r["raw_json"] is not None
    }
    assert by_element == {
        ("w1", "acct-1", "UNIFIED"): unified,
        ("w1", "acct-1", "CONTRACT"): contract,
    }
    bare = decode([frame], keep_raw=False)["wallet_snapshots"]
    assert bare.column("raw_json").null_count == bare.num_rows == 5


def test_decimals_never_pass_through_floats():
    push = orjson.loads(POSITION_PUSH)
    push["data"][0]["size"] = "0.1"
    push["data"][0]["entryPrice"] = "99999999999999999999.999999999999999999"
    push["data"][0]["unrealisedPnl"] = "-0.000000000000000001"
    row = only_row(decode([orjson.dumps(push)])["position_snapshots"])
    assert row["size"] == Decimal("0.1")
    assert row["entry_price"] == Decimal("99999999999999999999.999999999999999999")
    assert row["unrealised_pnl"] == Decimal("-1e-18")


def test_str_frames_and_unknown_fields_are_fine():
    push = orjson.loads(POSITION_PUSH)
    push["data"][0]["someFieldBybitAddsNextYear"] = {"nested": [1, 2]}
    push["newEnvelopeField"] = True
    frame = orjson.dumps(push).decode()
    row = only_row(decode([frame])["position_snapshots"])
    assert "someFieldBybitAddsNextYear" in row["raw_json"]


def test_flat_side_none_on_classic_accounts_is_null():
    push = orjson.loads(POSITION_PUSH)
    push["data"][0]["side"] = "None"
    push["data"].append({**push["data"][0], "side": "Sell", "positionIdx": 1})
    rows = decode([orjson.dumps(push)])["position_snapshots"].to_pylist()
    assert [r["side"] for r in rows] == [None, "Sell"]


def test_control_frames_produce_no_rows():
    frames = [
        b'{"success":true,"ret_msg":"","op":"auth","conn_id":"c1"}',
        b'{"success":true,"ret_msg":"","op":"subscribe","conn_id":"c1","req_id":"s1"}',
        b'{"req_id":"p1","op":"pong","args":["1697682317044"],"conn_id":"c1"}',
    ]
    out = decode(frames)
    assert all(batch.num_rows == 0 for batch in out.values())


def test_keep_raw_false_leaves_raw_json_null():
    row = only_row(decode([POSITION_PUSH], keep_raw=False)["position_snapshots"])
    assert row["raw_json"] is None


def test_received_at_must_be_aware_and_defaults_to_now():
    with pytest.raises(ValueError, match="timezone-aware"):
        decode([POSITION_PUSH], received_at=datetime(2026, 1, 1))
    plus_two = timezone(timedelta(hours=2))
    row = only_row(
        decode([POSITION_PUSH], received_at=RECEIVED.astimezone(plus_two))["position_snapshots"]
    )
    assert row["local_ts"] == RECEIVED
    before = datetime.now(UTC)
    row = only_row(ingestor.decode([POSITION_PUSH], account_id="a")["position_snapshots"])
    assert before - timedelta(seconds=1) <= row["local_ts"] <= datetime.now(UTC)


def test_wrong_argument_types_are_clear_errors():
    with pytest.raises(TypeError, match="bytes or str"):
        decode([123])
    with pytest.raises(ValueError, match="account_id"):
        ingestor.decode([POSITION_PUSH], account_id="")


def test_calls_in_a_row_share_nothing_but_room():
    """Each call's decoder is kept for the next one's buffers, never for its rows."""
    # A call that fails part way leaves its decoded rows behind it, not in the next call.
    with pytest.raises(TypeError):
        decode([POSITION_PUSH, WALLET_PUSH, 123])
    assert all(batch.num_rows == 0 for batch in decode([]).values())

    # The kept decoder serves only calls with the same options.
    def raw_json(**options):
        return only_row(decode([POSITION_PUSH], **options)["position_snapshots"])["raw_json"]

    assert [raw_json() is None, raw_json(keep_raw=False) is None, raw_json() is None] == [
        False,
        True,
        False,
    ]

    # An iterator that decodes on its own while being read: each call gets its own rows.
    inner: list[dict] = []

    def frames():
        yield POSITION_PUSH
        inner.append(decode([WALLET_PUSH], account_id="inner"))
        yield POSITION_PUSH

    outer = decode(frames())
    assert outer["position_snapshots"].num_rows == 2
    assert outer["wallet_snapshots"].num_rows == 0
    assert inner[0]["position_snapshots"].num_rows == 0
    assert set(inner[0]["wallet_snapshots"]["account_id"].to_pylist()) == {"inner"}


def hostile_frames() -> list[tuple[bytes, str]]:
    """(frame, a word its reject reason must contain)."""
    element = orjson.loads(POSITION_PUSH)["data"][0]

    def push(**changes):
        return orjson.dumps(
            {"id": "h", "topic": "position", "creationTime": 1, "data": [{**element, **changes}]}
        )

    def ledger(topic, **changes):
        """An execution or order push with `changes` (None removes a field)."""
        base = EXECUTION_PUSH if topic.startswith("execution") else ORDER_PUSH
        frame = orjson.loads(base)
        fields = {**frame["data"][0], **changes}
        frame["data"] = [{k: v for k, v in fields.items() if v is not None}]
        return orjson.dumps({**frame, "topic": topic})

    return [
        (b"", "valid frame"),
        (b"{", "valid frame"),
        (b"\x00\x01\x02", "valid frame"),
        (b"\xff\xfe\xfd", "UTF-8"),
        (b'{"topic":"position","creationTime":1,"data":["\xc3\x28"]}', "UTF-8"),
        (b"[" * 100_000, "valid frame"),
        (b'{"a":' * 300 + b"1" + b"}" * 300, "neither"),
        (b"null", "valid frame"),
        (b"{}", "neither"),
        (b'"position"', "valid frame"),
        (b'{"topic":"orderbook.50.BTCUSDT","creationTime":1,"data":[]}', "unknown topic"),
        (b'{"topic":"position","data":[]}', "creationTime"),
        (b'{"topic":"position","creationTime":1}', "data"),
        (b'{"topic":"position","creationTime":1,"data":"x"}', "valid frame"),
        (b'{"topic":"position","creationTime":1e3,"data":[]}', "creationTime"),
        (b'{"topic":"position","creationTime":1,"data":[[]]}', "element 0"),
        (push(symbol=""), "symbol"),
        (push(positionIdx="one"), "positionIdx"),
        (push(size="1.0000000000000000001"), "18 decimal"),
        (push(size="123456789012345678901"), "38 digits"),
        (push(size="NaN"), "not a decimal"),
        (push(size="1,5"), "not a decimal"),
        (push(markPrice=28184.5), "exactly"),
        (push(isReduceOnly="yes"), "boolean"),
        (push(updatedTime="yesterday"), "updatedTime"),
        (push(seq="18446744073709551616"), "seq"),
        (ledger("execution", execId=""), "execId"),
        (ledger("execution", execTime=None), "execTime"),
        (ledger("execution", execFee=0.5), "exactly"),
        (ledger("execution", isMaker="0"), "boolean"),
        (ledger("execution.spot", category="", symbol=""), "symbol"),
        (ledger("order", orderId=""), "orderId"),
        (ledger("order", updatedTime=""), "updatedTime"),
        (ledger("order", category=""), "category"),
        (ledger("order", smpGroup="x"), "smpGroup"),
        (ledger("order", positionIdx=2**40), "positionIdx"),
        (b'{"topic":"execution.fast","creationTime":1,"data":[]}', "not captured"),
        (b'{"topic":"wallet","creationTime":1,"data":[{"coin":[]}]}', "accountType"),
        (
            b'{"topic":"wallet","creationTime":1,"data":[{"accountType":"UNIFIED","coin":5}]}',
            "coin",
        ),
        (b'{"topic":"position","creationTime":1,"data":[' + b"1," * 10 + b"}", "valid frame"),
    ]


def test_hostile_frames_all_land_in_rejects_and_spare_the_good_ones():
    cases = hostile_frames()
    good = [POSITION_PUSH, WALLET_PUSH, EXECUTION_PUSH, ORDER_PUSH]
    mixed: list[bytes] = []
    for frame, _ in cases:
        mixed.extend([frame, *good])
    out = decode(mixed)
    clean = decode(good * len(cases))
    for table in TABLES - {"rejects"}:
        assert out[table].equals(clean[table]), table
    rejects = out["rejects"].to_pylist()
    assert len(rejects) == len(cases)
    for reject, (frame, word) in zip(rejects, cases, strict=True):
        assert word in reject["reason"], (frame[:60], reject["reason"])
        assert reject["account_id"] == "acct-1" and reject["local_ts"] == RECEIVED
        # The whole frame, or for an element error the element, exactly as received.
        assert reject["raw"] == frame or reject["raw"] in frame


def test_oversize_frames_are_refused_unread():
    limit = 2048
    frame = b'{"topic":"wallet","creationTime":1,"data":[' + b" " * 5000 + b"]}"
    # As bytes, and as str (which is known to be UTF-8 and takes its own way in).
    for oversize in (frame, frame.decode()):
        out = decode([oversize, POSITION_PUSH], max_frame_bytes=limit)
        (reject,) = out["rejects"].to_pylist()
        assert "exceeds the 2048-byte limit" in reject["reason"]
        assert reject["raw"] == frame[:limit]
        assert out["position_snapshots"].num_rows == 1


def test_documented_execution_push():
    row = only_row(decode([EXECUTION_PUSH])["execution_events"])
    assert (row["category"], row["symbol"]) == ("linear", "XRPUSDT")
    assert row["exec_id"] == "7e2ae69c-4edf-5800-a352-893d52b446aa"
    assert row["exec_type"] == "Trade" and row["side"] == "Sell"
    assert row["exec_price"] == Decimal("0.3374") and row["exec_qty"] == Decimal("25")
    assert row["exec_fee"] == Decimal("0.005061") and row["fee_rate"] == Decimal("0.0006")
    assert row["exec_pnl"] == 0 and row["exec_pnl"] is not None
    assert row["order_link_id"] is None and row["trade_iv"] is None  # "" is NULL, not 0
    assert row["is_maker"] is False and row["is_leverage"] == 0
    assert row["seq"] == 4688002127
    assert row["exchange_ts"] == datetime(2022, 12, 30, 1, 36, 14, 443000, tzinfo=UTC)
    assert row["creation_ts"] == datetime(2022, 12, 30, 1, 36, 14, 455000, tzinfo=UTC)
    assert row["source"] == "ws" and row["local_ts"] == RECEIVED
    assert row["message_id"] == "592324803b2785-26fa-4214-9963-bdd4727f07be"
    fees = '[{"feeCoin":"USDT","feeType":"GST","subFeeType":"IND_GST","feeRate":"0.0000675",'
    assert row["extra_fees"] == fees + '"fee":"0.006403779"}]'
    assert orjson.loads(row["raw_json"]) == orjson.loads(EXECUTION_PUSH)["data"][0]


def test_documented_order_push():
    row = only_row(decode([ORDER_PUSH])["order_events"])
    assert (row["category"], row["symbol"]) == ("option", "ETH-30DEC22-1400-C")
    assert row["order_status"] == "Filled" and row["time_in_force"] == "IOC"
    assert row["price"] == Decimal("72.5") and row["avg_price"] == Decimal("75")
    assert row["cum_exec_fee"] == Decimal("0.358635")
    assert row["leaves_qty"] is None and row["trigger_price"] is None  # "" is NULL
    assert row["cum_fee_detail"] == '{"MNT":"0.00242968"}'
    assert row["position_idx"] == 0 and row["smp_group"] == 0 and row["trigger_direction"] == 0
    assert row["reduce_only"] is False and row["rpi_taker_access"] is False
    assert row["rpi_matched_qty"] == 0 and row["rpi_matched_qty"] is not None
    assert row["created_ts"] == datetime(2022, 12, 30, 1, 37, 42, 444000, tzinfo=UTC)
    assert row["exchange_ts"] == datetime(2022, 12, 30, 1, 37, 42, 457000, tzinfo=UTC)


def ledger_push(topic: str, *elements: dict) -> bytes:
    return orjson.dumps({"id": "L", "topic": topic, "creationTime": 1, "data": list(elements)})


EXEC = {"category": "linear", "symbol": "BTCUSDT", "execId": "e", "execTime": "1"}
ORDER = {"category": "linear", "symbol": "BTCUSDT", "orderId": "o", "updatedTime": "1"}


def test_ledger_decimals_are_exact_and_empty_is_null():
    tiny = "0.000000000000000001"
    big = "12345678901234567890.123456789012345678"
    out = decode(
        [
            ledger_push("execution", {**EXEC, "execFee": f"-{tiny}", "execValue": big}),
            ledger_push("order", {**ORDER, "cumExecFee": tiny, "price": "", "isLeverage": ""}),
        ]
    )
    execution = only_row(out["execution_events"])
    assert execution["exec_fee"] == -Decimal(tiny)
    assert execution["exec_value"] == Decimal(big)
    assert execution["exec_price"] is None and execution["extra_fees"] is None
    order = only_row(out["order_events"])
    assert order["cum_exec_fee"] == Decimal(tiny)
    assert order["price"] is None and order["is_leverage"] is None
    assert order["cum_fee_detail"] is None


def test_ledger_elements_missing_what_a_row_needs_are_rejected_alone():
    frame = ledger_push(
        "execution.inverse",
        {**EXEC, "category": ""},
        {**EXEC, "execId": ""},
        {k: v for k, v in EXEC.items() if k != "execTime"},
    )
    out = decode([frame, ledger_push("order", {**ORDER, "orderId": None}, ORDER)])
    rows = out["execution_events"].to_pylist()
    # The topic's category stands in for the element's missing one.
    assert [r["category"] for r in rows] == ["inverse"]
    assert out["order_events"].num_rows == 1
    reasons = [r["reason"] for r in out["rejects"].to_pylist()]
    assert len(reasons) == 3
    assert "execution.inverse element 1" in reasons[0] and "`execId`" in reasons[0]
    assert "execution.inverse element 2" in reasons[1] and "`execTime`" in reasons[1]
    assert "order element 0" in reasons[2] and "`orderId`" in reasons[2]


def test_order_tpsl_mode_takes_either_spelling():
    out = decode(
        [
            ledger_push(
                "order",
                {**ORDER, "tpslMode": "Full"},
                {**ORDER, "tpSlMode": "Partial"},
                {**ORDER, "tpslMode": "", "tpSlMode": "Partial"},
                {**ORDER, "tpslMode": "Full", "tpSlMode": ""},
                ORDER,
            )
        ]
    )
    modes = out["order_events"].column("tpsl_mode").to_pylist()
    assert modes == ["Full", "Partial", "Partial", "Full", None]


def test_nested_values_are_kept_as_their_exact_text():
    spaced = b'[ {"feeCoin" : "USDT", "fee":"0.1"} ,{"fee":"0.2"}]'
    escaped = b'{"MNT":"0.1","\\u0055SDT":"0.2"}'
    frames = [
        b'{"topic":"execution","creationTime":1,"data":[{"category":"spot","symbol":"X",'
        b'"execId":"e","execTime":"1","extraFees":' + spaced + b"}]}",
        b'{"topic":"order","creationTime":1,"data":[{"category":"spot","symbol":"X",'
        b'"orderId":"o","updatedTime":"1","cumFeeDetail":' + escaped + b"}]}",
        ledger_push("execution", {**EXEC, "extraFees": ""}),
        ledger_push("order", {**ORDER, "cumFeeDetail": None}),
    ]
    out = decode(frames)
    fees = out["execution_events"].column("extra_fees").to_pylist()
    assert fees == [spaced.decode(), None]
    detail = out["order_events"].column("cum_fee_detail").to_pylist()
    assert detail == [escaped.decode(), None]
    assert orjson.loads(detail[0]) == {"MNT": "0.1", "USDT": "0.2"}
