"""The private WebSocket, spoken to by the `websockets` library as a plain client."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from ingestor.sim import Exchange
from tests.sim.helpers import (
    auth,
    connect,
    now_ms,
    recv_json,
    recv_until,
    request,
    rest_get,
    ws_sign,
)
from tests.tls_helpers import private_ca

POSITION_FIELDS = {
    "category", "symbol", "side", "size", "positionIdx", "tradeMode", "positionValue", "riskId",
    "riskLimitValue", "entryPrice", "markPrice", "leverage", "breakEvenPrice", "positionBalance",
    "autoAddMargin",
    "positionIM", "positionIMByMp", "positionMM", "positionMMByMp", "liqPrice", "bustPrice",
    "tpslMode", "takeProfit", "stopLoss", "trailingStop", "unrealisedPnl", "sessionAvgPrice",
    "curRealisedPnl", "cumRealisedPnl", "positionStatus", "adlRankIndicator", "isReduceOnly",
    "mmrSysUpdatedTime", "leverageSysUpdatedTime", "createdTime", "updatedTime", "openTime",
    "seq",
}  # fmt: skip
WALLET_FIELDS = {
    "accountType", "accountLTV", "accountIMRate", "accountMMRate", "accountIMRateByMp",
    "accountMMRateByMp", "totalEquity", "totalWalletBalance", "totalMarginBalance",
    "totalAvailableBalance", "totalPerpUPL", "totalInitialMargin", "totalMaintenanceMargin",
    "coin",
}  # fmt: skip
COIN_FIELDS = {
    "coin", "equity", "usdValue", "walletBalance", "locked", "spotHedgingQty", "borrowAmount",
    "availableToBorrow", "availableToWithdraw", "accruedInterest", "totalOrderIM",
    "totalPositionIM", "totalPositionMM", "unrealisedPnl", "cumRealisedPnl", "bonus",
    "collateralSwitch", "marginCollateral", "colRes", "spotBorrow",
}  # fmt: skip
EXECUTION_FIELDS = {
    "category", "symbol", "execId", "orderId", "orderLinkId", "side", "execPrice", "execQty",
    "execValue", "execFee", "feeRate", "feeCurrency", "execType", "execTime", "isMaker",
    "leavesQty", "closedSize", "execPnl", "markPrice", "indexPrice", "orderPrice", "orderQty",
    "orderType", "stopOrderType", "blockTradeId", "seq", "tradeIv", "markIv", "underlyingPrice",
}  # fmt: skip
ORDER_FIELDS = {
    "orderId", "orderLinkId", "symbol", "category", "side", "price", "qty", "orderStatus",
    "orderType", "timeInForce", "avgPrice", "leavesQty", "cumExecQty", "cumExecValue",
    "cumExecFee", "positionIdx", "reduceOnly", "createdTime", "updatedTime", "rejectReason",
    "cancelType", "triggerPrice", "takeProfit", "stopLoss",
}  # fmt: skip


def test_auth_success_and_failures() -> None:
    async def main() -> None:
        async with Exchange(accounts=2, seed=3, market=False) as ex:
            account = ex.accounts[0]
            async with connect(ex.ws_url) as ws:
                answer = await auth(ws, account, secret="not-the-secret")
                assert answer["success"] is False
                assert answer["ret_msg"] == "Request not authorized"
                assert answer["op"] == "auth" and answer["req_id"] == "auth-1"
                expired = now_ms() - 1
                answer = await request(
                    ws,
                    {
                        "op": "auth",
                        "args": [account.api_key, expired, ws_sign(account.api_secret, expired)],
                    },
                )
                assert answer == {
                    "success": False, "ret_msg": "Params Error", "op": "auth",
                    "conn_id": answer["conn_id"],
                }  # fmt: skip
                answer = await request(
                    ws, {"op": "auth", "args": ["unknown-key", now_ms() + 1000, "00"]}
                )
                assert answer["ret_msg"] == "Request not authorized"
                answer = await auth(ws, account)
                assert answer["success"] is True and answer["ret_msg"] == ""
                assert answer["conn_id"]
                answer = await auth(ws, account)
                assert answer["success"] is False
            counters = ex.counters()
            assert counters["sim-0001"]["auth_ok"] == 1
            assert counters["sim-0001"]["auth_failed"] == 2
            assert counters["-"]["auth_failed"] == 1

    asyncio.run(main())


def test_subscribe_rules() -> None:
    async def main() -> None:
        async with Exchange(accounts=1, seed=3, market=False) as ex, connect(ex.ws_url) as ws:
            answer = await request(ws, {"req_id": "s0", "op": "subscribe", "args": ["position"]})
            assert (answer["success"], answer["ret_msg"]) == (False, "Request not authorized")
            await auth(ws, ex.accounts[0])
            mixed = {"req_id": "s1", "op": "subscribe", "args": ["position", "position.linear"]}
            answer = await request(ws, mixed)
            assert answer["success"] is False and answer["req_id"] == "s1"
            answer = await request(ws, {"op": "subscribe", "args": ["tickers.BTCUSDT"]})
            assert answer["success"] is False and "tickers.BTCUSDT" in answer["ret_msg"]
            ok = {"req_id": "s2", "op": "subscribe", "args": ["position", "wallet"]}
            answer = await request(ws, ok)
            assert answer == {
                "success": True, "ret_msg": "", "op": "subscribe",
                "conn_id": answer["conn_id"], "req_id": "s2",
            }  # fmt: skip
            answer = await request(ws, {"op": "subscribe", "args": ["wallet"]})
            assert answer["ret_msg"] == "error:already subscribed,topic:wallet"
            answer = await request(ws, {"req_id": "u", "op": "unsubscribe", "args": ["wallet"]})
            assert answer["success"] is True and answer["op"] == "unsubscribe"
            answer = await request(ws, {"op": "subscribe", "args": ["wallet"]})
            assert answer["success"] is True
            answer = await request(ws, {"op": "teleport"})
            assert answer["success"] is False
            await ws.send("{not json")
            assert (await recv_json(ws))["success"] is False

    asyncio.run(main())


def test_ping_pong_private_shape() -> None:
    async def main() -> None:
        async with Exchange(accounts=1, seed=3, market=False) as ex, connect(ex.ws_url) as ws:
            before = now_ms()
            answer = await request(ws, {"req_id": "p1", "op": "ping"})
            assert answer["op"] == "pong" and answer["req_id"] == "p1"
            assert answer["conn_id"]
            assert len(answer["args"]) == 1 and int(answer["args"][0]) >= before
            answer = await request(ws, {"op": "ping"})
            assert answer["op"] == "pong" and "req_id" not in answer
            # WebSocket-level pings are answered too.
            latency = await asyncio.wait_for(await ws.ping(), 5)
            assert latency >= 0

    asyncio.run(main())


def test_idle_timeout_closes_silent_connection_but_not_a_pinging_one() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=3, market=False, idle_timeout=0.4) as ex,
            connect(ex.ws_url, ping_interval=None) as silent,
        ):
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(silent.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1000
            assert closed.value.rcvd.reason == "idle timeout"
            async with connect(ex.ws_url, ping_interval=None) as chatty:
                for _ in range(6):
                    await asyncio.sleep(0.15)
                    assert (await request(chatty, {"op": "ping"}))["op"] == "pong"
            assert ex.counters()["-"]["idle_timeout"] == 1

    asyncio.run(main())


def test_max_active_time_query_is_clamped_to_bybit_range() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=3, market=False, idle_timeout=0.3) as ex,
            connect(ex.ws_url + "?max_active_time=1s") as ws,
        ):
            # 1s is below Bybit's 30 s minimum, so the connection lives at least 30 s: it
            # outlives the 0.3 s default here.
            await asyncio.sleep(0.8)
            assert (await request(ws, {"op": "ping"}))["op"] == "pong"

    asyncio.run(main())


def test_shutdown_closes_with_going_away() -> None:
    async def main() -> None:
        ex = Exchange(accounts=1, seed=3, market=False)
        await ex.start()
        async with connect(ex.ws_url) as ws:
            await auth(ws, ex.accounts[0])
            await ex.close()
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001

    asyncio.run(main())


def test_pushes_carry_every_documented_field_as_bybit_types() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=5, market=False, trade_rate=20) as ex,
            connect(ex.ws_url) as ws,
        ):
            await auth(ws, ex.accounts[0])
            topics = ["position", "wallet", "execution", "order"]
            assert (await request(ws, {"op": "subscribe", "args": topics}))["success"]
            await ex.advance(10)
            seen: dict[str, dict] = {}
            while len(seen) < 4:
                push = await recv_json(ws)
                assert set(push) == {"id", "topic", "creationTime", "data"}
                assert isinstance(push["creationTime"], int) and isinstance(push["data"], list)
                seen[push["topic"]] = push["data"][0]
        position, wallet = seen["position"], seen["wallet"]
        assert set(position) >= POSITION_FIELDS
        assert isinstance(position["positionIdx"], int) and isinstance(position["seq"], int)
        assert isinstance(position["size"], str) and position["updatedTime"].isdigit()
        assert position["liqPrice"] == "" and position["side"] in ("Buy", "Sell", "")
        assert set(wallet) >= WALLET_FIELDS and wallet["accountType"] == "UNIFIED"
        for coin in wallet["coin"]:
            assert set(coin) >= COIN_FIELDS
            assert coin["availableToWithdraw"] == ""
            assert "e" not in coin["walletBalance"].lower()
        assert set(seen["execution"]) >= EXECUTION_FIELDS
        assert set(seen["order"]) >= ORDER_FIELDS

    asyncio.run(main())


def test_tls_serves_wss_and_https_to_standard_clients(tmp_path: Path) -> None:
    """With a certificate, the simulator speaks TLS as Bybit does; `websockets` and aiohttp
    trusting only the issuing CA authenticate, subscribe, receive and read REST over it, and
    a client that does not trust the CA is refused in the handshake."""
    ca = private_ca(tmp_path)

    async def main() -> None:
        async with Exchange(accounts=1, seed=5, market=False, trade_rate=20, tls=ca.server) as ex:
            assert ex.ws_url.startswith("wss://") and ex.rest_url.startswith("https://")
            account = ex.accounts[0]
            async with connect(ex.ws_url, ssl=ca.client()) as ws:
                assert (await auth(ws, account))["success"]
                assert (await request(ws, {"op": "subscribe", "args": ["wallet"]}))["success"]
                await ex.advance(10)
                push = await recv_until(ws, lambda f: f.get("topic") == "wallet")
                assert push["data"][0]["accountType"] == "UNIFIED"
            connector = aiohttp.TCPConnector(ssl=ca.client())
            async with aiohttp.ClientSession(connector=connector) as http:
                answer, _ = await rest_get(
                    http, ex.rest_url, "/v5/account/wallet-balance", "accountType=UNIFIED", account
                )
                assert answer["retCode"] == 0 and answer["result"]["list"]
            with pytest.raises(ssl.SSLCertVerificationError):
                async with connect(ex.ws_url, ssl=ssl.create_default_context()):
                    pass

    asyncio.run(main())


def test_per_category_topic_gets_only_its_category_under_its_own_name() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=8, market=False, trade_rate=20) as ex,
            connect(ex.ws_url) as ws,
        ):
            await auth(ws, ex.accounts[0])
            answer = await request(ws, {"op": "subscribe", "args": ["position.inverse"]})
            assert answer["success"]
            await ex.advance(60)
            push = await recv_json(ws)
            assert push["topic"] == "position.inverse"
            assert {e["category"] for e in push["data"]} == {"inverse"}
        pushed = ex.push_counts()["sim-0001"]
        assert set(pushed) == {"position.inverse"}

    asyncio.run(main())


def test_hedge_mode_positions_use_idx_1_and_2() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=2, market=False, hedge_ratio=1.0, trade_rate=20) as ex,
            connect(ex.ws_url) as ws,
        ):
            await auth(ws, ex.accounts[0])
            await request(ws, {"op": "subscribe", "args": ["position.linear"]})
            await ex.advance(80)
            idxs: set[int] = set()
            while idxs != {1, 2}:
                push = await recv_until(ws, lambda f: f.get("topic") == "position.linear")
                for element in push["data"]:
                    idxs.add(element["positionIdx"])
                    side = element["side"]
                    assert side in ("", "Buy" if element["positionIdx"] == 1 else "Sell")
            assert idxs == {1, 2}

    asyncio.run(main())


def test_unsubscribe_stops_pushes() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=8, market=False, trade_rate=20) as ex,
            connect(ex.ws_url) as ws,
        ):
            await auth(ws, ex.accounts[0])
            await request(ws, {"op": "subscribe", "args": ["wallet"]})
            assert (await request(ws, {"op": "unsubscribe", "args": ["wallet"]}))["success"]
            await ex.advance(40)
            answer = await request(ws, {"req_id": "last", "op": "ping"})
            assert answer["op"] == "pong"
        assert ex.push_counts() == {}
        assert json.dumps(ex.truth()["positions"])  # the market did trade meanwhile
        assert ex.truth()["positions"]

    asyncio.run(main())
