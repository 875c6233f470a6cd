"""Signed REST endpoints: Bybit's header scheme, error codes, paging and the quirks."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp

from ingestor.sim import Exchange, FaultConfig
from tests.sim.helpers import now_ms, rest_get

POSITIONS = "/v5/position/list"
WALLET = "/v5/account/wallet-balance"
QUERY_API = "/v5/user/query-api"


def test_signature_timestamp_and_key_errors() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=1, market=False) as ex,
            aiohttp.ClientSession() as http,
        ):
            account = ex.accounts[0]
            query = "category=linear&settleCoin=USDT"
            answer, _ = await rest_get(http, ex.rest_url, POSITIONS, query, account)
            assert answer["retCode"] == 0 and answer["retMsg"] == "OK"
            assert set(answer) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
            bad, _ = await rest_get(http, ex.rest_url, POSITIONS, query, account, secret="x" * 36)
            assert bad["retCode"] == 10004 and bad["result"] == {}
            assert account.api_secret not in bad["retMsg"]
            stale, _ = await rest_get(
                http, ex.rest_url, POSITIONS, query, account, timestamp=now_ms() - 6000
            )
            assert stale["retCode"] == 10002
            wide, _ = await rest_get(
                http, ex.rest_url, POSITIONS, query, account,
                timestamp=now_ms() - 6000, recv_window="20000",
            )  # fmt: skip
            assert wide["retCode"] == 0
            future, _ = await rest_get(
                http, ex.rest_url, POSITIONS, query, account, timestamp=now_ms() + 5000
            )
            assert future["retCode"] == 10002
            async with http.get(f"{ex.rest_url}{POSITIONS}?{query}") as response:
                unsigned = await response.json()
            assert unsigned["retCode"] == 10003
            assert ex.counters()["sim-0001"]["rest_denied"] == 3

    asyncio.run(main())


def test_position_list_rules_and_cursor_paging() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=4, market=False, hedge_ratio=1.0, trade_rate=20) as ex,
            aiohttp.ClientSession() as http,
        ):
            account = ex.accounts[0]
            await ex.advance(100)
            missing, _ = await rest_get(http, ex.rest_url, POSITIONS, "category=linear", account)
            assert missing["retCode"] == 10001
            bad_cat, _ = await rest_get(http, ex.rest_url, POSITIONS, "category=spot", account)
            assert bad_cat["retCode"] == 10001
            open_linear = {
                (p.instrument.symbol, p.idx)
                for p in account.positions.values()
                if p.instrument.category == "linear" and p.size > 0
            }
            assert len(open_linear) >= 2
            seen: list[tuple[str, int]] = []
            cursor = ""
            pages = 0
            while True:
                query = "category=linear&limit=1&settleCoin=USDT"
                if cursor:
                    query += f"&cursor={cursor}"
                answer, _ = await rest_get(http, ex.rest_url, POSITIONS, query, account)
                assert answer["retCode"] == 0, answer
                result = answer["result"]
                assert result["category"] == "linear"
                for item in result["list"]:
                    assert "avgPrice" in item and "entryPrice" not in item
                    assert "category" not in item
                    seen.append((item["symbol"], item["positionIdx"]))
                pages += 1
                cursor = result["nextPageCursor"]
                if not cursor:
                    break
            assert sorted(seen) == sorted(open_linear) and pages == len(open_linear)
            bogus, _ = await rest_get(
                http,
                ex.rest_url,
                POSITIONS,
                "category=linear&settleCoin=USDT&cursor=bm9wZQ",
                account,
            )
            assert bogus["retCode"] == 10001

    asyncio.run(main())


def test_symbol_query_lists_flat_slots_settle_coin_query_does_not() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=4, market=False, hedge_ratio=1.0) as ex,
            aiohttp.ClientSession() as http,
        ):
            account = ex.accounts[0]
            by_symbol, _ = await rest_get(
                http, ex.rest_url, POSITIONS, "category=linear&symbol=ETHUSDT", account
            )
            items = by_symbol["result"]["list"]
            assert [(i["positionIdx"], i["side"], i["size"]) for i in items] == [
                (1, "", "0"),
                (2, "", "0"),
            ]
            by_coin, _ = await rest_get(
                http, ex.rest_url, POSITIONS, "category=linear&settleCoin=USDT", account
            )
            assert by_coin["result"]["list"] == []
            inverse, _ = await rest_get(http, ex.rest_url, POSITIONS, "category=inverse", account)
            assert inverse["retCode"] == 0 and inverse["result"]["list"] == []

    asyncio.run(main())


def test_rest_state_matches_truth() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=2, seed=6, market=False, trade_rate=20) as ex,
            aiohttp.ClientSession() as http,
        ):
            await ex.advance(60)
            await ex.stop_market()
            truth = ex.truth()
            for account in ex.accounts:
                answer, _ = await rest_get(
                    http, ex.rest_url, WALLET, "accountType=UNIFIED", account
                )
                (wallet,) = answer["result"]["list"]
                got = {
                    c["coin"]: (Decimal(c["walletBalance"]), Decimal(c["equity"]))
                    for c in wallet["coin"]
                }
                want = {
                    w["coin"]: (Decimal(w["wallet_balance"]), Decimal(w["equity"]))
                    for w in truth["wallets"]
                    if w["account_id"] == account.account_id
                }
                assert got == want
                for position in truth["positions"]:
                    if position["account_id"] != account.account_id:
                        continue
                    query = f"category={position['category']}&symbol={position['symbol']}"
                    answer, _ = await rest_get(http, ex.rest_url, POSITIONS, query, account)
                    (item,) = [
                        i for i in answer["result"]["list"]
                        if i["positionIdx"] == position["position_idx"]
                    ]  # fmt: skip
                    assert (item["side"], item["size"], item["avgPrice"]) == (
                        position["side"], position["size"], position["entry_price"],
                    )  # fmt: skip

    asyncio.run(main())


def test_wallet_balance_coin_filter_and_account_type() -> None:
    async def main() -> None:
        async with (
            Exchange(accounts=1, seed=1, market=False) as ex,
            aiohttp.ClientSession() as http,
        ):
            account = ex.accounts[0]
            answer, _ = await rest_get(
                http, ex.rest_url, WALLET, "accountType=UNIFIED&coin=BTC", account
            )
            (wallet,) = answer["result"]["list"]
            assert [c["coin"] for c in wallet["coin"]] == ["BTC"]
            assert wallet["accountType"] == "UNIFIED"
            assert wallet["coin"][0]["availableToWithdraw"] == ""
            contract, _ = await rest_get(http, ex.rest_url, WALLET, "accountType=CONTRACT", account)
            assert contract["retCode"] == 10001

    asyncio.run(main())


def test_query_api_reports_key_permissions() -> None:
    async def main() -> None:
        permissions = {"sim-0001": "read", "sim-0002": "trade", "sim-0003": "withdraw"}
        async with (
            Exchange(accounts=3, seed=1, market=False, permissions=permissions) as ex,
            aiohttp.ClientSession() as http,
        ):
            infos = {}
            for account in ex.accounts:
                answer, _ = await rest_get(http, ex.rest_url, QUERY_API, "", account)
                assert answer["retCode"] == 0
                infos[account.account_id] = answer["result"]
                assert answer["result"]["apiKey"] == account.api_key
                assert answer["result"]["secret"] == ""
        assert [infos[a]["readOnly"] for a in permissions] == [1, 0, 0]
        assert ["Withdraw" in infos[a]["permissions"]["Wallet"] for a in permissions] == [
            False,
            False,
            True,
        ]

    asyncio.run(main())


def test_rate_limit_and_injected_errors_are_counted() -> None:
    async def main() -> None:
        faults = [
            FaultConfig(accounts=frozenset({"sim-0001"}), rest_rate_limit=2),
            FaultConfig(accounts=frozenset({"sim-0002"}), rest_error_rate=1.0),
        ]
        async with (
            Exchange(accounts=3, seed=1, market=False, faults=faults) as ex,
            aiohttp.ClientSession() as http,
        ):
            limited, errored, clean = ex.accounts
            codes = []
            for _ in range(6):
                answer, headers = await rest_get(http, ex.rest_url, QUERY_API, "", limited)
                codes.append(answer["retCode"])
                assert headers["X-Bapi-Limit"] == "2"
                assert int(headers["X-Bapi-Limit-Reset-Timestamp"]) > now_ms() - 1000
            # Six calls span at most two one-second windows of two calls each.
            assert set(codes) == {0, 10006} and codes.count(10006) >= 2
            answer, _ = await rest_get(http, ex.rest_url, QUERY_API, "", errored)
            assert answer["retCode"] == 10016
            answer, _ = await rest_get(http, ex.rest_url, QUERY_API, "", clean)
            assert answer["retCode"] == 0
            faults_seen = ex.fault_counts()
            assert faults_seen["rest_rate_limit"] == {"sim-0001": codes.count(10006)}
            assert faults_seen["rest_error"] == {"sim-0002": 1}
            await ex.stop_market()
            answer, _ = await rest_get(http, ex.rest_url, QUERY_API, "", errored)
            assert answer["retCode"] == 0  # faults cease when the market closes

    asyncio.run(main())
