"""`python -m ingestor compact`: merges a day's small Parquet files into larger ones, without a
reader ever seeing a row twice or missing one, while writers keep adding files.

Every row carries its identity (the file it was first written to, its index there) and the
views keep one row per identity. A merge therefore goes in two steps that each keep every
reader's answer the same:

1. publish: the merged file is written whole under a temporary name and renamed into the day's
   folder. Its footer lists its inputs. For a while its rows are in two files; readers see
   them once, by identity.
2. retire: at least `grace` seconds later, the inputs are deleted. A file is deleted only when a
   file listing it as input has been published for `grace` seconds, and only once the files it
   lists itself are gone, so rows are never left in a file nobody lists.

The grace keeps the two steps apart in time: a reader's directory listing (milliseconds)
cannot see the merged file missing and its inputs already gone. A query that listed an input
and had not opened it yet when it was deleted fails ("Cannot open file"); retried, it answers
right. No query answers wrongly. Killed at any point, a run
leaves whole files only; the next run removes stale temporary files, retires what earlier runs
published, and merges the rest. Files that arrive while a run works are not its inputs: it
lists a day once, and merges only files no published file lists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingestor import queries
from ingestor.sinks.parquet_files import (
    COMPRESSION,
    ROW_GROUP_ROWS,
    Namer,
    day_dirs,
    fsync_path,
    part_files,
    publish,
    remove_stale_temps,
    temp_path,
    writer_id,
)

log = logging.getLogger(__name__)

#: The footer key that lists a merged file's inputs (a JSON list of file names).
INPUTS_KEY = b"ingestor.inputs"
LOCK = ".compact.lock"
COMPACTOR_PREFIX = "compact_"
DEFAULT_TARGET_MB = 128
DEFAULT_GRACE_S = 60.0


class CompactionBusy(Exception):
    """Another compaction holds the root."""


@dataclass
class Report:
    merged: int = 0  # input files merged
    written: int = 0  # merged files published
    removed: int = 0  # superseded files deleted
    temps: int = 0  # stale temporary files deleted


@contextlib.contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """One compaction per root at a time (an advisory lock: local file systems)."""
    with (root / LOCK).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CompactionBusy(f"another compaction is running on {root}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def inputs_of(path: Path) -> list[str]:
    metadata = pq.read_metadata(path).metadata or {}
    return json.loads(metadata.get(INPUTS_KEY, b"[]"))


def retire(directory: Path, grace: float) -> int:
    """Deletes the files whose rows a file published `grace` seconds ago holds; returns how
    many. A file that lists inputs goes only after its inputs have gone."""
    removed = 0
    while True:
        files = {p.name: p for p in part_files(directory)}
        listed = {name: inputs_of(path) for name, path in files.items()}
        now = time.time()
        covered = {
            name
            for merged, names in listed.items()
            if now - files[merged].stat().st_mtime >= grace
            for name in names
            if name in files
        }
        doomed = [n for n in sorted(covered) if not any(i in files for i in listed[n])]
        if not doomed:
            return removed
        for name in doomed:
            files[name].unlink()
            log.debug("removed %s, merged into a newer file", files[name])
        fsync_path(directory)
        removed += len(doomed)


def data_bytes(path: Path) -> int:
    """The file's compressed column data: what a merged file is made of (a small file is
    mostly footer and schema, which merging does not repeat)."""
    metadata = pq.read_metadata(path)
    return sum(
        group.column(c).total_compressed_size
        for group in map(metadata.row_group, range(metadata.num_row_groups))
        for c in range(group.num_columns)
    )


def candidates(directory: Path) -> list[Path]:
    """The day's files no published file lists (the others' rows are merged already)."""
    files = part_files(directory)
    listed = {name for path in files for name in inputs_of(path)}
    return [path for path in files if path.name not in listed]


def groups(files: list[Path], target_bytes: int) -> list[list[Path]]:
    """Runs of consecutive small files, each about `target_bytes` of data at most, of 2+ files.
    A file past half the target is big enough and left as it is."""
    runs: list[list[Path]] = [[]]
    size = 0
    for path in files:
        bytes_ = data_bytes(path)
        if bytes_ >= target_bytes // 2:
            runs.append([])
            size = 0
            continue
        if size + bytes_ > target_bytes:
            runs.append([])
            size = 0
        runs[-1].append(path)
        size += bytes_
    return [r for r in runs if len(r) > 1]


def compact_day(directory: Path, target_bytes: int, namer: Namer) -> tuple[int, int]:
    """Merges the day's small files until no run of them is left; returns (files merged, files
    written). Merged files shrink below their inputs' sum, so a merged file may be merged again
    in the same run. Only the files listed at the start take part: a busy writer cannot keep a
    run going."""
    start = candidates(directory)
    files = list(start)
    while runs := groups(files, target_bytes):
        for run in runs:
            merged = merge(directory, run, namer.next())
            log.info("merged %d files into %s", len(run), merged)
            files = [f for f in files if f not in run] + [merged]
    return len(set(start) - set(files)), len(set(files) - set(start))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with the schema's columns, in its order; columns it lacks are NULL."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def merge(directory: Path, inputs: list[Path], name: str) -> Path:
    """Writes the inputs' rows, in order and with their identities, as one published file.
    Memory holds one input and one row group at a time."""
    schema = pa.unify_schemas([pq.read_schema(p).remove_metadata() for p in inputs])
    schema = schema.with_metadata({INPUTS_KEY: json.dumps([p.name for p in inputs]).encode()})
    temporary = temp_path(directory, name)
    try:
        with pq.ParquetWriter(temporary, schema, compression=COMPRESSION) as writer:
            pending: list[pa.Table] = []
            rows = 0
            for path in inputs:
                pending.append(conform(pq.ParquetFile(path).read(), schema))
                rows += pending[-1].num_rows
                if rows >= ROW_GROUP_ROWS:
                    whole = pa.concat_tables(pending)
                    cut = rows - rows % ROW_GROUP_ROWS
                    writer.write_table(whole.slice(0, cut), row_group_size=ROW_GROUP_ROWS)
                    pending, rows = [whole.slice(cut)], rows - cut
            if rows:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
        final = directory / name
        publish(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    return final


def compact(
    root: str | Path,
    *,
    day: date | None = None,
    tables: tuple[str, ...] = queries.TABLES,
    target_mb: float = DEFAULT_TARGET_MB,
    grace: float = DEFAULT_GRACE_S,
    wait: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Merges small files of the chosen days, then (if `wait`) waits out the grace and deletes
    their inputs; without waiting, the next run deletes them."""
    root = Path(root)
    report = Report()
    target_bytes = int(target_mb * 1024 * 1024)
    compactor = COMPACTOR_PREFIX + writer_id()
    namer = Namer(compactor)
    with exclusive(root):
        directories = [
            d
            for table in tables
            for d in day_dirs(root, table)
            if day is None or d.name == f"date={day.isoformat()}"
        ]
        for directory in directories:
            # With the lock held, no other compactor is writing anywhere under this root.
            report.temps += len(remove_stale_temps(directory, also_dead=_is_compactor))
            report.removed += retire(directory, grace)
        touched = []
        for directory in directories:
            merged, written = compact_day(directory, target_bytes, namer)
            report.merged += merged
            report.written += written
            if written:
                touched.append(directory)
        if touched and wait:
            sleep(grace)
            for directory in touched:
                report.removed += retire(directory, grace)
    return report


def _is_compactor(writer: str) -> bool:
    return writer.startswith(COMPACTOR_PREFIX)


def compact_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingestor compact",
        description="Merge a Parquet store's small files per day, safely while it is written "
        "and read.",
    )
    parser.add_argument("--store", required=True, type=Path, help="the Parquet root")
    parser.add_argument("--date", type=date.fromisoformat, help="only this UTC day (YYYY-MM-DD)")
    parser.add_argument("--table", choices=queries.TABLES, help="only this table")
    parser.add_argument(
        "--target-mb",
        type=float,
        default=DEFAULT_TARGET_MB,
        help=f"merged file size aimed at, in MiB (default {DEFAULT_TARGET_MB})",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_S,
        help="seconds between publishing a merged file and deleting its inputs "
        f"(default {DEFAULT_GRACE_S:.0f}); a query running longer may fail (never answer "
        "wrongly) and must be retried",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait out the grace: the next run deletes this run's inputs",
    )
    return parser


def run_compact(argv: list[str]) -> int:
    args = compact_parser().parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    if not args.store.is_dir():
        print(f"error: {args.store} is not a Parquet store", file=sys.stderr)
        return 2
    try:
        report = compact(
            args.store,
            day=args.date,
            tables=(args.table,) if args.table else queries.TABLES,
            target_mb=args.target_mb,
            grace=args.grace,
            wait=not args.no_wait,
        )
    except CompactionBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"merged {report.merged} files into {report.written}; removed {report.removed} merged "
        f"files and {report.temps} stale temporary files"
    )
    return 0
