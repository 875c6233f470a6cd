"""Conformance against a client nobody here wrote: pybit 5.17, pointed at the simulator.

pybit is synchronous (threads), so the exchange runs on its own loop thread here.
"""

from __future__ import annotations

import queue
import time
from decimal import Decimal
from typing import Any

import pytest
from pybit import unified_trading
from pybit.exceptions import InvalidRequestError

from ingestor.sim import Exchange


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class SentSubscriptions(dict):
    """pybit sends a subscribe and only then records its req_id; over loopback the answer can
    arrive in between, pybit's reader finds no such req_id and drops the connection. A lookup
    here waits a moment for the sender to record it, as Bybit's network latency always lets
    it."""

    def __missing__(self, req_id: str) -> str:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            time.sleep(0.001)
            if dict.__contains__(self, req_id):
                return dict.__getitem__(self, req_id)
        raise KeyError(req_id)


def private_websocket(
    monkeypatch: pytest.MonkeyPatch, ex: Exchange, api_key: str, api_secret: str
) -> unified_trading.WebSocket:
    """pybit's private WebSocket, pointed at the simulator."""
    monkeypatch.setattr(unified_trading, "PRIVATE_WSS", ex.ws_url)
    ws = unified_trading.WebSocket(
        channel_type="private", testnet=False, api_key=api_key, api_secret=api_secret
    )
    ws.subscriptions = SentSubscriptions()
    return ws


def http_client(ex: Exchange, api_key: str, api_secret: str) -> unified_trading.HTTP:
    session = unified_trading.HTTP(api_key=api_key, api_secret=api_secret, max_retries=1)
    session.endpoint = ex.rest_url
    return session


def test_pybit_websocket_authenticates_subscribes_and_receives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Exchange(accounts=2, seed=11, trade_rate=10).running_in_thread() as ex:
        account = ex.accounts[0]
        received: queue.Queue[dict[str, Any]] = queue.Queue()
        ws = private_websocket(monkeypatch, ex, account.api_key, account.api_secret)
        try:
            ws.position_stream(received.put)
            ws.wallet_stream(received.put)
            topics: set[str] = set()
            deadline = time.monotonic() + 10
            while topics != {"position", "wallet"}:
                message = received.get(timeout=max(0.01, deadline - time.monotonic()))
                topics.add(message["topic"])
                assert isinstance(message["data"], list) and message["data"]
            assert ws.auth is True
        finally:
            ws.exit()
        counters = ex.counters()[account.account_id]
        assert counters["auth_ok"] == 1 and counters["subscribed"] == 2


def test_pybit_websocket_receives_executions_and_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    with Exchange(accounts=1, seed=11, trade_rate=10).running_in_thread() as ex:
        account = ex.accounts[0]
        received: queue.Queue[dict[str, Any]] = queue.Queue()
        ws = private_websocket(monkeypatch, ex, account.api_key, account.api_secret)
        try:
            ws.execution_stream(received.put)
            ws.order_stream(received.put)
            seen: dict[str, dict[str, Any]] = {}
            deadline = time.monotonic() + 10
            while set(seen) != {"execution", "order"}:
                message = received.get(timeout=max(0.01, deadline - time.monotonic()))
                seen[message["topic"]] = message["data"][0]
        finally:
            ws.exit()
        known = {e["exec_id"] for e in ex.truth()["executions"]}
        assert seen["execution"]["execId"] in known
        assert seen["order"]["orderId"] in {o["order_id"] for o in ex.truth()["orders"]}


def test_pybit_http_reads_executions_and_orders() -> None:
    with Exchange(
        accounts=1, seed=12, market=False, trade_rate=10, funding_interval=1
    ).running_in_thread() as ex:
        ex.run_sync(ex.advance(120))
        ex.run_sync(ex.stop_market())
        truth = ex.truth()
        session = http_client(ex, ex.accounts[0].api_key, ex.accounts[0].api_secret)
        listed = []
        for category in ("linear", "inverse"):
            cursor = ""
            while True:
                answer = session.get_executions(category=category, limit=40, cursor=cursor)
                assert answer["retCode"] == 0
                listed += [
                    (e["execId"], e["execType"], e["execQty"], e["execFee"])
                    for e in answer["result"]["list"]
                ]
                cursor = answer["result"]["nextPageCursor"]
                if not cursor:
                    break
        expected = [
            (e["exec_id"], e["exec_type"], e["exec_qty"], e["exec_fee"])
            for e in truth["executions"]
        ]
        assert sorted(listed) == sorted(expected) and {e[1] for e in listed} >= {"Funding"}
        final = {o["order_id"]: o for o in truth["orders"]}
        history = session.get_order_history(category="linear", limit=50)["result"]["list"]
        assert history
        for order in history:
            assert order["orderStatus"] == final[order["orderId"]]["order_status"]
            assert order["cumExecQty"] == final[order["orderId"]]["cum_exec_qty"]
        answer = session.get_open_orders(category="linear", settleCoin="USDT")
        open_ids = {o["orderId"] for o in answer["result"]["list"]}
        assert open_ids == {
            o["order_id"]
            for o in truth["orders"]
            if o["order_status"] in ("New", "PartiallyFilled")
            and ex.account("sim-0001").orders[o["order_id"]].instrument.category == "linear"
        }
        closed = session.get_open_orders(category="linear", settleCoin="USDT", openOnly=1)
        assert {o["orderStatus"] for o in closed["result"]["list"]} <= {"Filled", "Cancelled"}


def test_pybit_websocket_with_wrong_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with Exchange(accounts=1, seed=11, market=False).running_in_thread() as ex:
        monkeypatch.setattr(unified_trading, "PRIVATE_WSS", ex.ws_url)
        account = ex.accounts[0]
        ws = unified_trading.WebSocket(
            channel_type="private", testnet=False, api_key=account.api_key, api_secret="W" * 36
        )
        try:
            wait_until(lambda: ex.counters().get(account.account_id, {}).get("auth_failed") == 1)
            assert ws.auth is False
        finally:
            ws.exit()
        assert "auth_ok" not in ex.counters()[account.account_id]


def test_pybit_http_reads_positions_and_wallet_with_valid_signatures() -> None:
    with Exchange(accounts=2, seed=12, market=False, trade_rate=20).running_in_thread() as ex:
        ex.run_sync(ex.advance(80))
        ex.run_sync(ex.stop_market())
        truth = ex.truth()
        account = ex.accounts[0]
        session = http_client(ex, account.api_key, account.api_secret)
        listed = []
        for category, coin in (("linear", "USDT"), ("inverse", "BTC")):
            answer = session.get_positions(category=category, settleCoin=coin, limit=200)
            assert answer["retCode"] == 0
            listed += [
                (category, p["symbol"], p["positionIdx"], p["size"])
                for p in answer["result"]["list"]
            ]
        expected = [
            (p["category"], p["symbol"], p["position_idx"], p["size"])
            for p in truth["positions"]
            if p["account_id"] == account.account_id and p["size"] != "0"
        ]
        assert sorted(listed) == sorted(expected) and expected
        wallet = session.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]
        balances = {c["coin"]: Decimal(c["walletBalance"]) for c in wallet["coin"]}
        assert balances == {
            w["coin"]: Decimal(w["wallet_balance"])
            for w in truth["wallets"]
            if w["account_id"] == account.account_id
        }
        info = session.get_api_key_information()
        assert info["result"]["apiKey"] == account.api_key


def test_pybit_http_tampered_signature_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with Exchange(accounts=1, seed=12, market=False).running_in_thread() as ex:
        account = ex.accounts[0]
        wrong_secret = http_client(ex, account.api_key, "S" * 36)
        with pytest.raises(InvalidRequestError) as refused:
            wrong_secret.get_wallet_balance(accountType="UNIFIED")
        assert refused.value.status_code == 10004
        tampered = http_client(ex, account.api_key, account.api_secret)
        real_auth = tampered._auth

        def flip_last_hex_digit(**kwargs: Any) -> str:
            signature = real_auth(**kwargs)
            return signature[:-1] + ("0" if signature[-1] != "0" else "1")

        monkeypatch.setattr(tampered, "_auth", flip_last_hex_digit)
        with pytest.raises(InvalidRequestError) as refused:
            tampered.get_positions(category="linear", settleCoin="USDT")
        assert refused.value.status_code == 10004
        assert ex.counters()[account.account_id]["rest_denied"] == 2
