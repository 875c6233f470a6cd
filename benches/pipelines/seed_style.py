"""The seed-style pipeline: how capture scripts usually start. `websockets` + `json`, one
object per row with floats for money, `executemany` into SQLite on every flush.

    .venv/bin/python benches/pipelines/seed_style.py --accounts accounts.yaml --store seed.sqlite
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import main


class Row:
    """One object per row: the account, the push's id and time, and every field as sent."""

    __slots__ = ("account_id", "creation_ms", "fields", "message_id")

    def __init__(self, account_id: str, message: dict, fields: dict) -> None:
        self.account_id = account_id
        self.message_id = message["id"]
        self.creation_ms = message["creationTime"]
        self.fields = {k: to_number(v) for k, v in fields.items() if k != "coin"}


def to_number(value):
    if isinstance(value, str) and value:
        try:
            return float(value)
        except ValueError:
            return value
    return value


class SeedStyle:
    def __init__(self, store: Path) -> None:
        self.db = sqlite3.connect(str(store))
        self.rows: dict[str, list[Row]] = {"positions": [], "wallets": []}
        self.columns: dict[str, list[str]] = {}

    def on_frame(self, account_id: str, text: str | bytes) -> None:
        message = json.loads(text)
        topic = message.get("topic")
        if topic is None:
            return  # auth, subscribe and pong answers
        for element in message["data"]:
            if topic == "wallet":
                for coin in element["coin"]:
                    self.rows["wallets"].append(Row(account_id, message, {**element, **coin}))
            else:
                self.rows["positions"].append(Row(account_id, message, element))

    def flush(self) -> list[int]:
        created = []
        for table, rows in self.rows.items():
            if not rows:
                continue
            columns = self.columns.get(table) or self._create(table, rows[0])
            marks = ", ".join("?" * (len(columns) + 3))
            self.db.executemany(
                f"INSERT INTO {table} VALUES ({marks})",
                [
                    (r.account_id, r.message_id, r.creation_ms, *(r.fields.get(c) for c in columns))
                    for r in rows
                ],
            )
            created += [r.creation_ms for r in rows]
            self.rows[table] = []
        self.db.commit()
        return created

    def _create(self, table: str, first: Row) -> list[str]:
        columns = list(first.fields)
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (account_id, message_id, creation_ms, "
            + ", ".join(f'"{c}"' for c in columns)
            + ")"
        )
        self.columns[table] = columns
        return columns


if __name__ == "__main__":
    main(SeedStyle, __doc__.splitlines()[0])
