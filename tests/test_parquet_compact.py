"""`python -m ingestor compact` on real trees: the same answers after as before, a reader process
querying all along never sees a row twice or misses one, files that arrive meanwhile are kept
and merged once, and a compaction killed at any point is finished by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingestor import queries
from ingestor.sinks import open_reader
from ingestor.sinks.parquet_compact import compact, inputs_of
from ingestor.sinks.parquet_store import ParquetStore
from tests.engine_helpers import wait_until
from tests.parquet_helpers import READER, events

DAY = "connection_events/date=2026-03-01"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def filled(root: Path, files: int, rows: int = 10) -> ParquetStore:
    store = ParquetStore(root)
    store.create()
    for n in range(files):
        store.write(events(n * rows, rows))
    return store


def day_files(root: Path) -> list[Path]:
    return sorted((root / DAY).glob("*.parquet"))


def reasons(root: Path) -> list[int]:
    with open_reader("parquet", root) as con:
        return sorted(
            int(r) for (r,) in con.execute("SELECT reason FROM connection_events").fetchall()
        )


def stored_rows(root: Path) -> int:
    """Rows on disk, whatever the views make of them."""
    return sum(pq.read_metadata(p).num_rows for p in day_files(root))


def answers(root: Path) -> dict[str, list[str]]:
    checks = [f"SELECT * FROM {t}" for t in queries.TABLES] + [
        "SELECT * FROM latest_positions",
        "SELECT * FROM latest_wallets",
        "SELECT * FROM gaps",
    ]
    with open_reader("parquet", root) as con:
        return {sql: sorted(map(repr, con.execute(sql).fetchall())) for sql in checks}


def test_compaction_keeps_every_answer_and_merges_each_file_once(tmp_path):
    root = tmp_path / "tree"
    filled(root, files=60, rows=100)
    before = answers(root)
    report = compact(root, target_mb=0.03, grace=0)
    assert report.merged == 60 and report.removed >= 60
    merged = day_files(root)
    assert 1 < len(merged) < 10  # several files near the target, not one per flush
    assert answers(root) == before
    assert stored_rows(root) == 6000
    # Each input went into one file and is gone.
    listed = [name for path in merged for name in inputs_of(path)]
    assert len(listed) == len(set(listed)) > 0
    assert not any((root / DAY / name).exists() for name in listed)
    again = compact(root, target_mb=0.03, grace=0)
    assert (again.merged, again.removed) == (0, 0)
    # A bigger target merges the merged files again; identities travel along.
    assert compact(root, target_mb=64, grace=0).merged == len(merged)
    assert len(day_files(root)) == 1
    assert answers(root) == before


def start_reader(root: Path, expected: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", READER, str(root), str(root / "stop"), str(expected)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def stop_reader(root: Path, reader: subprocess.Popen) -> dict:
    (root / "stop").touch()
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    result = json.loads(out)
    assert result["wrong"] == 0 and result["errors"] == 0, err
    return result


def test_a_reader_never_sees_a_row_twice_or_misses_one_during_compaction(tmp_path):
    root = tmp_path / "tree"
    filled(root, files=200)
    reader = start_reader(root, expected=2000)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ingestor", "compact", "--store", str(root),
             "--target-mb", "0.1", "--grace", "2", "--table", "connection_events"],
            capture_output=True, text=True, env=ENV, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "merged 200 files" in done.stdout
    finally:
        result = stop_reader(root, reader)
    merged = len(day_files(root))
    assert merged < 200
    # The reader really ran across the change: it listed the day with the merged files and
    # their inputs side by side, and again with the inputs gone.
    assert result["queries"] > 0
    assert any(n > 200 for n in result["listings"]), result
    assert reasons(root) == list(range(2000))
    assert stored_rows(root) == 2000


WRITER = """
import os, sys
from ingestor.sinks.parquet_store import ParquetStore
from tests.parquet_helpers import events
root, stop, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = ParquetStore(root, writer="late")
n = first
while not os.path.exists(stop):
    store.write(events(n, 3))
    n += 3
print(n, flush=True)
"""


def test_files_arriving_during_compaction_are_kept_and_merged_once(tmp_path):
    root = tmp_path / "tree"
    filled(root, files=50)
    reader = start_reader(root, expected=500)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(root / "stop-writer"), "500"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        assert wait_until(lambda: len(day_files(root)) > 60, timeout=30)
        rounds = [compact(root, target_mb=0.05, grace=2) for _ in range(2)]
        assert all(r.merged for r in rounds)
    finally:
        (root / "stop-writer").touch()
        out, err = writer.communicate(timeout=60)
        result = stop_reader(root, reader)
    assert writer.returncode == 0, err
    written = int(out)
    assert result["queries"] > 0
    assert reasons(root) == list(range(written))
    compact(root, target_mb=0.05, grace=0)
    assert reasons(root) == list(range(written))
    assert stored_rows(root) == written  # no row kept twice on disk either
    listed = [name for path in day_files(root) for name in inputs_of(path)]
    assert len(listed) == len(set(listed))


KILLED = """
import os, signal, sys, time
from pathlib import Path
import pyarrow.parquet as pq
from ingestor.sinks import parquet_compact
from ingestor.sinks.parquet_files import PART

root, point = sys.argv[1], sys.argv[2]

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

def after(original):
    def wrapped(*args, **kwargs):
        original(*args, **kwargs)
        die()
    return wrapped

if point == "writing":
    pq.ParquetWriter.write_table = after(pq.ParquetWriter.write_table)
elif point == "published":
    parquet_compact.publish = after(parquet_compact.publish)
elif point == "retiring":
    unlink = Path.unlink

    def unlink_one_then_die(path, *args, **kwargs):
        unlink(path, *args, **kwargs)
        if PART.match(path.name):
            die()

    Path.unlink = unlink_one_then_die
sleep = die if point == "waiting" else time.sleep
parquet_compact.compact(root, target_mb=0.05, grace=0, sleep=sleep)
"""


@pytest.mark.parametrize("point", ["writing", "published", "waiting", "retiring"])
def test_a_compaction_killed_at_any_point_is_finished_by_the_next(tmp_path, point):
    root = tmp_path / "tree"
    filled(root, files=60)
    before = answers(root)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED, str(root), point],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # Whatever the kill left, readers get the same answers.
    assert answers(root) == before
    left = len(day_files(root))
    report = compact(root, target_mb=0.05, grace=0)
    assert report.merged + report.removed > 0
    assert answers(root) == before
    assert list((root / DAY).glob(".*.tmp")) == []
    assert stored_rows(root) == 600
    assert len(day_files(root)) < left
    assert compact(root, target_mb=0.05, grace=0).merged == 0
