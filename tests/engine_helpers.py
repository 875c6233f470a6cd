"""Shared by the engine and service tests: accounts for the simulator, waiting, and reading
captured rows back through the stores' own views."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from decimal import Decimal

import duckdb
import pyarrow as pa

from ingestor import queries
from ingestor.decode import schemas

#: Engine settings for loopback tests: quick pings, backoff and flushes, no connect budget.
FAST = {
    "ping_interval": 0.5,
    "pong_timeout": 1.0,
    "handshake_timeout": 5.0,
    "backoff_base": 0.05,
    "backoff_cap": 0.5,
    "connect_budget": 100_000,
    "connect_window": 1.0,
    "connect_burst": 100_000,
    "flush_interval": 0.1,
    "rest_timeout": 5.0,
}


def specs(exchange, accounts=None, **changes) -> list[dict[str, object]]:
    """Collector account mappings for the simulator's accounts."""
    chosen = exchange.accounts if accounts is None else accounts
    return [
        {
            "id": a.account_id,
            "ws_url": exchange.ws_url,
            "rest_url": exchange.rest_url,
            "api_key": a.api_key,
            "api_secret": a.api_secret,
            "topics": ["position", "wallet"],
            **changes,
        }
        for a in chosen
    ]


def wait_until(predicate: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


class Captured:
    """Batches taken from a collector, gathered per table."""

    def __init__(self) -> None:
        self.batches: dict[str, list[pa.RecordBatch]] = {}

    def add(self, pairs: Iterable[tuple[str, pa.RecordBatch]]) -> int:
        rows = 0
        for table, batch in pairs:
            self.batches.setdefault(table, []).append(batch)
            rows += batch.num_rows
        return rows

    def take(self, collector, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.add(collector.next_batches(0.05))

    def table(self, name: str) -> pa.Table:
        return pa.Table.from_batches(self.batches.get(name, []), schema=schemas()[name])

    def rows(self, name: str) -> list[dict]:
        return self.table(name).to_pylist()

    def events(self, account_id: str | None = None) -> list[str]:
        return [
            e["event"]
            for e in self.rows("connection_events")
            if account_id in (None, e["account_id"])
        ]

    def store(self) -> duckdb.DuckDBPyConnection:
        """An in-memory store with the same tables and views as the real ones."""
        con = duckdb.connect()
        for statement in queries.create_tables() + queries.VIEWS:
            con.execute(statement)
        for name in queries.TABLES:
            arrow = self.table(name)  # noqa: F841 - read by name in the SQL below
            con.execute(f"INSERT INTO {name} SELECT * FROM arrow")
        return con


def latest_state(con: duckdb.DuckDBPyConnection) -> tuple[dict, dict]:
    """{(account, category, symbol, idx): (side, size, entry)} and
    {(account, coin): (wallet_balance, equity)} from the latest_* views."""
    positions = {
        (a, c, s, i): (side or "", size, entry)
        for a, c, s, i, side, size, entry in con.execute(
            "SELECT account_id, category, symbol, position_idx, side, size, entry_price "
            "FROM latest_positions"
        ).fetchall()
    }
    wallets = {
        (a, coin): (balance, equity)
        for a, coin, balance, equity in con.execute(
            "SELECT account_id, coin, wallet_balance, equity FROM latest_wallets"
        ).fetchall()
    }
    return positions, wallets


def differences(got: tuple[dict, dict], truth: dict, *, complete: bool = False) -> list[tuple]:
    """What the captured latest state gets wrong against the simulator's truth.

    The truth lists positions ever opened; a capture may also hold flat slots the exchange
    listed when asked by symbol (a hedge-mode side never traded): those must be flat.
    Engine tests run the market by hand after connecting, so there every truth key is
    captured; `complete=True` asserts that too.
    """
    want_positions, want_wallets = truth_state(truth)
    got_positions, got_wallets = got
    # A position opened and closed entirely while nobody listened (before the first
    # subscription, or inside one gap) leaves nothing to capture: the exchange lists open
    # positions only. Absent-and-flat is that case; anything else must match exactly.
    wrong = [
        (key, got_positions.get(key), want)
        for key, want in want_positions.items()
        if got_positions.get(key) != want
        and (complete or not (key not in got_positions and want[:2] == ("", 0)))
    ]
    wrong += [
        (key, value, "not in the truth: must be flat")
        for key, value in got_positions.items()
        if key not in want_positions and value[:2] != ("", 0)
    ]
    wrong += [
        (key, got_wallets.get(key), want)
        for key, want in want_wallets.items()
        if got_wallets.get(key) != want
    ]
    wrong += [
        (key, value, "not in the truth")
        for key, value in got_wallets.items()
        if key not in want_wallets
    ]
    return wrong


def truth_state(truth: dict) -> tuple[dict, dict]:
    positions = {
        (p["account_id"], p["category"], p["symbol"], p["position_idx"]): (
            p["side"],
            Decimal(p["size"]),
            Decimal(p["entry_price"]),
        )
        for p in truth["positions"]
    }
    wallets = {
        (w["account_id"], w["coin"]): (Decimal(w["wallet_balance"]), Decimal(w["equity"]))
        for w in truth["wallets"]
    }
    return positions, wallets
