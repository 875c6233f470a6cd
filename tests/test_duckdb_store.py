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


def test_raw_json_is_stored_with_the_compression_chosen_for_it(tmp_path):
    path = tmp_path / "c.duckdb"
    store = DuckDBStore(path)
    store.create()
    # The same element in every push: left to itself, DuckDB picks a dictionary for it.
    frames = [position_push(f"m{i}", 1_700_000_000_000, "1", 7) for i in range(3000)]
    store.write(batches(frames))
    compressions = query(
        path,
        "SELECT DISTINCT compression FROM pragma_storage_info('position_snapshots') "
        "WHERE column_name = 'raw_json' AND segment_type = 'VARCHAR'",
    )
    assert compressions == [("FSST",)]
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
    assert store.write(batches([push, push, WALLET_PUSH, WALLET_PUSH])) == 3
    assert store.write(batches([push, WALLET_PUSH])) == 0
    assert store.write(batches([position_push("m2", 1_700_000_000_000, "1", 10)])) == 1
    counts = query(
        path,
        "SELECT (SELECT count(*) FROM position_snapshots), (SELECT count(*) FROM wallet_snapshots)",
    )
    assert counts == [(2, 2)]


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
    store = DuckDBStore(path)
    store.create()
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD_READ_ONLY, str(path), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout.readline().strip() == "holding"
    with caplog.at_level(logging.WARNING):
        assert store.write(batches([position_push("m1", 1_700_000_000_000, "1", 1)])) == 0
        assert store.write(batches([position_push("m2", 1_700_000_000_100, "2", 2)])) == 0
    assert len(store.spool) == 2
    assert f"PID {reader.pid}" in caplog.text
    reader.wait(timeout=30)
    # The next flush commits the spooled batches first, then its own.
    assert store.write(batches([position_push("m3", 1_700_000_000_200, "3", 3)])) == 3
    assert len(store.spool) == 0
    sizes = query(path, "SELECT size FROM position_snapshots ORDER BY seq")
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
        assert len(store.spool) == 1
    finally:
        reader.kill()
        reader.wait()
    time.sleep(0.1)
    again = DuckDBStore(path)
    assert again.drain() == 1
    assert query(path, "SELECT count(*) FROM position_snapshots") == [(1,)]


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
        assert insert_new(con, "position_snapshots", table_of(old)) == 2
        con.execute("COMMIT")
        con.execute("BEGIN")
        assert insert_new(con, "position_snapshots", table_of([new[0], *old, new[1]])) == 2
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
