"""The ledger: orders and executions as pushes and over REST, with Bybit's shapes and rules."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Coroutine
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from ingestor.sim import Exchange, FaultConfig
from ingestor.sim.market import Market, make_accounts
from tests.sim.helpers import auth, connect, now_ms, recv_json, request, rest_get

EXECUTIONS = "/v5/execution/list"
HISTORY = "/v5/order/history"
REALTIME = "/v5/order/realtime"
DAY = 86_400_000
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bybit-docs"

# The field sets of the newest revision of each example in Bybit's docs (the fixtures).
WS_EXECUTION_FIELDS = {
    "blockTradeId", "category", "closedSize", "createType", "execFee", "execId", "execPnl",
    "execPrice", "execQty", "execTime", "execType", "execValue", "extraFees", "feeCurrency",
    "feeRate", "indexPrice", "isLeverage", "isMaker", "leavesQty", "markIv", "markPrice",
    "marketUnit", "orderId", "orderLinkId", "orderPrice", "orderQty", "orderType", "seq", "side",
    "stopOrderType", "symbol", "tradeIv", "underlyingPrice",
}  # fmt: skip
# execPnl too, though the examples lack it: Bybit's parameter table lists it (see protocol.py).
REST_EXECUTION_FIELDS = WS_EXECUTION_FIELDS - {
    "category", "createType", "isLeverage", "marketUnit",
}  # fmt: skip
WS_ORDER_FIELDS = {
    "avgPrice", "blockTradeId", "cancelType", "category", "closeOnTrigger", "closedPnl",
    "createdTime", "cumExecFee", "cumExecQty", "cumExecValue", "cumFeeDetail", "feeCurrency",
    "lastPriceOnCreated", "leavesQty", "leavesValue", "orderId", "orderIv", "orderLinkId",
    "orderStatus", "orderType", "placeType", "positionIdx", "price", "qty", "reduceOnly",
    "rejectReason", "rpiMatchedQty", "rpiTakerAccess", "side", "slLimitPrice", "slTriggerBy",
    "smpGroup", "smpOrderId", "smpType", "stopLoss", "stopOrderType", "symbol", "takeProfit",
    "timeInForce", "tpLimitPrice", "tpTriggerBy", "tpslMode", "triggerBy", "triggerDirection",
    "triggerPrice", "updatedTime",
}  # fmt: skip
REST_ORDER_FIELDS = (
    WS_ORDER_FIELDS - {"category", "closedPnl", "feeCurrency", "rpiMatchedQty", "rpiTakerAccess"}
) | {"isLeverage"}
FAST_FIELDS = {
    "category", "symbol", "execId", "execPrice", "execQty", "orderId", "isMaker", "orderLinkId",
    "side", "execTime", "seq",
}  # fmt: skip


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a test's body; past 60 s it fails instead of hanging."""
    asyncio.run(asyncio.wait_for(coroutine, 60))


def newest(name: str) -> dict[str, Any]:
    """The newest revision's element of a fixture file (its last line)."""
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    document = json.loads(path.read_text().splitlines()[-1])
    return document["data"][0] if "data" in document else document["result"]["list"][0]


def test_the_field_sets_are_the_newest_examples() -> None:
    # ws_execution's last line is the XRP example, which lacks createType and marketUnit that
    # the BTC example just before it (same revision) carries: the union is the element.
    assert set(newest("ws_execution.jsonl")) | {"createType", "marketUnit"} == (WS_EXECUTION_FIELDS)
    assert set(newest("rest_execution_list.jsonl")) | {"execPnl"} == REST_EXECUTION_FIELDS
    assert set(newest("ws_order.jsonl")) == WS_ORDER_FIELDS
    assert set(newest("rest_order_realtime.jsonl")) == REST_ORDER_FIELDS


async def subscribe(ex: Exchange, topics: list[str], index: int = 0) -> Any:
    ws = await connect(ex.ws_url)
    assert (await auth(ws, ex.accounts[index]))["success"]
    answer = await request(ws, {"op": "subscribe", "args": topics})
    assert answer["success"], answer
    return ws


async def drain(ws: websockets.ClientConnection) -> list[dict[str, Any]]:
    """Every push queued so far: the pong to a ping comes after them."""
    await ws.send(json.dumps({"req_id": "drain", "op": "ping"}))
    frames = []
    while True:
        frame = await recv_json(ws)
        if frame.get("op") == "pong":
            return frames
        frames.append(frame)


def test_pushes_have_bybits_shapes_and_every_kind_of_execution_and_order_occurs() -> None:
    async def main() -> None:
        async with Exchange(
            accounts=1, seed=1, market=False, trade_rate=10, funding_interval=0.5
        ) as ex:
            ws = await subscribe(ex, ["execution", "order", "execution.fast"])
            await ex.advance(600)
            frames = await drain(ws)
            await ws.close()
            truth = ex.truth()
        by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for frame in frames:
            by_topic[frame["topic"]].append(frame)
        assert set(by_topic) == {"execution", "order", "execution.fast"}
        executions = [e for f in by_topic["execution"] for e in f["data"]]
        orders = [o for f in by_topic["order"] for o in f["data"]]
        for frame in by_topic["execution"] + by_topic["order"]:
            assert set(frame) == {"id", "topic", "creationTime", "data"}
        for e in executions:
            assert set(e) == WS_EXECUTION_FIELDS, e
            assert isinstance(e["isMaker"], bool) and isinstance(e["seq"], int)
            assert e["execTime"].isdigit() and e["extraFees"] == ""
            assert all(isinstance(e[k], str) for k in ("execQty", "execPrice", "execFee"))
            assert "e" not in e["execFee"].lower() and "e" not in e["execValue"].lower()
        for o in orders:
            assert set(o) == WS_ORDER_FIELDS, o
            assert isinstance(o["positionIdx"], int) and isinstance(o["smpGroup"], int)
            assert isinstance(o["reduceOnly"], bool) and isinstance(o["cumFeeDetail"], dict)
            assert o["createdTime"].isdigit() and o["updatedTime"].isdigit()
        # execution.fast: no id, few fields, Trade rows only, the same ids as `execution`.
        trades = {e["execId"] for e in executions if e["execType"] == "Trade"}
        fast = [e for f in by_topic["execution.fast"] for e in f["data"]]
        assert all(set(f) == {"topic", "creationTime", "data"} for f in by_topic["execution.fast"])
        assert all(set(e) == FAST_FIELDS for e in fast)
        assert {e["execId"] for e in fast} == trades
        # An order push and its execution push share the envelope id.
        order_ids = {f["id"] for f in by_topic["order"]}
        assert sum(f["id"] in order_ids for f in by_topic["execution"]) > 0
        # Every kind occurs: funding, liquidation, ADL, partial fills, double Filled.
        kinds = Counter(e["execType"] for e in executions)
        assert set(kinds) == {"Trade", "Funding", "BustTrade", "AdlTrade"}, kinds
        per_order = Counter(e["orderId"] for e in executions if e["execType"] == "Trade")
        assert max(per_order.values()) in (2, 3)
        statuses = Counter(o["orderStatus"] for o in orders)
        assert {"New", "PartiallyFilled", "Filled", "Cancelled"} <= set(statuses)
        assert any(o["orderStatus"] == "Cancelled" and o["cumExecQty"] != "0" for o in orders)
        filled = [json.dumps(o, sort_keys=True) for o in orders if o["orderStatus"] == "Filled"]
        assert max(Counter(filled).values()) == 2  # identical, pushed twice
        assert len(executions) == len(truth["executions"])
        # Funding: the position's size at the mark; fee = value x rate, signed as paid.
        for e in executions:
            if e["execType"] == "Funding":
                assert e["execPrice"] == e["markPrice"] and e["orderType"] == "UNKNOWN"
                assert e["closedSize"] == "0" and e["execPnl"] == "0"
                fee = Decimal(e["execValue"]) * Decimal(e["feeRate"])
                assert Decimal(e["execFee"]) == fee.quantize(Decimal("1e-8"), ROUND_HALF_EVEN)
            elif e["execType"] == "AdlTrade":
                assert e["execFee"] == "0" and e["createType"] == "CreateByAdl_PassThrough"
            elif e["execType"] == "BustTrade":
                assert e["createType"] == "CreateByLiq" and e["leavesQty"] == "0"
        assert {e["execFee"][0] == "-" for e in executions if e["execType"] == "Funding"} == {
            True, False,
        }  # fmt: skip

    run(main())


def test_balances_move_by_exactly_execpnl_minus_execfee() -> None:
    """The ledger identity on the market's own truth, to the last decimal, per coin."""
    accounts = make_accounts(6, 31, hedge_ratio=0.5, permissions=None, now_ms=1_000)
    start = {(a.account_id, c): b.wallet_balance for a in accounts for c, b in a.coins.items()}
    market = Market(accounts, 31, trade_probability=0.6, funding_every=7)
    for step in range(1, 500):
        market.step(1_000 + step * 50)
    kinds = set()
    for account in accounts:
        moved: dict[str, Decimal] = defaultdict(Decimal)
        for e in account.executions:
            moved[e.instrument.settle_coin] += e.exec_pnl - e.fee
            kinds.add(e.exec_type)
        for coin, balance in account.coins.items():
            assert balance.wallet_balance - start[(account.account_id, coin)] == moved[coin]
    assert kinds == {"Trade", "Funding", "BustTrade", "AdlTrade"}


async def all_pages(
    http: aiohttp.ClientSession, ex: Exchange, path: str, query: str
) -> list[dict[str, Any]]:
    """Every item of a cursor-paged listing, page after page."""
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        full = f"{query}&cursor={cursor}" if cursor else query
        answer, _ = await rest_get(http, ex.rest_url, path, full, ex.accounts[0])
        assert answer["retCode"] == 0, answer
        items += answer["result"]["list"]
        cursor = answer["result"]["nextPageCursor"]
        if not cursor:
            return items


def test_execution_list_pages_every_execution_once_newest_first_even_while_trading() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=6, market=False, trade_rate=10, funding_interval=1) as ex,
            aiohttp.ClientSession() as http,
        ):
            account = ex.accounts[0]
            await ex.advance(200)
            before = {e.exec_id for e in account.executions if e.instrument.category == "linear"}
            listed: list[dict[str, Any]] = []
            cursor = ""
            while True:
                query = "category=linear&limit=7" + (f"&cursor={cursor}" if cursor else "")
                answer, _ = await rest_get(http, ex.rest_url, EXECUTIONS, query, account)
                assert answer["retCode"] == 0, answer
                result = answer["result"]
                assert result["category"] == "linear" and len(result["list"]) <= 7
                listed += result["list"]
                cursor = result["nextPageCursor"]
                if not cursor:
                    break
                await ex.advance(2)  # newer executions land before the cursor, not after it
            ids = [e["execId"] for e in listed]
            assert len(ids) == len(set(ids)) and set(ids) == before
            keys = [(int(e["execTime"]), e["execId"]) for e in listed]
            assert keys == sorted(keys, reverse=True)
            assert all(set(e) == REST_EXECUTION_FIELDS for e in listed)
            # The default page is 50; filters by symbol, execType and orderId.
            answer, _ = await rest_get(http, ex.rest_url, EXECUTIONS, "category=linear", account)
            assert len(answer["result"]["list"]) == 50
            funding = await all_pages(http, ex, EXECUTIONS, "category=linear&execType=Funding")
            assert funding and {e["execType"] for e in funding} == {"Funding"}
            eth = await all_pages(http, ex, EXECUTIONS, "category=linear&symbol=ETHUSDT")
            assert eth and {e["symbol"] for e in eth} == {"ETHUSDT"}
            order_id = listed[0]["orderId"]
            query = f"category=linear&orderId={order_id}&symbol=NOSUCH"  # orderId outranks
            one = await all_pages(http, ex, EXECUTIONS, query)
            assert one and {e["orderId"] for e in one} == {order_id}
            inverse = await all_pages(http, ex, EXECUTIONS, "category=inverse")
            assert {e["symbol"] for e in inverse} == {"BTCUSD"}

    run(main())


def test_the_seven_day_window_rules() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=6, market=False, trade_rate=10) as ex,
            aiohttp.ClientSession() as http,
        ):
            account = ex.accounts[0]
            await ex.advance(30)
            await asyncio.sleep(0.02)
            split = now_ms()
            await asyncio.sleep(0.02)
            await ex.advance(30)
            linear = [e for e in account.executions if e.instrument.category == "linear"]
            everything = {e.exec_id for e in linear}
            early = {e.exec_id for e in linear if e.time_ms < split}
            assert early and early < everything

            async def ids(query: str, path: str = EXECUTIONS) -> set[str] | int:
                answer, _ = await rest_get(http, ex.rest_url, path, query, account)
                if answer["retCode"]:
                    return answer["retCode"]
                return {e["execId"] for e in answer["result"]["list"]}

            base = "category=linear&limit=100"
            now = now_ms()
            assert await ids(base) == everything  # no times: the last 7 days
            assert await ids(f"{base}&startTime={split}") == everything - early  # start + 7 d
            assert await ids(f"{base}&startTime={now - 8 * DAY}") == set()  # ends a day ago
            assert await ids(f"{base}&endTime={split}") == early  # end - 7 d .. end
            assert await ids(f"{base}&endTime={now - 7 * DAY - 1}") == set()
            both = f"{base}&startTime={split}&endTime={split + 7 * DAY}"  # exactly 7 days
            assert await ids(both) == everything - early
            assert await ids(f"{base}&startTime={split}&endTime={split + 7 * DAY + 1}") == 10001
            assert await ids(f"{base}&startTime={split}&endTime={split - 1}") == 10001
            assert await ids(f"{base}&startTime=soon") == 10001
            assert await ids("category=linear&limit=0") == 10001
            assert await ids("category=linear&limit=101") == 10001
            assert await ids("limit=10") == 10001  # category is required
            assert await ids("category=linear&cursor=notacursor") == 10001
            # Order history keeps the same rule, on the orders' creation times.
            too_long = f"category=linear&startTime={split}&endTime={split + 7 * DAY + 1}"
            assert await ids(too_long, HISTORY) == 10001
            assert await ids("category=linear&limit=51", HISTORY) == 10001

    run(main())


def test_order_history_forgets_cancels_without_fills_after_the_retention() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=8, market=False, trade_rate=10, order_retention=0.5) as ex,
            aiohttp.ClientSession() as http,
        ):
            account = ex.accounts[0]
            await ex.advance(300)
            final = [o for o in account.orders.values() if not o.is_open]
            unfilled = {o.order_id for o in final if o.status == "Cancelled" and o.cum_qty == 0}
            kept = {o.order_id for o in final} - unfilled
            assert unfilled and kept
            assert any(o.status == "Cancelled" and o.cum_qty > 0 for o in final)
            query = "category=linear&limit=50"
            inverse = "category=inverse&limit=50"

            async def history() -> set[str]:
                rows = await all_pages(http, ex, HISTORY, query)
                rows += await all_pages(http, ex, HISTORY, inverse)
                assert all(set(o) == REST_ORDER_FIELDS for o in rows)
                assert all(o["orderStatus"] in ("Filled", "Cancelled") for o in rows)
                return {o["orderId"] for o in rows}

            assert await history() == unfilled | kept
            await asyncio.sleep(0.6)
            assert await history() == kept  # the cancels without fills are gone
            # Filters: a status, an order id.
            answer, _ = await rest_get(
                http, ex.rest_url, HISTORY, "category=linear&orderStatus=Cancelled", account
            )
            assert {o["orderStatus"] for o in answer["result"]["list"]} == {"Cancelled"}
            some = next(iter(kept))
            answer, _ = await rest_get(
                http, ex.rest_url, HISTORY, f"category=linear&orderId={some}", account
            )
            in_linear = account.orders[some].instrument.category == "linear"
            assert [o["orderId"] for o in answer["result"]["list"]] == ([some] * in_linear)

    run(main())


def test_open_orders_and_recently_closed_ones() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=4, seed=2, market=False, trade_rate=10) as ex,
            aiohttp.ClientSession() as http,
        ):
            ws = await subscribe(ex, ["order"])
            first = ex.accounts[0]
            for _ in range(2000):
                await ex.advance(1)
                if first.working is not None:
                    break
            working = first.orders[first.working or ""]
            cat, settle = working.instrument.category, working.instrument.settle_coin
            answer, _ = await rest_get(
                http, ex.rest_url, REALTIME, f"category={cat}&settleCoin={settle}", first
            )
            assert answer["retCode"] == 0, answer
            (item,) = answer["result"]["list"]
            assert set(item) == REST_ORDER_FIELDS
            assert item["orderId"] == working.order_id and item["orderStatus"] == "PartiallyFilled"
            assert Decimal(item["leavesQty"]) == working.qty - working.cum_qty > 0
            # The REST answer is the version last pushed, field for field.
            pushed = [o for f in await drain(ws) for o in f["data"]]
            last = [o for o in pushed if o["orderId"] == working.order_id][-1]
            assert {k: v for k, v in last.items() if k in item} == {
                k: v for k, v in item.items() if k != "isLeverage"
            }
            closed, _ = await rest_get(
                http,
                ex.rest_url,
                REALTIME,
                f"category={cat}&settleCoin={settle}&openOnly=1&limit=50",
                first,
            )
            statuses = {o["orderStatus"] for o in closed["result"]["list"]}
            assert statuses and statuses <= {"Filled", "Cancelled"}
            missing, _ = await rest_get(http, ex.rest_url, REALTIME, "category=linear", first)
            assert missing["retCode"] == 10001
            bad, _ = await rest_get(
                http, ex.rest_url, REALTIME, "category=linear&symbol=BTCUSDT&openOnly=3", first
            )
            assert bad["retCode"] == 10001
            await ws.close()

    run(main())


def test_rest_answers_agree_with_the_pushes() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=4, market=False, trade_rate=10, funding_interval=1) as ex,
            aiohttp.ClientSession() as http,
        ):
            ws = await subscribe(ex, ["execution", "order"])
            await ex.advance(150)
            frames = await drain(ws)
            await ws.close()
            by_topic = defaultdict(list)
            for frame in frames:
                by_topic[frame["topic"]] += frame["data"]
            pushed = {e["execId"]: e for e in by_topic["execution"]}
            versions = {o["orderId"]: o for o in by_topic["order"]}
            listed = []
            for category in ("linear", "inverse"):
                query = f"category={category}&limit=100"
                listed += await all_pages(http, ex, EXECUTIONS, query)
                for order in await all_pages(http, ex, HISTORY, f"category={category}"):
                    push = versions[order["orderId"]]
                    assert all(push[k] == v for k, v in order.items() if k != "isLeverage")
            assert {e["execId"] for e in listed} == set(pushed)
            for item in listed:
                assert {k: pushed[item["execId"]][k] for k in item} == item

    run(main())


def test_rate_limit_and_injected_errors_on_the_ledger_endpoints() -> None:
    async def main() -> None:
        faults = [
            FaultConfig(accounts=frozenset({"sim-0001"}), rest_rate_limit=3),
            FaultConfig(accounts=frozenset({"sim-0002"}), rest_error_rate=1.0),
        ]
        async with (
            Exchange(accounts=2, seed=1, market=False, faults=faults) as ex,
            aiohttp.ClientSession() as http,
        ):
            limited, failing = ex.accounts
            for path, query in (
                (EXECUTIONS, "category=linear"),
                (HISTORY, "category=linear"),
                (REALTIME, "category=linear&settleCoin=USDT"),
            ):
                codes = []
                # 7 requests: however a second's turn splits them, one second has over 3.
                for _ in range(7):
                    answer, headers = await rest_get(http, ex.rest_url, path, query, limited)
                    codes.append(answer["retCode"])
                assert set(codes) == {0, 10006} and headers["X-Bapi-Limit"] == "3"
                answer, _ = await rest_get(http, ex.rest_url, path, query, failing)
                assert answer["retCode"] == 10016
            counts = ex.fault_counts()
            assert counts["rest_rate_limit"]["sim-0001"] >= 3
            assert counts["rest_error"]["sim-0002"] == 3

    run(main())


def test_position_and_wallet_subscribers_see_no_ledger_topics() -> None:
    async def main() -> None:
        async with Exchange(accounts=1, seed=3, market=False, trade_rate=10) as ex:
            ws = await subscribe(ex, ["position", "wallet"])
            await ex.advance(200)
            frames = await drain(ws)
            await ws.close()
        assert frames and {f["topic"] for f in frames} == {"position", "wallet"}
        assert set(ex.push_counts()["sim-0001"]) == {"position", "wallet"}

    run(main())
