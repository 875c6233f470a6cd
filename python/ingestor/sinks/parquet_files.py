"""The Parquet tree's layout, and the one way a file enters it: written whole under a temporary
name that no reader's glob matches, fsynced, renamed into place, its directory fsynced. A reader
or a crash therefore meets a whole file or none.

    <root>/<table>/date=YYYY-MM-DD/part-<UTC time>-<writer id>-<n>.parquet
    <root>/<table>/date=YYYY-MM-DD/.part-....parquet.tmp      (being written; never read)
    <root>/catalog.duckdb                                      (views over the tree)
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingestor.decode import schemas
from ingestor.queries import ORIGIN_FILE, ORIGIN_ROW

CATALOG = "catalog.duckdb"
COMPRESSION = "zstd"
#: Rows per row group: DuckDB's own default, so a scan splits files into even units of work.
ROW_GROUP_ROWS = 122_880
#: The writer starts another file past this many rows of one (table, day) in one flush.
FILE_ROWS = 1_000_000
#: A temporary file this old belongs to a writer that died: no flush takes this long.
STALE_TEMP_S = 600.0
#: Environment variable naming this writer in file names (default: host and process id).
WRITER_ID_ENV = "INGESTOR_WRITER_ID"

PART = re.compile(r"^part-(\d{8}T\d{6}\.\d{6}Z)-([A-Za-z0-9_.]+)-(\d+)\.parquet$")
TEMP = re.compile(r"^\.(part-.+\.parquet)\.tmp$")
DAY = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def file_schema(table: str) -> pa.Schema:
    """The core's schema for the table, plus each row's identity."""
    return (
        schemas()[table]
        .append(pa.field(ORIGIN_FILE, pa.string(), nullable=False))
        .append(pa.field(ORIGIN_ROW, pa.int64(), nullable=False))
    )


def with_origin(table: pa.Table, name: str) -> pa.Table:
    """The rows, each marked as row i of the file `name`."""
    rows = table.num_rows
    return table.append_column(
        pa.field(ORIGIN_FILE, pa.string(), nullable=False), pa.array([name] * rows, pa.string())
    ).append_column(
        pa.field(ORIGIN_ROW, pa.int64(), nullable=False), pa.array(range(rows), pa.int64())
    )


def writer_id(name: str | None = None) -> str:
    """Names this writer in its file names: unique among the writers sharing a root, and safe
    inside a file name (only letters, digits, `_` and `.`)."""
    raw = name or os.environ.get(WRITER_ID_ENV) or f"{socket.gethostname()}_{os.getpid()}"
    return re.sub(r"[^A-Za-z0-9_.]", "_", raw)


class Namer:
    """File names that sort by time and never repeat: the time, the writer, a counter."""

    def __init__(self, writer: str) -> None:
        self.writer = writer
        self.n = 0

    def next(self) -> str:
        self.n += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        return f"part-{stamp}-{self.writer}-{self.n:06d}.parquet"


def table_glob(root: Path, table: str) -> str:
    return str(root.resolve() / table / "*" / "*.parquet")


def day_dir(root: Path, table: str, day: date) -> Path:
    return root / table / f"date={day.isoformat()}"


def day_dirs(root: Path, table: str) -> list[Path]:
    folder = root / table
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and DAY.match(p.name))


def part_files(directory: Path) -> list[Path]:
    """The whole files of a day, oldest name first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if PART.match(p.name))


def temp_path(directory: Path, name: str) -> Path:
    return directory / f".{name}.tmp"


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path) -> None:
    """Creates the folder and makes its name durable in its parents."""
    if directory.is_dir():
        return
    missing = [directory, *(p for p in directory.parents if not p.exists())]
    directory.mkdir(parents=True, exist_ok=True)
    for created in missing:
        fsync_path(created.parent)


def publish(temporary: Path, final: Path) -> None:
    """Makes a whole temporary file visible under its final name, durably."""
    fsync_path(temporary)
    os.replace(temporary, final)
    # The rename is the instant of publication; compaction's grace period counts from it.
    os.utime(final)
    fsync_path(final.parent)


def write_file(directory: Path, name: str, table: pa.Table) -> Path:
    ensure_dir(directory)
    temporary = temp_path(directory, name)
    pq.write_table(table, temporary, compression=COMPRESSION, row_group_size=ROW_GROUP_ROWS)
    final = directory / name
    publish(temporary, final)
    return final


def _dead_here(writer: str) -> bool:
    """Whether a writer id of the default form names a process of this host that has ended."""
    host, _, pid = writer.rpartition("_")
    if not pid.isdigit() or host.removeprefix("compact_") != writer_id(socket.gethostname()):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale_temps(
    directory: Path, also_dead: Callable[[str], bool] | None = None
) -> list[Path]:
    """Removes temporary files that no living writer will finish: older than STALE_TEMP_S,
    left by a process of this host that has ended, or by a writer `also_dead` names."""
    now = time.time()
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        found = TEMP.match(path.name)
        if not found:
            continue
        part = PART.match(found.group(1))
        with contextlib.suppress(FileNotFoundError):
            old = now - path.stat().st_mtime > STALE_TEMP_S
            writer = part.group(2) if part else ""
            if old or (part and (_dead_here(writer) or (also_dead and also_dead(writer)))):
                path.unlink()
                removed.append(path)
    return removed
