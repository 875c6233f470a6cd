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
