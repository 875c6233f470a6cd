"""The stores batches are written to. Each takes `(table, pyarrow.RecordBatch)` pairs and
commits them as one unit per flush."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pyarrow as pa

Batches = Sequence[tuple[str, pa.RecordBatch]]


class Store(Protocol):
    """What the writer process needs of a store."""

    def create(self) -> None:
        """Creates tables, views and macros if they do not exist yet."""

    def write(self, batches: Batches) -> int:
        """Commits the batches (and anything spooled before them) as one unit; returns the
        rows committed now, 0 if they had to wait."""

    def close(self) -> None:
        """Commits what can be committed; leaves the rest spooled on disk."""


def group_by_table(batches: Batches) -> dict[str, pa.Table]:
    """One Arrow table per store table, in arrival order."""
    grouped: dict[str, list[pa.RecordBatch]] = {}
    for name, batch in batches:
        if batch.num_rows:
            grouped.setdefault(name, []).append(batch)
    return {name: pa.Table.from_batches(parts) for name, parts in grouped.items()}
