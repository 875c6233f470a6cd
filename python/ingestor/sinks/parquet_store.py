"""The Parquet store: a hive-partitioned tree of immutable files, one new file per (table, UTC
day) per flush, and `catalog.duckdb` beside it with the same tables (as views) and the same
analyst views as the DuckDB store.

Files are only ever added (by writers) or replaced by merged copies (by `compact`); nothing is
rewritten in place, so several writers may share a root and readers never lock anything.
Replayed pushes are written as they come and answered once by the views (see
`queries.parquet_table_view`); the file a row was first written to and its place there travel
with it as its identity.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingestor import queries
from ingestor.decode import schemas
from ingestor.sinks import Batches, faults, group_by_table
from ingestor.sinks.parquet_files import (
    CATALOG,
    FILE_ROWS,
    STALE_TEMP_S,
    Namer,
    day_dir,
    day_dirs,
    ensure_dir,
    fsync_path,
    part_files,
    remove_stale_temps,
    table_glob,
    with_origin,
    write_file,
    writer_id,
)
from ingestor.sinks.spool import Spool

log = logging.getLogger(__name__)


def spool_directory(root: Path) -> Path:
    """Hidden from the readers' glob (`<root>/<table>/*/*.parquet`)."""
    return root / ".spool"


def partition_time(table: pa.Table) -> pa.ChunkedArray:
    """The time a row's day is taken from: the exchange's time where the table has one, else
    our arrival time (rejects and connection events have only that)."""
    local = table.column("local_ts")
    if "exchange_ts" not in table.column_names:
        return local
    return pc.coalesce(table.column("exchange_ts"), local)


def split_by_day(table: pa.Table) -> list[tuple[date, pa.Table]]:
    days = pc.cast(partition_time(table), pa.date32())
    return [
        (day, table.filter(pc.equal(days, pa.scalar(day, pa.date32()))))
        for day in sorted(pc.unique(days).to_pylist())
    ]


def build_catalog(root: Path) -> Path:
    """Writes `catalog.duckdb` afresh and swaps it in by rename: a reader that has the old one
    open keeps it, the next reader opens the new one, and nobody waits on a lock. The views
    hold the tree's absolute path, so a moved tree needs this run again (every writer start
    does)."""
    final = root / CATALOG
    for stale in root.glob(f".{CATALOG}.*.tmp"):
        # Left by a writer killed while building it; a build takes milliseconds.
        with contextlib.suppress(FileNotFoundError):
            if time.time() - stale.stat().st_mtime > STALE_TEMP_S:
                stale.unlink()
    temporary = root / f".{CATALOG}.{uuid.uuid4().hex}.tmp"
    try:
        with duckdb.connect(str(temporary)) as con:
            for table in queries.TABLES:
                con.execute(queries.parquet_table_view(table, table_glob(root, table)))
            for statement in queries.VIEWS:
                con.execute(statement)
        fsync_path(temporary)
        os.replace(temporary, final)
        fsync_path(root)
    finally:
        temporary.unlink(missing_ok=True)
        Path(f"{temporary}.wal").unlink(missing_ok=True)
    return final


def open_catalog(root: str | Path) -> duckdb.DuckDBPyConnection:
    catalog = Path(root) / CATALOG
    if not catalog.exists():
        raise duckdb.IOException(f"{catalog} does not exist: no Parquet store at {root}")
    return duckdb.connect(str(catalog), read_only=True)


class ParquetStore:
    def __init__(self, root: str | Path, *, writer: str | None = None) -> None:
        self.root = Path(root)
        self.namer = Namer(writer_id(writer))
        #: Only the supervisor spools here: batches a drain could not write in time, written
        #: first by the next writer (the tree itself never refuses a reader).
        self.spool = Spool(spool_directory(self.root))

    def create(self) -> None:
        ensure_dir(self.root)
        today = datetime.now(UTC).date()
        for table in queries.TABLES:
            days = day_dirs(self.root, table)
            for directory in days:
                for path in remove_stale_temps(directory):
                    log.info("removed %s, left by a writer that died", path)
            files = [f for directory in days for f in part_files(directory)]
            # A glob that matches nothing fails every query of the view: each table keeps at
            # least one file, a typed empty one until rows come. And the views union the
            # files' columns by name, so a tree written by an earlier version would show a
            # newer column only once a row of it came: a typed empty file shows it at once.
            # File names begin with their write time, so the newest file tells.
            newest = max(files, key=lambda f: f.name, default=None)
            if newest is None or not set(schemas()[table].names) <= set(
                pq.read_schema(newest).names
            ):
                self._write(table, today, schemas()[table].empty_table())
        build_catalog(self.root)

    def write(self, batches: Batches) -> int:
        """One file per (table, day) in this flush, each whole or absent; returns rows written
        (a replayed push counts here, the views answer it once). A failure (a full disk)
        raises: files written before it stay, and the views answer their rows once when the
        flush is written again."""
        faults.maybe_fail()
        rows = 0
        if len(self.spool):
            files, spooled = self.spool.peek()
            rows += self._write_all(spooled)
            self.spool.remove(files)
            log.info(
                "spool drained: %d rows from %d files written to %s", rows, len(files), self.root
            )
        return rows + self._write_all(batches)

    def _write_all(self, batches: Batches) -> int:
        tables = group_by_table(batches)
        rows = 0
        for name in queries.TABLES:
            if name not in tables:
                continue
            for day, part in split_by_day(tables[name]):
                for start in range(0, part.num_rows, FILE_ROWS):
                    rows += self._write(name, day, part.slice(start, FILE_ROWS))
        return rows

    def close(self) -> None:
        """Nothing waits: every write was whole on disk when it returned."""

    def _write(self, table: str, day: date, rows: pa.Table) -> int:
        name = self.namer.next()
        write_file(day_dir(self.root, table, day), name, with_origin(rows, name))
        return rows.num_rows
