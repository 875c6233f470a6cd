"""`store_commits`, the writer's record of its own commits, in every store kind (real files):
one row per table per flush, carried by the next flush and written at close, never a row of
its own recorded; a record delivered twice is one row; a store that refuses the record still
takes every commit, and one that fails keeps the record until it takes it. The writer runs in
this process (it ignores SIGTERM): each test is bounded by its own watchdog, which kills the
process rather than let it hang."""

from __future__ import annotations

import faulthandler
from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

import ingestor
from ingestor import queries
from ingestor.config import Settings, Sink
from ingestor.service import writer
from ingestor.service.messages import ACK, BATCH, STORE_HEALTH, to_ipc
from ingestor.sinks import open_reader, open_store
from ingestor.sinks.duckdb_store import DuckDBStore
from tests.test_duckdb_store import WALLET_PUSH, position_push
from tests.test_writer import run_writer

KINDS = ["duckdb", "parquet", "ducklake"]
NAMES = {"duckdb": "c.duckdb", "parquet": "tree", "ducklake": "c.lake"}
#: Every test here ends well within this, or the process is killed with its stacks dumped.
TEST_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def watchdog():
    faulthandler.dump_traceback_later(TEST_TIMEOUT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def record(at_us: int, tables: dict[str, int], pid: int = 7, seq: int = 1) -> pa.RecordBatch:
    """A flush's record: `tables` -> rows, every row of it stamped `at_us`."""
    stamp = pa.array([at_us] * len(tables), pa.int64()).cast(pa.timestamp("us", "UTC"))
    columns = {
        "local_ts": stamp,
        "table_name": list(tables),
        "rows": list(tables.values()),
        "oldest_local_ts": stamp,
        "newest_local_ts": stamp,
        "writer_pid": [pid] * len(tables),
        "flush_seq": [seq] * len(tables),
        "write_us": [100] * len(tables),
    }
    return pa.RecordBatch.from_pydict(columns, schema=ingestor.schemas()[queries.STORE_COMMITS])


def query(kind: str, path, sql: str) -> list[tuple]:
    with open_reader(kind, path) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("kind", KINDS)
def test_a_record_delivered_twice_is_one_row_in_every_store(tmp_path, kind):
    path = tmp_path / NAMES[kind]
    store = open_store(kind, path)
    store.create()
    flush = record(1_700_000_000_000_000, {"position_snapshots": 3, "wallet_snapshots": 2})
    store.write([(queries.STORE_COMMITS, flush)])
    store.write([(queries.STORE_COMMITS, flush)])  # a restarted writer handed it again
    # The next flush of another writer at the same instant is its own row.
    store.write([(queries.STORE_COMMITS, record(1_700_000_000_000_000, {"rejects": 1}, pid=8))])
    store.close()
    rows = query(
        kind,
        path,
        "SELECT epoch_us(local_ts), table_name, rows, writer_pid FROM store_commits ORDER BY 4, 2",
    )
    at = 1_700_000_000_000_000
    assert rows == [
        (at, "position_snapshots", 3, 7),
        (at, "wallet_snapshots", 2, 7),
        (at, "rejects", 1, 8),
    ]


def flushes(count: int) -> tuple[list[tuple], Counter, dict[str, list[int]]]:
    """Batches of several tables, as the supervisor sends them (one delivered twice), the
    rows handed of each table, and the first and last arrival handed of each (µs). Arrival
    times an hour ago, a second apart."""
    start = datetime.now(UTC) - timedelta(hours=1)
    messages, handed, arrivals, seq = [], Counter(), {}, 0

    def send(table: str, batch: pa.RecordBatch) -> None:
        nonlocal seq
        seq += 1
        messages.append(((BATCH, seq, table), to_ipc(batch)))
        handed[table] += batch.num_rows
        at = batch.column("local_ts").cast(pa.int64()).to_pylist()
        first, last = arrivals.setdefault(table, [min(at), max(at)])
        arrivals[table] = [min(first, *at), max(last, *at)]

    for b in range(count):
        at = start + timedelta(seconds=b)
        frames = [position_push(f"m{b}-{r}", 1_700_000_000_000 + b * 1000 + r, "1", r)
                  for r in range(4)]  # fmt: skip
        frames += [WALLET_PUSH, b'{"topic":"position","data":[{]}']  # a reject too
        decoded = ingestor.decode(frames, account_id=f"acct-{b % 2}", received_at=at)
        for table, batch in decoded.items():
            if batch.num_rows:
                send(table, batch)
        if b == 1:
            send("position_snapshots", decoded["position_snapshots"])  # delivered again
    return messages, handed, arrivals


@pytest.mark.parametrize("kind", KINDS)
def test_the_writer_records_every_commit_of_every_table(tmp_path, kind, monkeypatch):
    path = tmp_path / NAMES[kind]
    monkeypatch.setattr(writer, "COMMIT_ROWS", 8)  # several commits
    messages, handed, arrivals = flushes(6)
    settings = Settings(accounts=(), sink=Sink(kind=kind, path=str(path)))
    replies = run_writer(settings, messages)
    assert [r[1] for r in replies if r[0] == ACK][-1] == len(messages)
    rows = query(
        kind,
        path,
        "SELECT table_name, rows, epoch_us(local_ts), epoch_us(oldest_local_ts), "
        "epoch_us(newest_local_ts), writer_pid, flush_seq FROM store_commits",
    )
    recorded: Counter = Counter()
    for table, n, committed, oldest, newest, _, _ in rows:
        recorded[table] += n
        # Readable only after its last row arrived.
        assert oldest <= newest <= committed, (table, oldest, newest, committed)
    assert queries.STORE_COMMITS not in recorded, "the record's own rows are not recorded"
    assert set(recorded) == set(handed) == {"position_snapshots", "wallet_snapshots", "rejects"}
    # One writer; its flushes numbered 1, 2, ... without a hole (none lost), several of them,
    # and one instant per flush.
    assert len({r[5] for r in rows}) == 1
    seqs = sorted({r[6] for r in rows})
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 4, seqs
    assert len({(r[6], r[2]) for r in rows}) == len(seqs)
    stored = {t: query(kind, path, f"SELECT count(*) FROM {t}")[0][0] for t in handed}
    for table, count in stored.items():
        if kind == "ducklake":
            # The lake tells what its dedup kept: the batch delivered twice added nothing.
            assert recorded[table] == count, table
        else:
            # The hot tier and the tree take every row handed; their views answer replays once.
            assert recorded[table] == handed[table] >= count, table
        # The flushes' arrivals span what was handed, no more.
        assert min(r[3] for r in rows if r[0] == table) == arrivals[table][0]
        assert max(r[4] for r in rows if r[0] == table) == arrivals[table][1]
    assert handed["position_snapshots"] > stored["position_snapshots"], "a replay was sent"


class RefusingStore(DuckDBStore):
    """A store that refuses any write carrying `store_commits` rows (a schema it cannot
    take, say), and takes everything else."""

    def write(self, batches):
        if any(t == queries.STORE_COMMITS for t, _ in batches):
            raise RuntimeError("store_commits refused")
        return super().write(batches)


def test_a_store_that_refuses_the_record_still_takes_every_commit(tmp_path, monkeypatch, caplog):
    path = tmp_path / "c.duckdb"
    monkeypatch.setattr(writer, "COMMIT_ROWS", 8)
    monkeypatch.setattr(writer, "open_store", lambda *a, **k: RefusingStore(path))
    messages, handed, _ = flushes(6)
    settings = Settings(accounts=(), sink=Sink(kind="duckdb", path=str(path)))
    with caplog.at_level("WARNING"):
        replies = run_writer(settings, messages)
    assert not [r for r in replies if r[0] == STORE_HEALTH], "no write failed"
    assert [r[1] for r in replies if r[0] == ACK][-1] == len(messages)
    for table in handed:
        assert query("duckdb", path, f"SELECT count(*) FROM {table}")[0][0] > 0
    assert query("duckdb", path, "SELECT count(*) FROM store_commits") == [(0,)]
    # Tried twice, then given up on, loudly.
    assert "tried again with the next" in caplog.text
    assert "no longer recorded by this writer" in caplog.text


class FailingStore(DuckDBStore):
    """Fails its 2nd and 3rd writes (a full disk, for a moment), whatever they carry."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.writes = 0

    def write(self, batches):
        self.writes += 1
        if self.writes in (2, 3):
            raise OSError(28, "No space left on device")
        return super().write(batches)


def test_a_failing_store_loses_no_record(tmp_path, monkeypatch):
    path = tmp_path / "c.duckdb"
    monkeypatch.setattr(writer, "COMMIT_ROWS", 8)
    monkeypatch.setattr(writer, "RETRY_FIRST_S", 0.05)
    monkeypatch.setattr(writer, "open_store", lambda *a, **k: FailingStore(path))
    messages, handed, _ = flushes(6)
    settings = Settings(accounts=(), sink=Sink(kind="duckdb", path=str(path)))
    replies = run_writer(settings, messages)
    # The write carrying the first record failed, and so did the same write without it: the
    # store was failing, once reported; the retry took the data, the next write the record.
    assert [h[1] for h in replies if h[0] == STORE_HEALTH] == [False, True]
    rows = query("duckdb", path, "SELECT flush_seq, table_name, rows FROM store_commits")
    seqs = sorted({r[0] for r in rows})
    assert seqs == list(range(1, len(seqs) + 1)), "every flush recorded"
    recorded: Counter = Counter()
    for _, table, n in rows:
        recorded[table] += n
    assert recorded == handed
