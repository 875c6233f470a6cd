"""The writer process's loop, run in this process against a real DuckDB file: what goes into
one commit."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading

import duckdb
import pyarrow as pa

import ingestor
from ingestor import _core, queries
from ingestor.config import Settings, Sink
from ingestor.service import writer
from ingestor.service.messages import ACK, BATCH, END, STORE_HEALTH, to_ipc
from ingestor.sinks import faults
from ingestor.sinks.duckdb_store import DuckDBStore
from tests.test_duckdb_store import position_push


class RecordingStore(DuckDBStore):
    """The real store, noting the data rows each commit was given (the writer's record of
    its commits, `store_commits`, rides along and is not data)."""

    def __init__(self, path, commits: list[int]) -> None:
        super().__init__(path)
        self.commits = commits

    def write(self, batches):
        data = sum(b.num_rows for t, b in batches if t != queries.STORE_COMMITS)
        if data:
            self.commits.append(data)
        return super().write(batches)


def batch_messages(count: int, rows: int) -> list[tuple]:
    messages = []
    for b in range(count):
        frames = [position_push(f"m{b}-{r}", 1_700_000_000_000 + b * 1000 + r, "1", r)
                  for r in range(rows)]  # fmt: skip
        batch = ingestor.decode(frames, account_id="acct-1")["position_snapshots"]
        messages.append(((BATCH, b + 1, "position_snapshots"), to_ipc(batch)))
    return messages


def run_writer(settings: Settings, messages: list[tuple]) -> list[tuple]:
    """`writer.run` in this process, fed `messages` then END through a real pipe; returns
    what it sent back."""
    inbox_r, inbox_w = multiprocessing.Pipe(duplex=False)
    out_r, out_w = multiprocessing.Pipe(duplex=False)
    replies: list[tuple] = []

    def feed() -> None:
        for header, payload in messages:  # as the supervisor's sender does
            inbox_w.send(header)
            inbox_w.send_bytes(payload)
        inbox_w.send((END,))

    def collect() -> None:
        with contextlib.suppress(EOFError):
            while True:
                replies.append(out_r.recv())

    threads = [threading.Thread(target=feed), threading.Thread(target=collect)]
    for t in threads:
        t.start()
    writer.run(settings, inbox_r, out_w)
    out_w.close()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    return replies


def test_a_backlog_is_committed_in_commits_of_about_commit_rows(tmp_path, monkeypatch):
    path = tmp_path / "c.duckdb"
    monkeypatch.setattr(writer, "COMMIT_ROWS", 12)
    commits: list[int] = []
    monkeypatch.setattr(writer, "open_store", lambda *a, **k: RecordingStore(path, commits))
    settings = Settings(accounts=(), sink=Sink(kind="duckdb", path=str(path)))
    replies = run_writer(settings, batch_messages(10, 5))
    # Commits grow to the cap (a batch at a time), no further.
    assert sum(commits) == 50 and max(commits) == 15, commits
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM position_snapshots").fetchone() == (50,)
    acks = [r[1] for r in replies if r[0] == ACK]
    assert acks == sorted(acks) and acks[-1] == 10, "every batch acknowledged, in order"
    with duckdb.connect(str(path), read_only=True) as con:
        recorded = con.execute(
            "SELECT flush_seq, table_name, rows FROM store_commits ORDER BY flush_seq"
        ).fetchall()
    # Each commit recorded once, the last one's record written at close.
    assert recorded == [(i + 1, "position_snapshots", n) for i, n in enumerate(commits)]


def test_a_failing_commit_keeps_its_batches_and_is_retried(tmp_path, monkeypatch):
    """A Python exception inside the commit's transaction (the test hook) neither kills the
    writer nor loses a row: the store reports the failure, the retry commits everything."""
    path = tmp_path / "c.duckdb"
    monkeypatch.setenv(faults.FAIL_COMMITS_ENV, "2")
    monkeypatch.setattr(faults, "_failed", 0)
    monkeypatch.setattr(writer, "RETRY_FIRST_S", 0.05)
    settings = Settings(accounts=(), sink=Sink(kind="duckdb", path=str(path)))
    replies = run_writer(settings, batch_messages(4, 3))
    health = [r for r in replies if r[0] == STORE_HEALTH]
    assert [h[1] for h in health] == [False, False, True]
    assert "other: InjectedFault" in health[0][2]
    assert health[-1][3] == {"other": 2}
    acks = [r[1] for r in replies if r[0] == ACK]
    assert acks and acks[-1] == 4
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM position_snapshots").fetchone() == (12,)


def test_a_batch_delivered_twice_is_stored_once_in_every_table(tmp_path):
    """A restarted writer is handed the batches its predecessor had not acknowledged, some
    of which it may have committed: REST rows, rejects and connection events too."""
    path = tmp_path / "c.duckdb"
    frames = [position_push("m1", 1_700_000_000_000, "1", 1), b'{"topic":"position","data":1}']
    decoded = ingestor.decode(frames, account_id="acct-1")
    events = pa.table(
        {
            "account_id": ["acct-1"],
            "local_ts": pa.array([1_700_000_000_000_000], pa.timestamp("us", "UTC")),
            "event": ["subscribed"],
            "reason": pa.array([None], pa.string()),
            "backoff_ms": pa.array([None], pa.int64()),
            "conn_id": ["c1"],
        },
        schema=ingestor.schemas()["connection_events"],
    ).to_batches()[0]
    page = (
        b'{"retCode":0,"retMsg":"OK","result":{"category":"linear","list":[{"symbol":"BTCUSDT",'
        b'"side":"Buy","size":"1","positionIdx":0,"updatedTime":"1700000000000"}]},"time":1}'
    )
    rest = _core.decode_rest(
        page, endpoint="/v5/position/list", account_id="acct-1", received_at_us=1
    )["position_snapshots"]
    assert rest.column("message_id")[0].as_py().startswith("rest:")
    batches = [(t, b) for t, b in decoded.items() if b.num_rows] + [
        ("connection_events", events),
        ("position_snapshots", rest),
    ]
    store = DuckDBStore(path)
    store.create()
    store.write(batches)
    store.write(batches)
    expected = (("position_snapshots", 2), ("rejects", 1), ("connection_events", 1))
    with duckdb.connect(str(path), read_only=True) as con:  # both in the hot tier
        for table, rows in expected:
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (rows,), table
    store.close()
    with duckdb.connect(str(path), read_only=True) as con:  # moved: the second dropped
        for table, rows in expected:
            assert con.execute(f"SELECT count(*) FROM {table}_cold").fetchone() == (rows,), table
