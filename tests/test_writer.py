"""The writer process's loop, run in this process against a real DuckDB file: what goes into
one commit."""

from __future__ import annotations

import queue

import duckdb

import ingestor
from ingestor.config import Settings, Sink
from ingestor.service import writer
from ingestor.service.messages import BATCH, END, to_ipc
from ingestor.sinks.duckdb_store import DuckDBStore
from tests.test_duckdb_store import position_push


class RecordingStore(DuckDBStore):
    """The real store, noting the rows each commit was given."""

    def __init__(self, path, commits: list[int]) -> None:
        super().__init__(path)
        self.commits = commits

    def write(self, batches):
        self.commits.append(sum(b.num_rows for _, b in batches))
        return super().write(batches)


def queued_batches(count: int, rows: int) -> queue.Queue:
    q: queue.Queue = queue.Queue()
    for b in range(count):
        frames = [position_push(f"m{b}-{r}", 1_700_000_000_000 + b * 1000 + r, "1", r)
                  for r in range(rows)]  # fmt: skip
        batch = ingestor.decode(frames, account_id="acct-1")["position_snapshots"]
        q.put((BATCH, 0, "position_snapshots", to_ipc(batch)))
    q.put((END,))
    return q


def test_a_backlog_is_committed_in_commits_of_about_commit_rows(tmp_path, monkeypatch):
    path = tmp_path / "c.duckdb"
    monkeypatch.setattr(writer, "COMMIT_ROWS", 12)
    commits: list[int] = []
    monkeypatch.setattr(writer, "open_store", lambda *a, **k: RecordingStore(path, commits))
    settings = Settings(accounts=(), sink=Sink(kind="duckdb", path=str(path)))
    writer.run(settings, queued_batches(10, 5), queue.Queue())
    # Everything was queued at once: commits grow to the cap (a batch at a time), no further.
    assert commits == [15, 15, 15, 5]
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM position_snapshots").fetchone() == (50,)
