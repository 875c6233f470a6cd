"""The Parquet store on real files: the same answers as the DuckDB store (exact decimals, NULLs,
replays stored once), file names and partitions, files whole or absent, crash leftovers, and
the catalog beside the tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import ingestor
from ingestor import queries
from ingestor.sinks import open_reader
from ingestor.sinks.duckdb_store import DuckDBStore
from ingestor.sinks.parquet_files import PART, STALE_TEMP_S
from ingestor.sinks.parquet_store import ParquetStore
from tests.parquet_helpers import events

FIXTURES = Path(__file__).parent / "fixtures"
POSITION_PUSH = (FIXTURES / "position_push.json").read_bytes()
WALLET_PUSH = (FIXTURES / "wallet_push.json").read_bytes()


def position_push(message_id: str, updated_ms: int, size: str, seq: int) -> bytes:
    push = orjson.loads(POSITION_PUSH)
    push["id"] = message_id
    push["creationTime"] = updated_ms + 5
    push["data"][0].update(updatedTime=str(updated_ms), size=size, seq=seq, side="Buy")
    return orjson.dumps(push)


def batches(frames: list[bytes], account_id: str = "acct-1") -> list[tuple[str, pa.RecordBatch]]:
    return list(ingestor.decode(frames, account_id=account_id).items())


def as_rest(pairs: list[tuple[str, pa.RecordBatch]]) -> list[tuple[str, pa.RecordBatch]]:
    """The same rows as a REST resync reports them: no message id, source `rest`."""
    out = []
    for table, batch in pairs:
        if table in ("position_snapshots", "wallet_snapshots") and batch.num_rows:
            n = batch.num_rows
            batch = batch.set_column(
                batch.schema.get_field_index("source"), "source", pa.array(["rest"] * n)
            ).set_column(
                batch.schema.get_field_index("message_id"), "message_id", pa.nulls(n, pa.string())
            )
        out.append((table, batch))
    return out


def parquet_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*/*.parquet"))


def read(root: Path, sql: str) -> list[tuple]:
    with open_reader("parquet", root) as con:
        return con.execute(sql).fetchall()


def test_tables_mirror_the_core_schemas_and_answer_while_empty(tmp_path):
    root = tmp_path / "tree"
    store = ParquetStore(root)
    store.create()
    files = parquet_files(root)
    store.create()  # idempotent: no second placeholder
    assert parquet_files(root) == files
    core = ingestor.schemas()
    for table in queries.TABLES:
        columns = read(root, f"DESCRIBE {table}")
        assert [c[0] for c in columns] == [*core[table].names, "date"]
        assert read(root, f"SELECT count(*) FROM {table}") == [(0,)]
    types = dict((c[0], c[1]) for c in read(root, "DESCRIBE position_snapshots"))
    assert types["size"] == "DECIMAL(38,18)"
    assert types["exchange_ts"] == "TIMESTAMP WITH TIME ZONE"
    assert types["date"] == "DATE"
    assert read(root, "SELECT count(*) FROM latest_positions") == [(0,)]
    assert read(root, "SELECT count(*) FROM gaps") == [(0,)]


def test_same_answers_as_the_duckdb_store(tmp_path):
    """Exact decimals, NULLs, replays in one flush and across flushes, REST rows kept as
    observations of their own: every table and view answers as the DuckDB store does."""
    push = position_push("m1", 1_700_000_000_000, "1.5", 10)
    flushes = [
        batches([push, push, WALLET_PUSH]),
        batches([push, WALLET_PUSH, position_push("m2", 1_700_000_001_000, "1e-18", 11)]),
        as_rest(batches([push])),
        as_rest(batches([push])),
        batches([b'{"topic":"position","data":[{"size":"x"}]}', b"not json"], account_id="b"),
        events(0, 3),
    ]
    parquet = ParquetStore(tmp_path / "tree")
    parquet.create()
    duck = DuckDBStore(tmp_path / "c.duckdb")
    duck.create()
    for flush in flushes:
        parquet.write(flush)
        duck.write(flush)
    with duckdb.connect(str(tmp_path / "c.duckdb"), read_only=True) as con:
        checks = [f"SELECT * FROM {t}" for t in queries.TABLES] + [
            "SELECT * FROM latest_positions",
            "SELECT * FROM latest_wallets",
            "SELECT * FROM positions_asof(TIMESTAMPTZ '2023-11-14 22:13:20.5+00')",
            "SELECT * FROM gaps",
        ]
        want = {sql: sorted(map(repr, con.execute(sql).fetchall())) for sql in checks}
    for sql in checks:
        # The tree adds its partition column, `date`, to the history and its views.
        same = sql if "gaps" in sql else sql.replace("*", "* EXCLUDE (date)")
        got = sorted(map(repr, read(tmp_path / "tree", same)))
        assert got == want[sql], sql
    assert len(want["SELECT * FROM position_snapshots"]) == 4  # m1, m2 and two REST rows
    (latest,) = read(tmp_path / "tree", "SELECT size, seq FROM latest_positions")
    assert latest == (Decimal("0.000000000000000001"), 11)
    nulls = "SELECT count(*) FROM latest_wallets WHERE available_to_withdraw IS NULL"
    assert read(tmp_path / "tree", nulls) == [(1,)]  # an empty string is NULL, never 0
    # The replays are on disk; the views answer them once.
    stored = read(
        tmp_path / "tree",
        f"SELECT count(*) FROM read_parquet('{tmp_path}/tree/position_snapshots/*/*.parquet')",
    )
    assert stored == [(6,)]  # m1 three times, m2, two REST rows


def test_files_are_named_by_time_and_writer_and_partitioned_by_utc_day(tmp_path):
    root = tmp_path / "tree"
    first, second = ParquetStore(root, writer="box-a:1"), ParquetStore(root, writer="box_b.2")
    first.create()
    day_one = position_push("m1", 1_700_000_000_000, "1", 1)  # 2023-11-14 22:13:20 UTC
    day_two = position_push("m2", 1_700_006_400_000, "2", 2)  # 2023-11-15 00:00:00 UTC
    first.write(batches([day_one, day_two]))
    second.write(batches([position_push("m3", 1_700_006_400_001, "3", 3)]))
    first.write(batches([position_push("m4", 1_700_006_400_002, "4", 4)]))
    files = [p for p in parquet_files(root) if p.parent.parent.name == "position_snapshots"]
    days = {p.parent.name: [] for p in files}
    for path in files:
        days[path.parent.name].append(path.name)
    assert sorted(days) == ["date=2023-11-14", "date=2023-11-15", f"date={today()}"]
    names = [n for p in files for n in [p.name]]
    assert all(PART.match(n) for n in names), names
    assert len(set(names)) == len(names)
    writers = [PART.match(n).group(2) for n in sorted(days["date=2023-11-15"])]
    assert writers == ["box_a_1", "box_b.2", "box_a_1"]  # name order is write order
    for path in files:
        table = pq.read_table(path)
        ts = table.column("exchange_ts")
        if table.num_rows:
            day = pc.cast(ts, pa.date32()).unique().to_pylist()
            assert [f"date={d.isoformat()}" for d in day] == [path.parent.name]
            assert table.column("_origin_file").unique().to_pylist() == [path.name]
    metadata = pq.read_metadata(files[-1])
    assert metadata.row_group(0).column(5).compression == "ZSTD"


def today() -> str:
    return datetime.now(UTC).date().isoformat()


REPLACE_THEN_DIE = """
import os, signal, sys
from ingestor.sinks import parquet_files
from ingestor.sinks.parquet_store import ParquetStore
from tests.parquet_helpers import events
store = ParquetStore(sys.argv[1])
store.write(events(0, 5))
# The next file is written whole to its temporary name; the process dies before the rename.
parquet_files.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
store.write(events(5, 5))
"""


def test_a_file_is_whole_or_absent_and_crash_leftovers_are_removed(tmp_path):
    root = tmp_path / "tree"
    store = ParquetStore(root)
    store.create()
    died = subprocess.run(
        [sys.executable, "-c", REPLACE_THEN_DIE, str(root)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr
    day = root / "connection_events" / "date=2026-03-01"
    (leftover,) = list(day.glob(".*.tmp"))
    assert pq.read_table(leftover).num_rows == 5  # whole, but never renamed
    # Readers never meet it: only the first flush answers.
    assert read(root, "SELECT count(*) FROM connection_events") == [(5,)]
    # A temporary file of another writer still alive is left alone until it is stale.
    foreign = day / ".part-20260301T000000.000000Z-elsewhere_1-000001.parquet.tmp"
    foreign.write_bytes(b"half a file")
    ParquetStore(root).create()
    assert not leftover.exists()  # its process (this host) has ended
    assert foreign.exists()
    old = time.time() - STALE_TEMP_S - 1
    os.utime(foreign, (old, old))
    ParquetStore(root).create()
    assert not foreign.exists()
    assert read(root, "SELECT count(*) FROM connection_events") == [(5,)]


def test_a_failed_write_leaves_no_visible_file(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    store = ParquetStore(root)
    store.create()
    before = parquet_files(root)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("ingestor.sinks.parquet_files.pq.write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        store.write(events(0, 3))
    assert parquet_files(root) == before
    assert read(root, "SELECT count(*) FROM connection_events") == [(0,)]


HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT count(*) FROM connection_events").fetchone()[0], flush=True)
sys.stdin.readline()
print(con.execute("SELECT count(*) FROM connection_events").fetchone()[0], flush=True)
"""


def test_writers_and_catalog_rebuilds_never_wait_on_a_reader(tmp_path):
    root = tmp_path / "tree"
    store = ParquetStore(root)
    store.create()
    store.write(events(0, 2))
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root / "catalog.duckdb")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "2"
        again = ParquetStore(root)
        again.create()  # swaps in a new catalog while the reader holds the old one
        assert again.write(events(2, 3)) == 3
        reader.stdin.write("\n")
        reader.stdin.flush()
        # The open catalog's views read the tree as it is now.
        assert reader.stdout.readline().strip() == "5"
    finally:
        reader.kill()
        reader.wait()
    assert read(root, "SELECT count(*) FROM connection_events") == [(5,)]


def test_query_command_reads_the_tree(tmp_path):
    root = tmp_path / "tree"
    store = ParquetStore(root)
    store.create()
    store.write(batches([position_push("m1", 1_700_000_000_000, "1.25", 1), WALLET_PUSH]))
    command = ["query", "latest-positions", "--sink", "parquet", "--store", str(root)]
    shown = subprocess.run(
        [sys.executable, "-m", "ingestor", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "BTCUSDT" in shown.stdout and "1.25" in shown.stdout
    with pytest.raises(duckdb.IOException, match="no Parquet store"):
        open_reader("parquet", tmp_path / "absent")
