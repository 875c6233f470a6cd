"""The service's own downtime in the record: at start, per account, a `disconnected` at the last
instant the store holds unless that was a clean stop, and the `gaps` view from there to the
next `subscribed`. On every kind of store, and end to end with a service killed by SIGKILL."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import ingestor
from ingestor import queries
from ingestor.service import downtime
from ingestor.service.downtime import downtime_events
from ingestor.sinks import open_reader, open_store
from tests.engine_helpers import wait_until
from tests.service_helpers import start_sim
from tests.test_duckdb_store import WALLET_PUSH, position_push

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DOWN = queries.DOWNTIME_REASON
CLEAN = downtime.CLEAN_STOP_REASON
#: The second run's start: every record of the first is older.
NOW = 90
SUBSCRIBED_AGAIN = 100


def at(second: float) -> datetime:
    return T0 + timedelta(seconds=second)


def us(second: float) -> int:
    return int((at(second) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)


def events(rows: list[tuple[str, str, float, str | None]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"account_id": a, "local_ts": at(s), "event": e, "reason": r} for a, e, s, r in rows],
        schema=ingestor.schemas()["connection_events"],
    )


def received(account: str, frames: list[bytes], second: float) -> list[tuple[str, pa.RecordBatch]]:
    decoded = ingestor.decode(frames, account_id=account, received_at=at(second))
    return [(table, batch) for table, batch in decoded.items() if batch.num_rows]


#: What a first run left of each account: (its events, its rows), and what the next start must
#: record for it (the instant of the downtime record, or None for nothing).
HISTORY: dict[str, tuple[list[tuple[str, float, str | None]], list[tuple[bytes, float]], float]] = {
    # Stopped cleanly: the engine's `disconnected` is its last record.
    "stopped": ([("subscribed", 1, None), ("disconnected", 3, CLEAN)], [(b"position", 2)], None),
    # Killed mid-capture: the last row is a wallet's.
    "killed": ([("subscribed", 1, None)], [(b"position", 2), (WALLET_PUSH, 4)], 4),
    # Killed mid-capture, a reject the newest record.
    "rejected": ([("subscribed", 1, None)], [(b"position", 2), (b"{not json", 5)], 5),
    # The first run ever, killed before it subscribed.
    "early": ([("connecting", 1, None), ("connected", 2, None)], [], 2),
    # Killed while reconnecting: its gap is open since the loss.
    "reconnecting": (
        [
            ("subscribed", 1, None),
            ("disconnected", 2, "no pong within 1.5 s"),
            ("backoff", 2, None),
            ("connecting", 3, None),
        ],
        [],
        3,
    ),
    # Killed right after subscribing: the record stands at the `subscribed` itself.
    "just-subscribed": ([("connecting", 1, None), ("subscribed", 3, None)], [], 3),
    # A start recorded its downtime and was killed before anything new was committed.
    "again": ([("subscribed", 1, None), ("disconnected", 2, DOWN)], [], None),
    # Another instance's account (its shard): not this run's business.
    "other": ([("subscribed", 1, None)], [(b"position", 2)], None),
}
RUN = ["stopped", "killed", "rejected", "early", "reconnecting", "just-subscribed", "again"]

#: The `gaps` view once the records are written and every account of the run subscribed again.
EXPECTED_GAPS = [
    ("again", at(2), at(SUBSCRIBED_AGAIN), DOWN),
    ("early", at(2), at(SUBSCRIBED_AGAIN), DOWN),
    ("just-subscribed", at(3), at(SUBSCRIBED_AGAIN), DOWN),
    ("killed", at(4), at(SUBSCRIBED_AGAIN), DOWN),
    # One gap from the loss on, not a second one overlapping it.
    ("reconnecting", at(2), at(SUBSCRIBED_AGAIN), "no pong within 1.5 s"),
    ("rejected", at(5), at(SUBSCRIBED_AGAIN), DOWN),
    ("stopped", at(3), at(SUBSCRIBED_AGAIN), CLEAN),
]

STORES = {"duckdb": "capture.duckdb", "parquet": "capture", "ducklake": "capture.lake"}


def first_run(kind: str, path: Path) -> None:
    store = open_store(kind, path)
    store.create()
    written: list[tuple[str, pa.RecordBatch]] = []
    for account, (history, rows, _) in HISTORY.items():
        written.append(("connection_events", events([(account, *e) for e in history])))
        for n, (frame, second) in enumerate(rows):
            if frame == b"position":
                frame = position_push(f"{account}-{n}", 1_767_225_600_000 + n, "1", n)
            written += received(account, [frame], second)
    store.write(written)
    store.close()


def read(kind: str, path: Path, sql: str) -> list[tuple]:
    with open_reader(kind, path) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("kind", list(STORES))
def test_a_start_records_each_accounts_downtime_and_gaps_shows_it(tmp_path, kind):
    path = tmp_path / STORES[kind]
    assert downtime_events(kind, path, RUN, us(NOW)) is None, "no store yet"
    first_run(kind, path)
    got = downtime_events(kind, path, [*RUN, "never", "killed"], us(NOW))
    assert got is not None
    assert got.schema == ingestor.schemas()["connection_events"]
    want = [
        {
            "account_id": account,
            "local_ts": at(second),
            "event": "disconnected",
            "reason": DOWN,
            "backoff_ms": None,
            "conn_id": None,
        }
        for account in RUN
        if (second := HISTORY[account][2]) is not None
    ]
    assert got.to_pylist() == want
    # The next run: the records first, then each account subscribes again.
    store = open_store(kind, path)
    store.write([("connection_events", got)])
    store.write(
        [("connection_events", events([(a, "subscribed", SUBSCRIBED_AGAIN, None) for a in RUN]))]
    )
    store.close()
    gaps = read(kind, path, "SELECT account_id, start_ts, end_ts, reason FROM gaps")
    assert gaps == EXPECTED_GAPS
    # Killed at once again: each account's last record is now that `subscribed`.
    again = downtime_events(kind, path, RUN, us(SUBSCRIBED_AGAIN + 1))
    assert again is not None
    assert {r["account_id"] for r in again.to_pylist()} == set(RUN)
    assert {r["local_ts"] for r in again.to_pylist()} == {at(SUBSCRIBED_AGAIN)}


def test_an_account_seen_only_in_the_future_is_recorded_from_now(tmp_path, caplog):
    path = tmp_path / "c.duckdb"
    first_run("duckdb", path)
    with caplog.at_level(logging.WARNING):
        got = downtime_events("duckdb", path, ["killed"], us(3))
    assert got is not None and got.to_pylist()[0]["local_ts"] == at(3)
    assert "in the future" in caplog.text


def test_a_disconnect_before_any_subscription_still_opens_no_gap(tmp_path):
    # As the meter counts them: only a downtime record may open a gap without a `subscribed`.
    path = tmp_path / "c.duckdb"
    store = open_store("duckdb", path)
    store.create()
    rows = [
        ("a", "disconnected", 1, "connect failed: refused"),
        ("a", "subscribed", 2, None),
        ("b", "disconnected", 1, "connect failed: refused"),
        ("b", "disconnected", 3, DOWN),
        ("b", "subscribed", 9, None),
    ]
    store.write([("connection_events", events(rows))])
    store.close()
    gaps = read("duckdb", path, "SELECT account_id, start_ts, end_ts, reason FROM gaps")
    assert gaps == [("b", at(3), at(9), DOWN)]


def test_a_store_that_cannot_be_read_gives_none_and_a_warning(tmp_path, caplog):
    path = tmp_path / "c.duckdb"
    path.write_bytes(b"not a database" * 1000)
    with caplog.at_level(logging.WARNING):
        assert downtime_events("duckdb", path, ["a"], us(NOW)) is None
    assert "no downtime recorded" in caplog.text


HOLD_WRITABLE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold(path: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITABLE, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_locked_store_is_waited_for_then_given_up_with_a_warning(tmp_path, caplog, monkeypatch):
    path = tmp_path / "c.duckdb"
    first_run("duckdb", path)
    holder = hold(path, 0.5)  # let go within the wait: read
    try:
        got = downtime_events("duckdb", path, ["killed"], us(NOW))
        assert got is not None and got.num_rows == 1
    finally:
        holder.wait(timeout=30)
    monkeypatch.setattr(downtime, "LOCK_WAIT_S", 0.3)
    holder = hold(path, 30)  # held past it: none, and say why
    try:
        with caplog.at_level(logging.WARNING):
            assert downtime_events("duckdb", path, ["killed"], us(NOW)) is None
        assert "lock" in caplog.text.lower()
    finally:
        holder.kill()
        holder.wait(timeout=30)


# --- End to end ------------------------------------------------------------------------------


def epoch_s(value: datetime) -> float:
    return value.timestamp()


def epoch_us(value: datetime) -> int:
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_a_killed_service_shows_its_downtime_in_gaps(tmp_path):
    run = start_sim(tmp_path, accounts=3, seed=27, duration=60)
    try:
        service = run.start_service("--duration", "60")

        def captured() -> int:
            if not run.store.exists():
                return 0
            try:
                return run.query("SELECT count(DISTINCT account_id) FROM position_snapshots")[0][0]
            except Exception:  # the writer holds the file during its flushes
                return 0

        assert wait_until(lambda: captured() == 3, timeout=60), "every account captured"
        time.sleep(1.0)
        service.send_signal(signal.SIGKILL)
        service.wait(timeout=30)
        killed_at = time.time()
        time.sleep(6)  # the children end with it (PR_SET_PDEATHSIG) and let the file go
        last = {
            account: last_us
            for account, last_us, _, _ in run.query(
                queries.last_records(set(queries.RECORD_TABLES))
            )
        }
        assert len(last) == 3
        for account, last_us in last.items():
            # flush_interval 0.2 s: what was captured reached the store just before the kill.
            assert killed_at - 3 < last_us / 1e6 <= killed_at, account
        restarted_at = time.time()
        run.start_service("--duration", "5")
        assert run.wait_service(timeout=120) == 0, run.outputs[-1]
        gaps = run.query("SELECT account_id, start_ts, end_ts, reason FROM gaps")
        second_run = dict(
            run.query(
                "SELECT account_id, min(local_ts) FROM connection_events "
                f"WHERE event = 'subscribed' AND local_ts >= make_timestamptz("
                f"{int(restarted_at * 1e6)}::BIGINT) GROUP BY ALL"
            )
        )
        first_event = dict(
            run.query(
                "SELECT account_id, min(local_ts) FROM connection_events "
                f"WHERE local_ts >= make_timestamptz({int(restarted_at * 1e6)}::BIGINT) "
                "GROUP BY ALL"
            )
        )
    finally:
        if run.service is not None and run.service.poll() is None:
            run.service.kill()
        run.sim.kill()
        run.sim.wait(timeout=30)
    assert set(second_run) == set(last)
    for account, last_us in last.items():
        down = [g for g in gaps if g[0] == account and abs(epoch_us(g[1]) - last_us) <= 1e6]
        assert len(down) == 1, (account, last_us, gaps)
        (_, start, end, reason) = down[0]
        assert epoch_us(start) == last_us, "from the last instant the store held"
        assert reason == queries.DOWNTIME_REASON
        assert end == second_run[account], "closed by the second run's first `subscribed`"
        # The second run's first step (its start, python's imports included, comes first).
        assert epoch_s(end) - epoch_s(first_event[account]) < 1.0
        assert epoch_s(end) - restarted_at < 10
        # And the clean stop at the end is a gap of its own, open until a next run.
        closing = [g for g in gaps if g[0] == account and g[1] > end]
        assert [(g[2], g[3]) for g in closing] == [(None, downtime.CLEAN_STOP_REASON)]
