"""The ledger in every store kind: executions stored once per exec id and order versions once
per version whatever the delivery, and the views and macros an analyst reads it by
(`latest_orders`, `open_orders_asof`, `fills`, `funding`, `pnl_daily`, `ledger_tieout`),
each checked against sums worked out here from the frames themselves."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

import ingestor
from ingestor import _core
from ingestor.sinks import open_reader, open_store

DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
ACCOUNT = "acct-1"


def push(topic: str, message_id: str, created_ms: int, *elements: dict) -> bytes:
    envelope = {"id": message_id, "topic": topic, "creationTime": created_ms, "data": elements}
    return orjson.dumps(envelope)


def execution(exec_id: str, ms: int, exec_type: str, pnl: str, fee: str, **more) -> dict:
    return {
        "category": more.pop("category", "linear"),
        "symbol": more.pop("symbol", "BTCUSDT"),
        "execId": exec_id,
        "orderId": more.pop("orderId", f"o-{exec_id}"),
        "side": "Buy",
        "execPrice": "60000",
        "execQty": more.pop("execQty", "0.01"),
        "execValue": more.pop("execValue", "600"),
        "execFee": fee,
        "feeRate": "0.00055",
        "execType": exec_type,
        "execPnl": pnl,
        "execTime": str(ms),
        "isMaker": False,
        "seq": 1,
        **more,
    }


def order(order_id: str, ms: int, status: str, cum: str, leaves: str) -> dict:
    return {
        "category": "linear",
        "symbol": "BTCUSDT",
        "orderId": order_id,
        "side": "Buy",
        "orderType": "Limit",
        "price": "60000",
        "qty": "1",
        "orderStatus": status,
        "cumExecQty": cum,
        "leavesQty": leaves,
        "createdTime": str(T0),
        "updatedTime": str(ms),
        "cumFeeDetail": {"USDT": "0.1"},
        "positionIdx": 0,
    }


def wallet(message_id: str, ms: int, balance: str) -> bytes:
    element = {
        "accountType": "UNIFIED",
        "totalEquity": balance,
        "coin": [{"coin": "USDT", "walletBalance": balance, "equity": balance}],
    }
    return push("wallet", message_id, ms, element)


def rest_page(endpoint_list: list[dict], ms: int) -> bytes:
    body = {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"category": "linear", "list": endpoint_list, "nextPageCursor": ""},
        "time": ms,
    }
    return orjson.dumps(body)


EXECUTIONS = [
    execution("e1", T0 + 1_000, "Trade", "0", "0.33"),
    execution("e2", T0 + 2_000, "Trade", "12.5", "0.33"),
    execution("e3", T0 + 3_000, "Funding", "0", "0.6", execQty="0.01", execValue="600"),
    execution("e4", T0 + DAY_MS + 5, "Trade", "-4", "-0.01"),  # a maker rebate, next day
    execution("e5", T0 + DAY_MS + 9, "Funding", "0", "-0.25"),  # funding received
    execution("e6", T0 + DAY_MS + 11, "BustTrade", "-30", "1.2"),
]


def frames() -> list[bytes]:
    """The ledger as a capture meets it: every execution pushed, some twice, some also read back
    over REST; order versions with Bybit's double `Filled`; balances before and after."""
    out = [wallet("w0", T0, "1000")]
    for n, e in enumerate(EXECUTIONS):
        out.append(push("execution", f"x{n}", int(e["execTime"]) + 3, e))
    out.append(push("execution", "x1", int(EXECUTIONS[1]["execTime"]) + 3, EXECUTIONS[1]))
    net = sum(Decimal(e["execPnl"]) - Decimal(e["execFee"]) for e in EXECUTIONS)
    out.append(wallet("w1", T0 + 2 * DAY_MS, str(Decimal(1000) + net)))
    out += [
        push("order", "o1", T0 + 100, order("A", T0 + 100, "New", "0", "1")),
        push("order", "o2", T0 + 1_000, order("A", T0 + 1_000, "PartiallyFilled", "0.4", "0.6")),
        push("order", "o3", T0 + 2_000, order("A", T0 + 2_000, "Filled", "1", "0")),
        push("order", "o4", T0 + 2_000, order("A", T0 + 2_000, "Filled", "1", "0")),
        push("order", "o5", T0 + 500, order("B", T0 + 500, "New", "0", "1")),
        push("order", "o6", T0 + DAY_MS, order("B", T0 + DAY_MS, "Cancelled", "0", "0")),
        push("order", "o7", T0 + 700, order("C", T0 + 700, "New", "0", "1")),
    ]
    return out


def rest_frames() -> dict[str, list[tuple[str, bytes]]]:
    """The same executions and an order read back by a backfill."""
    return {
        "execution_list": [("/v5/execution/list", rest_page(EXECUTIONS[:4], T0 + 3 * DAY_MS))],
        "order_history": [
            ("/v5/order/history", rest_page([order("A", T0 + 2_000, "Filled", "1", "0")], T0))
        ],
    }


def batches() -> list[tuple[str, object]]:
    decoded = ingestor.decode(frames(), account_id=ACCOUNT)
    out = [(table, batch) for table, batch in decoded.items() if batch.num_rows]
    for pages in rest_frames().values():
        for path, body in pages:
            received = (T0 + 3 * DAY_MS) * 1000
            decoded = _core.decode_rest(
                body, endpoint=path, account_id=ACCOUNT, received_at_us=received
            )
            out += [(table, batch) for table, batch in decoded.items() if batch.num_rows]
    return out


@pytest.fixture(params=["duckdb", "parquet", "ducklake"])
def store(request, tmp_path: Path) -> tuple[str, Path]:
    kind = request.param
    path = tmp_path / {"duckdb": "c.duckdb", "parquet": "c", "ducklake": "c.lake"}[kind]
    sink = open_store(kind, path)
    sink.create()
    half = batches()
    sink.write(half[: len(half) // 2])
    sink.write(half[len(half) // 2 :])
    sink.write(batches())  # a batch delivered twice (a writer restarted): stored once
    sink.close()
    return kind, path


def rows(store: tuple[str, Path], sql: str) -> list[tuple]:
    kind, path = store
    with open_reader(kind, path) as con:
        return con.execute(sql).fetchall()


def test_each_execution_is_stored_once_however_it_came(store):
    stored = rows(store, "SELECT exec_id, count(*) FROM execution_events GROUP BY ALL ORDER BY 1")
    assert stored == [(e["execId"], 1) for e in EXECUTIONS]
    sources = rows(store, "SELECT DISTINCT source FROM execution_events ORDER BY 1")
    assert sources in ([("ws",)], [("rest",)], [("rest",), ("ws",)])


def test_order_versions_once_and_the_latest_and_open_orders(store):
    versions = rows(
        store,
        "SELECT order_id, order_status, count(*) FROM order_events GROUP BY ALL ORDER BY 1, 2",
    )
    assert versions == [
        ("A", "Filled", 1),  # pushed twice (Bybit's double Filled) and read back: one row
        ("A", "New", 1),
        ("A", "PartiallyFilled", 1),
        ("B", "Cancelled", 1),
        ("B", "New", 1),
        ("C", "New", 1),
    ]
    latest = rows(store, "SELECT order_id, order_status FROM latest_orders ORDER BY 1")
    assert latest == [("A", "Filled"), ("B", "Cancelled"), ("C", "New")]

    def open_at(ms: int) -> list[str]:
        sql = f"SELECT order_id FROM open_orders_asof(make_timestamptz({ms * 1000})) ORDER BY 1"
        return [r[0] for r in rows(store, sql)]

    assert open_at(T0 + 50) == []
    assert open_at(T0 + 600) == ["A", "B"]
    assert open_at(T0 + 1_500) == ["A", "B", "C"]  # A partly filled: still open
    assert open_at(T0 + 2_000) == ["B", "C"]
    assert open_at(T0 + 2 * DAY_MS) == ["C"]


def test_fills_funding_and_daily_pnl_follow_the_executions(store):
    fills = rows(store, "SELECT exec_id FROM fills ORDER BY 1")
    assert fills == [("e1",), ("e2",), ("e4",), ("e6",)]
    funding = rows(store, "SELECT exec_id, exec_fee FROM funding ORDER BY 1")
    assert funding == [("e3", Decimal("0.6")), ("e5", Decimal("-0.25"))]
    daily = rows(
        store,
        "SELECT day::VARCHAR, coin, realised_pnl, fees, funding, net_pnl, volume, fills "
        "FROM pnl_daily ORDER BY day",
    )
    assert daily == [
        (
            "2026-01-01",
            "USDT",
            Decimal("12.5"),
            Decimal("0.66"),
            Decimal("0.6"),
            Decimal("11.24"),
            Decimal("1200"),
            2,
        ),
        (
            "2026-01-02",
            "USDT",
            Decimal("-34"),
            Decimal("1.19"),
            Decimal("-0.25"),
            Decimal("-34.94"),
            Decimal("1200"),
            2,
        ),
    ]


def test_the_tieout_finds_the_balance_change_in_the_executions(store):
    sql = (
        "SELECT coin, start_balance, stop_balance, balance_change, executions, difference "
        f"FROM ledger_tieout(make_timestamptz({T0 * 1000}), "
        f"make_timestamptz({(T0 + 2 * DAY_MS) * 1000}))"
    )
    ((coin, start, stop, change, executions, difference),) = rows(store, sql)
    net = sum(Decimal(e["execPnl"]) - Decimal(e["execFee"]) for e in EXECUTIONS)
    assert (coin, start, stop, change) == ("USDT", 1000, 1000 + net, net)
    assert (executions, difference) == (len(EXECUTIONS), 0)


def test_a_missing_execution_shows_in_the_tieout(tmp_path):
    path = tmp_path / "c.duckdb"
    sink = open_store("duckdb", path)
    sink.create()
    kept = [f for f in frames() if b'"e2"' not in f]  # the stream lost e2 and nothing read it
    sink.write([(t, b) for t, b in ingestor.decode(kept, account_id=ACCOUNT).items()])
    sink.close()
    sql = (
        "SELECT difference FROM ledger_tieout("
        f"make_timestamptz({T0 * 1000}), make_timestamptz({(T0 + 2 * DAY_MS) * 1000}))"
    )
    assert rows(("duckdb", path), sql) == [(Decimal("12.5") - Decimal("0.33"),)]


def test_a_store_of_an_earlier_version_is_read_at_start_without_the_ledger(tmp_path):
    """A start reads the store before its writer adds the new tables: the downtime records
    and the ledger's mark must not need them."""
    import duckdb

    from ingestor import queries

    path = tmp_path / "old.duckdb"
    schemas = ingestor.schemas()
    with duckdb.connect(str(path)) as con:
        for table in ("position_snapshots", "connection_events"):
            con.execute(queries.create_table(table, schemas[table]))
        con.execute(
            "INSERT INTO connection_events (account_id, local_ts, event) VALUES "
            "('a', make_timestamptz(1000000), 'backfilled'), "
            "('a', make_timestamptz(9000000000), 'disconnected')"
        )
    with duckdb.connect(str(path), read_only=True) as con:
        present = {t for (t,) in con.execute(queries.RELATIONS).fetchall()}
        assert "execution_events" not in present
        last = con.execute(queries.last_records(present)).fetchall()
        assert last == [("a", 9_000_000_000, 9_000_000_000, None)]
        # Complete up to 5 minutes before the last record (the disconnect is later still).
        mark = con.execute(queries.ledger_complete(present)).fetchall()
        assert mark == [("a", 9_000_000 - queries.IN_FLIGHT_MARGIN_S * 1000)]
