"""The best pure-Python pipeline we could write: `websockets` + orjson, values gathered into
column lists (no object per row), one pyarrow batch per table per flush with the decimal and
timestamp casts done in C by pyarrow, appended to DuckDB in one transaction.

It keeps the same columns as ingestor (every documented field, decimals exact, "" as NULL),
using the field lists of the tests' reference decoder, so the comparison is like for like.

    .venv/bin/python benches/pipelines/pure_python.py --accounts accounts.yaml --store p.duckdb
"""

from __future__ import annotations

import sys
from operator import itemgetter
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import main

from tests.reference_decoder import (
    BOOL,
    DEC,
    INT,
    POSITION_FIELDS,
    SIDE,
    TS,
    WALLET_COIN_FIELDS,
)

DECIMAL = pa.decimal128(38, 18)
TIMESTAMP = pa.timestamp("ms", tz="UTC")
KEYS = [("symbol", "symbol", "str"), ("category", "category", "str"),
        ("positionIdx", "position_idx", INT), ("updatedTime", "exchange_ts", TS)]  # fmt: skip
ACCOUNT_FIELDS = [("accountType", "account_type", "str"), ("totalEquity", "total_equity", DEC),
                  ("totalWalletBalance", "total_wallet_balance", DEC),
                  ("totalAvailableBalance", "total_available_balance", DEC),
                  ("accountIMRate", "account_im_rate", DEC),
                  ("accountMMRate", "account_mm_rate", DEC), ("coin", "coin", "str")]  # fmt: skip


def arrow_type(kind: str) -> pa.DataType:
    return {DEC: DECIMAL, INT: pa.int64(), TS: TIMESTAMP, BOOL: pa.bool_()}.get(kind, pa.string())


NULL_STRING = pa.scalar(None, pa.string())


def typed(values: list, kind: str) -> pa.Array:
    """One column from the values as sent: numbers and times arrive as strings ("" is NULL)
    and are cast in C; integers and booleans arrive as JSON numbers and booleans."""
    if kind in (INT, BOOL):
        return pa.array(values, arrow_type(kind))
    if kind == SIDE:
        values = [v if v not in ("", "None") else None for v in values]
    array = pa.array(values, pa.string())
    if kind not in (DEC, TS):
        return array
    array = pc.if_else(pc.equal(array, ""), NULL_STRING, array)
    if kind == DEC:
        return array.cast(DECIMAL)
    return array.cast(pa.int64()).cast(TIMESTAMP)


class Table:
    """Rows as tuples taken by one C-level `itemgetter` call each; `batch()` turns them into
    columns with one `zip` and types each column in C."""

    def __init__(self, fields: list[tuple[str, str, str]]) -> None:
        self.fields = fields
        self.keys = [key for key, _, _ in fields]
        self.take = itemgetter(*self.keys)
        self.rows: list[tuple] = []

    def add(self, account_id: str, message: dict, row: dict) -> None:
        try:
            values = self.take(row)
        except KeyError:  # a field left out: NULL, as for ""
            values = tuple(row.get(key) for key in self.keys)
        self.rows.append((account_id, message["id"], message["creationTime"], *values))

    def batch(self) -> pa.RecordBatch:
        columns = list(zip(*self.rows, strict=True))
        arrays = [
            pa.array(columns[0], pa.string()),
            pa.array(columns[1], pa.string()),
            pa.array(columns[2], pa.int64()).cast(TIMESTAMP),
        ]
        arrays += [
            typed(list(c), kind) for c, (_, _, kind) in zip(columns[3:], self.fields, strict=True)
        ]
        names = ["account_id", "message_id", "creation_ts"] + [c for _, c, _ in self.fields]
        return pa.RecordBatch.from_arrays(arrays, names=names)


class PurePython:
    def __init__(self, store: Path) -> None:
        self.db = duckdb.connect(str(store))
        self.positions = Table(KEYS + POSITION_FIELDS)
        self.wallets = Table(ACCOUNT_FIELDS + WALLET_COIN_FIELDS)
        self.created = False

    def on_frame(self, account_id: str, text: str | bytes) -> None:
        message = orjson.loads(text)
        topic = message.get("topic")
        if topic is None:
            return
        if topic == "wallet":
            for element in message["data"]:
                for coin in element["coin"]:
                    self.wallets.add(account_id, message, {**element, **coin})
        else:
            for element in message["data"]:
                self.positions.add(account_id, message, element)

    def flush(self) -> list[int]:
        created: list[int] = []
        batches = {}
        for name, table in (("positions", self.positions), ("wallets", self.wallets)):
            if table.rows:
                batches[name] = table.batch()
                created += [row[2] for row in table.rows]
                table.rows = []
        if not batches:
            return created
        self.db.execute("BEGIN")
        for name, batch in batches.items():
            self.db.register("incoming", batch)
            if not self.created:
                self.db.execute(f"CREATE TABLE IF NOT EXISTS {name} AS FROM incoming LIMIT 0")
            self.db.execute(f"INSERT INTO {name} SELECT * FROM incoming")
            self.db.unregister("incoming")
        self.db.execute("COMMIT")
        self.created = self.created or len(batches) == 2
        return created


if __name__ == "__main__":
    main(PurePython, __doc__.splitlines()[0])
