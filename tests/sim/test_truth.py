"""Ground truth: seeded, arithmetically consistent, and rebuildable from pushes plus REST."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import aiohttp
from websockets.exceptions import ConnectionClosed

from ingestor.sim import Account, Exchange, FaultConfig
from tests.sim.helpers import auth, connect, request, rest_get

SETTLE = {"linear": "USDT", "inverse": "BTC"}
SYMBOLS = {"linear": ("BTCUSDT", "ETHUSDT", "SOLUSDT"), "inverse": ("BTCUSD",)}
DECIMAL_KEYS = ("size", "entry_price", "wallet_balance", "equity")
Key = tuple[str, str, str, int]


async def manual_truth(seed: int, steps: int) -> dict[str, Any]:
    async with Exchange(accounts=6, seed=seed, market=False, tick=0.03, trade_rate=5) as ex:
        await ex.advance(steps)
        await ex.stop_market()
        return timeless(ex.truth())


def timeless(truth: dict[str, Any]) -> dict[str, Any]:
    """The truth without execution times: the one part that differs between runs."""
    executions = [{k: v for k, v in e.items() if k != "exec_time"} for e in truth["executions"]]
    return {**truth, "executions": executions}


def test_same_seed_same_truth_and_clock_equals_manual_steps() -> None:
    async def main() -> None:
        first = await manual_truth(21, 10)
        assert first == await manual_truth(21, 10)
        assert first != await manual_truth(22, 10)
        async with Exchange(accounts=6, seed=21, duration=0.3, tick=0.03, trade_rate=5) as ex:
            await ex.wait_market_closed(timeout=10)
            assert ex.market.steps == 10
            assert timeless(ex.truth()) == first

    asyncio.run(main())


def test_truth_shape_decimal_strings_and_position_life_cycle() -> None:
    async def main() -> None:
        async with Exchange(accounts=8, seed=9, market=False, trade_rate=10) as ex:
            await ex.advance(400)
            await ex.stop_market()
            truth = ex.truth()
            hedge = {a.account_id for a in ex.accounts if a.hedge}
        assert set(truth) == {"positions", "wallets", "executions", "orders"}
        assert len(truth["wallets"]) == 8 * 2
        execution_keys = {
            "account_id", "exec_id", "exec_type", "category", "symbol", "side", "exec_qty",
            "exec_price", "exec_fee", "exec_time",
        }  # fmt: skip
        for execution in truth["executions"]:
            assert set(execution) == execution_keys and isinstance(execution["exec_time"], int)
            for key in ("exec_qty", "exec_price", "exec_fee"):
                assert "e" not in execution[key].lower()
                Decimal(execution[key])
        assert len({e["exec_id"] for e in truth["executions"]}) == len(truth["executions"])
        assert {e["exec_type"] for e in truth["executions"]} == {
            "Trade", "Funding", "BustTrade", "AdlTrade",
        }  # fmt: skip
        for order in truth["orders"]:
            assert set(order) == {"account_id", "order_id", "order_status", "cum_exec_qty"}
        assert {o["order_status"] for o in truth["orders"]} >= {"Filled", "Cancelled"}
        for wallet in truth["wallets"]:
            assert set(wallet) == {"account_id", "coin", "wallet_balance", "equity"}
        position_keys = {
            "account_id", "category", "symbol", "position_idx", "side", "size", "entry_price",
        }  # fmt: skip
        sides = set()
        for position in truth["positions"]:
            assert set(position) == position_keys
            for key in ("size", "entry_price"):
                assert "e" not in position[key].lower()
                Decimal(position[key])
            if position["size"] == "0":
                assert (position["side"], position["entry_price"]) == ("", "0")
            two_sided = position["account_id"] in hedge and position["category"] == "linear"
            assert position["position_idx"] in ({1, 2} if two_sided else {0})
            sides.add(position["side"])
        assert sides == {"Buy", "Sell", ""}  # open both ways, and some closed

    asyncio.run(main())


def test_balances_and_positions_follow_from_the_executions() -> None:
    """Replay every execution push with an independent ledger; it must land on the truth."""

    async def main() -> None:
        async with (
            Exchange(accounts=3, seed=13, market=False, trade_rate=10) as ex,
            aiohttp.ClientSession() as http,
        ):
            balances: dict[tuple[str, str], Decimal] = {}
            clients = []
            for account in ex.accounts:
                answer, _ = await rest_get(
                    http, ex.rest_url, "/v5/account/wallet-balance", "accountType=UNIFIED", account
                )
                for coin in answer["result"]["list"][0]["coin"]:
                    balances[(account.account_id, coin["coin"])] = Decimal(coin["walletBalance"])
                ws = await connect(ex.ws_url)
                await auth(ws, account)
                assert (await request(ws, {"op": "subscribe", "args": ["execution"]}))["success"]
                clients.append((account, ws))
            await ex.advance(300)
            await ex.stop_market()
            truth = ex.truth()
            net_fills: dict[Key, Decimal] = defaultdict(Decimal)
            pushed: dict[str, dict[str, Any]] = {}
            for account, ws in clients:
                await ws.send(json.dumps({"req_id": "end", "op": "ping"}))
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if frame.get("op") == "pong":
                        break
                    if frame.get("topic") != "execution":
                        continue
                    for e in frame["data"]:
                        key = (account.account_id, SETTLE[e["category"]])
                        # The ledger identity: execPnl - execFee of every execution, funding
                        # (its fee) included, is the balance's whole change.
                        balances[key] += Decimal(e["execPnl"]) - Decimal(e["execFee"])
                        pushed[e["execId"]] = e
                        if e["execType"] == "Funding":
                            continue  # a payment on the position, not a trade of it
                        signed = Decimal(e["execQty"]) * (1 if e["side"] == "Buy" else -1)
                        net_fills[(account.account_id, e["category"], e["symbol"], 0)] += signed
                await ws.close()
        for wallet in truth["wallets"]:
            got = balances[(wallet["account_id"], wallet["coin"])]
            assert got == Decimal(wallet["wallet_balance"])
        # Every execution of the truth was pushed once, with the same values.
        assert sorted(pushed) == sorted(e["exec_id"] for e in truth["executions"])
        for e in truth["executions"]:
            push = pushed[e["exec_id"]]
            assert (push["execType"], push["symbol"], push["side"]) == (
                e["exec_type"], e["symbol"], e["side"],
            )  # fmt: skip
            assert (push["execQty"], push["execPrice"], push["execFee"]) == (
                e["exec_qty"], e["exec_price"], e["exec_fee"],
            )  # fmt: skip
            assert push["execTime"] == str(e["exec_time"])
        assert {e["execType"] for e in pushed.values()} == {
            "Trade", "Funding", "BustTrade", "AdlTrade",
        }  # fmt: skip
        net_truth: dict[Key, Decimal] = defaultdict(Decimal)
        for p in truth["positions"]:
            signed = Decimal(p["size"]) * (-1 if p["side"] == "Sell" else 1)
            net_truth[(p["account_id"], p["category"], p["symbol"], 0)] += signed
        assert {k: v for k, v in net_truth.items() if v} == {
            k: v for k, v in net_fills.items() if v
        }

    asyncio.run(main())


class Mirror:
    """A minimal capture client: pushes plus a REST resync after every (re)connect."""

    def __init__(self, ex: Exchange, account: Account, http: aiohttp.ClientSession) -> None:
        self.ex, self.account, self.http = ex, account, http
        self.positions: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.wallets: dict[str, dict[str, Any]] = {}
        self.connects = 0

    def _position(self, category: str, item: dict[str, Any]) -> None:
        key = (category, item["symbol"], item["positionIdx"])
        rank = (int(item["updatedTime"]), item["seq"])
        old = self.positions.get(key)
        if old is None or (int(old["updatedTime"]), old["seq"]) <= rank:
            self.positions[key] = {**item, "entry": item.get("entryPrice", item.get("avgPrice"))}

    def _wallet(self, element: dict[str, Any], ts: int) -> None:
        for coin in element["coin"]:
            old = self.wallets.get(coin["coin"])
            if old is None or old["ts"] <= ts:
                self.wallets[coin["coin"]] = {**coin, "ts": ts}

    async def _get(self, path: str, query: str) -> dict[str, Any]:
        while True:
            answer, _ = await rest_get(self.http, self.ex.rest_url, path, query, self.account)
            if answer["retCode"] == 0:
                return answer
            await asyncio.sleep(0.05)  # injected REST errors: try again

    async def _resync(self) -> None:
        wallet = await self._get("/v5/account/wallet-balance", "accountType=UNIFIED")
        self._wallet(wallet["result"]["list"][0], wallet["time"])
        for category, symbols in SYMBOLS.items():
            # By symbol: flat positions are listed too, so a close missed in a gap is seen.
            for symbol in symbols:
                query = f"category={category}&symbol={symbol}"
                answer = await self._get("/v5/position/list", query)
                for item in answer["result"]["list"]:
                    self._position(category, item)

    async def run(self) -> None:
        while True:
            try:
                async with connect(self.ex.ws_url) as ws:
                    if not (await auth(ws, self.account))["success"]:
                        continue
                    await ws.send(json.dumps({"op": "subscribe", "args": ["position", "wallet"]}))
                    self.connects += 1
                    await self._resync()
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame.get("topic") == "position":
                            for item in frame["data"]:
                                self._position(item["category"], item)
                        elif frame.get("topic") == "wallet":
                            self._wallet(frame["data"][0], frame["creationTime"])
            except (ConnectionClosed, OSError):
                pass
            await asyncio.sleep(0.02)

    def positions_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "account_id": self.account.account_id, "category": c, "symbol": s,
                "position_idx": i, "side": p["side"], "size": p["size"], "entry_price": p["entry"],
            }
            for (c, s, i), p in sorted(self.positions.items())
        ]  # fmt: skip

    def wallet_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "account_id": self.account.account_id, "coin": coin,
                "wallet_balance": w["walletBalance"], "equity": w["equity"],
            }
            for coin, w in self.wallets.items()
        ]  # fmt: skip


def comparable(rows: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """Rows as sets of tuples, decimals compared as Decimal."""
    return {
        tuple((k, Decimal(v) if k in DECIMAL_KEYS else v) for k, v in sorted(r.items()))
        for r in rows
    }


def key_of(row: dict[str, Any]) -> Key:
    return (row["account_id"], row["category"], row["symbol"], row["position_idx"])


def test_state_is_rebuildable_from_pushes_and_resync_despite_drops() -> None:
    async def main() -> None:
        faults = FaultConfig(drop_per_s=3.0, rest_error_rate=0.2)
        async with (
            Exchange(accounts=4, seed=17, duration=1.2, trade_rate=8, faults=faults) as ex,
            aiohttp.ClientSession() as http,
        ):
            mirrors = [Mirror(ex, a, http) for a in ex.accounts]
            tasks = [asyncio.create_task(m.run()) for m in mirrors]
            await ex.wait_market_closed(timeout=10)
            await asyncio.sleep(0.5)  # the grace period: reconnects finish their resync
            truth = ex.truth()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            drops = sum(ex.fault_counts()["drop"].values())
        assert drops > 0 and sum(m.connects for m in mirrors) > len(mirrors)
        got = [p for m in mirrors for p in m.positions_rows()]
        truth_keys = {key_of(p) for p in truth["positions"]}
        extra = [p for p in got if key_of(p) not in truth_keys]
        assert all(p["size"] == "0" for p in extra)  # never-traded slots listed by symbol
        kept = [p for p in got if key_of(p) in truth_keys]
        assert comparable(kept) == comparable(truth["positions"])
        wallets = [w for m in mirrors for w in m.wallet_rows()]
        assert comparable(wallets) == comparable(truth["wallets"])

    asyncio.run(main())
