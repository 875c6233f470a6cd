"""The DuckDB store on real files: tables from the core's schemas, exact decimals, the views,
deduplication of replayed pushes, and a reader holding the file."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pytest

import ingestor
from ingestor import queries
from ingestor.sinks import insert_new, open_positions
from ingestor.sinks.duckdb_store import DuckDBStore

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


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_tables_mirror_the_core_schemas(tmp_path):
    store = DuckDBStore(tmp_path / "c.duckdb")
    store.create()
    store.create()  # idempotent
    core = ingestor.schemas()
    for table in queries.TABLES:
        columns = query(tmp_path / "c.duckdb", f"DESCRIBE {table}")
        assert [c[0] for c in columns] == core[table].names
    types = dict((c[0], c[1]) for c in query(tmp_path / "c.duckdb", "DESCRIBE position_snapshots"))
    assert types["size"] == "DECIMAL(38,18)"
    assert types["exchange_ts"] == "TIMESTAMP WITH TIME ZONE"


@pytest.mark.parametrize(
    "made_before, version, compression",
    [(False, "v1.4.0+", "ZSTD"), (True, "v1.0.0+", "FSST")],
    ids=["new file", "file of an earlier version"],
)
def test_raw_json_is_stored_with_the_compression_chosen_for_it(
    tmp_path, made_before, version, compression
):
    path = tmp_path / "c.duckdb"
    if made_before:  # a file made by DuckDB's default storage, as earlier versions did
        duckdb.connect(str(path)).close()
    store = DuckDBStore(path)
    store.create()
    # The same element in every push: left to itself, DuckDB picks a dictionary for it.
    frames = [position_push(f"m{i}", 1_700_000_000_000, "1", 7) for i in range(3000)]
    store.write(batches(frames))
    store.close()  # moves the rows into the file
    compressions = query(
        path,
        "SELECT DISTINCT compression FROM pragma_storage_info('position_snapshots_cold') "
        "WHERE column_name = 'raw_json' AND segment_type = 'VARCHAR'",
    )
    assert compressions == [(compression,)]
    (tags,) = query(path, "SELECT tags FROM duckdb_databases() WHERE database_name = 'c'")[0]
    assert tags["storage_version"] == version
    raw = query(path, "SELECT raw_json FROM position_snapshots WHERE message_id = 'm2999'")
    element = orjson.loads(frames[-1])["data"][0]
    assert orjson.loads(raw[0][0]) == element


def test_latest_views_and_exact_values(tmp_path):
    path = tmp_path / "c.duckdb"
    store = DuckDBStore(path)
    store.create()
    frames = [
        position_push("m1", 1_700_000_000_000, "1.5", 10),
        position_push("m2", 1_700_000_001_000, "0.000000000000000001", 11),
        WALLET_PUSH,
    ]
    assert store.write(batches(frames)) == 4  # two positions, two coins
    (latest,) = query(path, "SELECT size, seq FROM latest_positions")
    assert latest == (Decimal("0.000000000000000001"), 11)
    (asof,) = query(path, "SELECT size FROM positions_asof(TIMESTAMPTZ '2023-11-14 22:13:20.5+00')")
    assert asof == (Decimal("1.5"),)
    wallets = dict(query(path, "SELECT coin, wallet_balance FROM latest_wallets"))
    assert wallets == {"BTC": Decimal("0.00102964"), "USDT": Decimal("9684.46297164")}
    (null_count,) = query(
        path, "SELECT count(*) FROM latest_wallets WHERE available_to_withdraw IS NULL"
    )[0]
    assert null_count == 1


def test_replayed_pushes_do_not_make_second_rows(tmp_path):
    path = tmp_path / "c.duckdb"
    store = DuckDBStore(path)
    store.create()
    push = position_push("m1", 1_700_000_000_000, "1", 10)
    counts = (
        "SELECT (SELECT count(*) FROM position_snapshots), (SELECT count(*) FROM wallet_snapshots)"
    )
    # In the hot tier the views show each once; the move keeps each once.
    store.write(batches([push, push, WALLET_PUSH, WALLET_PUSH]))
    assert query(path, counts) == [(1, 2)]
    store.write(batches([push, WALLET_PUSH]))
    assert query(path, counts) == [(1, 2)]
    store.write(batches([position_push("m2", 1_700_000_000_000, "1", 10)]))
    assert query(path, counts) == [(2, 2)]
    store.close()
    assert query(path, counts) == [(2, 2)]
    assert query(path, counts.replace("snapshots)", "snapshots_cold)")) == [(2, 2)]
    # A replay of a row already in the file: dropped by its move.
    again = DuckDBStore(path)
    again.create()
    again.write(batches([push]))
    again.close()
    assert query(path, counts) == [(2, 2)]


def test_a_move_that_runs_out_of_memory_raises_the_limit_and_loses_nothing(
    tmp_path, monkeypatch, caplog
):
    """The writer's DuckDB starts small; a move it cannot hold (a large state's MERGE, the
    checkpoint at DETACH) is tried again with twice the limit, not left failing."""
    from ingestor.sinks import duckdb_store

    monkeypatch.setattr(duckdb_store, "WRITER_MEMORY_MB", 1)
    path = tmp_path / "c.duckdb"
    store = DuckDBStore(path, mover=False)
    store.create()
    frames = [position_push(f"m{i}", 1_700_000_000_000 + i, str(i + 1), i) for i in range(3_000)]
    with caplog.at_level(logging.WARNING):
        store.write(batches([*frames, WALLET_PUSH]))
        store.close()
    assert store.move_failure is None
    assert store.file.memory_mb > 1
    assert "ran out of the writer's DuckDB memory limit" in caplog.text
    assert query(path, "SELECT count(*) FROM position_snapshots_cold") == [(3_000,)]
    assert query(path, "SELECT size FROM latest_positions") == [(Decimal("3000"),)]


def test_gaps_from_connection_events(tmp_path):
    path = tmp_path / "c.duckdb"
    store = DuckDBStore(path)
    store.create()
    schema = ingestor.schemas()["connection_events"]

    def at(second: int) -> datetime:
        return datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)

    events = [
        ("subscribed", 1, None),
        ("disconnected", 5, "no pong within 10.0 s"),
        ("connecting", 6, None),
        ("disconnected", 7, "connect failed"),
        ("subscribed", 9, None),
        ("disconnected", 20, "server closed"),
    ]
    batch = pa.RecordBatch.from_pylist(
        [{"account_id": "a", "local_ts": at(s), "event": e, "reason": r} for e, s, r in events],
        schema=schema,
    )
    store.write([("connection_events", batch)])
    gaps = query(path, "SELECT start_ts, end_ts, reason FROM gaps")
    assert gaps == [
        (at(5), at(9), "no pong within 10.0 s"),
        (at(20), None, "server closed"),
    ]


HOLD_READ_ONLY = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_reader_holding_the_file_costs_nothing(tmp_path, caplog):
    path = tmp_path / "c.duckdb"
    store = DuckDBStore(path, mover=False)  # moves in `write`, to see them refused
    store.create()
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD_READ_ONLY, str(path), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout.readline().strip() == "holding"
    with caplog.at_level(logging.WARNING):
        assert store.write(batches([position_push("m1", 1_700_000_000_000, "1", 1)])) == 1
        assert store.write(batches([position_push("m2", 1_700_000_000_100, "2", 2)])) == 1
        assert store.move(final=True) == 0
    # Readable at once, from the hot tier, while the reader holds the file.
    sizes = query(path, "SELECT size FROM position_snapshots ORDER BY seq")
    assert sizes == [(Decimal(1),), (Decimal(2),)]
    assert len(store.hot) == 2
    assert f"PID {reader.pid}" in caplog.text
    reader.wait(timeout=30)
    store.write(batches([position_push("m3", 1_700_000_000_200, "3", 3)]))
    store._retry_at = 0.0  # the backoff after the refused move is over
    assert store.move(final=True) == 3
    assert len(store.hot) == 0
    sizes = query(path, "SELECT size FROM position_snapshots_cold ORDER BY seq")
    assert sizes == [(Decimal(1),), (Decimal(2),), (Decimal(3),)]


def test_close_leaves_unwritten_batches_spooled_for_the_next_start(tmp_path):
    path = tmp_path / "c.duckdb"
    store = DuckDBStore(path)
    store.create()
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD_READ_ONLY, str(path), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "holding"
        store.write(batches([position_push("m1", 1_700_000_000_000, "1", 1)]))
        store.close()
        assert len(store.hot) == 1
        assert query(path, "SELECT count(*) FROM position_snapshots") == [(1,)]
    finally:
        reader.kill()
        reader.wait()
    time.sleep(0.1)
    again = DuckDBStore(path)
    again.create()
    again.close()
    assert query(path, "SELECT count(*) FROM position_snapshots_cold") == [(1,)]
    assert query(path, "SELECT count(*) FROM position_snapshots") == [(1,)]
    # Closed with every row moved: the file is the whole store.
    assert not path.with_suffix(".hot").exists()


def test_every_row_once_whatever_moment_a_move_is_stopped(tmp_path, monkeypatch):
    """A move that fails before its COMMIT leaves every row in the hot tier; one stopped
    after its COMMIT, before the writer noted it (the process killed), leaves the record in
    the file: a store opened afresh knows which rows moved. Each row is seen once."""
    path = tmp_path / "c.duckdb"
    counts = (
        "SELECT (SELECT count(*) FROM position_snapshots), (SELECT count(*) FROM wallet_snapshots)"
    )
    store = DuckDBStore(path, mover=False)
    store.create()
    store.write(batches([position_push(f"m{i}", 1_700_000_000_000 + i, "1", i) for i in range(5)]))
    store.write(batches([WALLET_PUSH]))
    assert query(path, counts) == [(5, 2)]

    def fails(*args, **kwargs):
        raise OSError(28, "No space left on device")

    from ingestor.sinks import duckdb_store

    real_record = duckdb_store.HotTier.record
    monkeypatch.setattr(duckdb_store.HotTier, "record", fails)
    assert store.move(final=True) == 0
    assert isinstance(store.move_failure, OSError)
    assert query(path, counts) == [(5, 2)]
    assert query(path, "SELECT count(*) FROM position_snapshots_cold") == [(0,)]
    monkeypatch.setattr(duckdb_store.HotTier, "record", real_record)

    def killed(*args, **kwargs):
        raise SystemExit("killed right after the COMMIT")

    monkeypatch.setattr(duckdb_store.HotTier, "moved", killed)
    store._retry_at = 0.0
    with pytest.raises(SystemExit):
        store.move(final=True)
    store.file.close()
    assert query(path, "SELECT count(*) FROM position_snapshots_cold") == [(5,)]
    assert query(path, counts) == [(5, 2)]
    monkeypatch.undo()
    again = DuckDBStore(path, mover=False)
    again.create()
    assert again.hot.waiting() == 0
    assert query(path, counts) == [(5, 2)]
    again.write(batches([position_push("m9", 1_700_000_000_009, "1", 9)]))
    again.close()
    assert query(path, counts) == [(6, 2)]
    assert query(path, "SELECT count(*) FROM position_snapshots_cold") == [(6,)]


def run_query(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ingestor", "query", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_query_command_prints_named_and_free_queries(tmp_path):
    path = tmp_path / "c.duckdb"
    store = DuckDBStore(path)
    store.create()
    store.write(batches([position_push("m1", 1_700_000_000_000, "1.25", 1), WALLET_PUSH]))
    shown = run_query("latest-positions", "--store", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "BTCUSDT" in shown.stdout and "1.25" in shown.stdout
    wallets = run_query("latest-wallets", "--store", str(path))
    assert "USDT" in wallets.stdout and "9684.46297164" in wallets.stdout
    free = run_query("SELECT count(*) AS n FROM wallet_snapshots", "--store", str(path))
    assert free.returncode == 0 and "2" in free.stdout
    wrong = run_query("SELECT nope FROM nowhere", "--store", str(path))
    assert wrong.returncode == 1 and "error:" in wrong.stderr
    missing = run_query("gaps", "--store", str(tmp_path / "absent.duckdb"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


COLD = queries.cold("position_snapshots")


def test_replays_inside_a_wider_batch_are_dropped_whatever_the_session_time_zone(tmp_path):
    # The batch's creation-time range goes into the SQL as constants; a session TimeZone must
    # not shift it, and replays in the middle of the range must still be found.
    path = tmp_path / "c.duckdb"
    DuckDBStore(path).create()
    base = 1_700_000_000_000
    old = [position_push(f"m{i}", base + i * 1000, "1", i) for i in (1, 3)]
    new = [position_push(f"m{i}", base + i * 1000, "1", i) for i in (2, 4)]
    with duckdb.connect(str(path)) as con:
        con.execute("SET TimeZone = 'Asia/Tokyo'")
        con.execute("BEGIN")
        assert insert_new(con, "position_snapshots", table_of(old), stored=COLD) == 2
        con.execute("COMMIT")
        con.execute("BEGIN")
        assert (
            insert_new(con, "position_snapshots", table_of([new[0], *old, new[1]]), stored=COLD)
            == 2
        )
        con.execute("COMMIT")
    ids = query(path, "SELECT message_id FROM position_snapshots ORDER BY creation_ts")
    assert [i for (i,) in ids] == ["m1", "m2", "m3", "m4"]


def table_of(frames: list[bytes]) -> pa.Table:
    return pa.Table.from_batches(
        [ingestor.decode(frames, account_id="acct-1")["position_snapshots"]]
    )


HOLD_WRITABLE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_open_positions_wait_for_a_writer_to_let_the_file_go(tmp_path, caplog):
    path = tmp_path / "c.duckdb"
    store = DuckDBStore(path)
    store.create()
    store.write(batches([position_push("m1", 1_700_000_000_000, "2", 1)]))
    store.close()
    expected = {"acct-1": [("linear", "BTCUSDT", 2)]}
    for wait_s, found in [(0.0, {}), (10.0, expected)]:
        writer = subprocess.Popen(
            [sys.executable, "-c", HOLD_WRITABLE, str(path), "1"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert writer.stdout.readline().strip() == "holding"
            with caplog.at_level(logging.WARNING, logger="ingestor.sinks"):
                caplog.clear()
                assert open_positions("duckdb", path, wait_s=wait_s) == found
            assert bool(caplog.records) == (not found), "a read given up is reported"
        finally:
            writer.wait(timeout=30)
