"""The service end to end: the simulator and `python -m ingestor` as real processes, a real
DuckDB file, and the simulator's truth as the answer key."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine_helpers import differences, wait_until
from tests.service_helpers import pushed, start_sim

FAULTS = (
    "--drop-per-s", "0.2",
    "--broken-frame-rate", "0.05",
    "--unknown-topic-rate", "0.03",
    "--duplicate-rate", "0.1",
)  # fmt: skip


@pytest.mark.parametrize("sink", ["duckdb", "parquet", "ducklake"])
def test_capture_with_faults_equals_the_truth(tmp_path, sink):
    run = start_sim(tmp_path, accounts=20, seed=21, duration=4, faults=FAULTS, sink=sink)
    run.start_service("--duration", "8")
    assert run.wait_service() == 0, run.outputs[-1]
    truth = run.finish_sim()
    assert differences(run.latest(), truth) == []
    broken = sum(truth["faults"]["broken_frame"].values())
    unknown = sum(truth["faults"]["unknown_topic"].values())
    assert broken and unknown
    (rejected,) = run.query("SELECT count(*) FROM rejects")[0]
    drops = truth["faults"]["drop"]
    assert sum(drops.values()) > 0
    # A dropped connection is a TCP reset, which discards what the client had not read yet:
    # a bad frame sent just before it is never received (at most about one per drop).
    assert broken + unknown - sum(drops.values()) <= rejected <= broken + unknown
    lost = dict(
        run.query(
            "SELECT account_id, count(*) FROM connection_events "
            "WHERE event = 'disconnected' AND reason <> 'closed by client' GROUP BY ALL"
        )
    )
    for account, n in drops.items():
        assert lost.get(account, 0) >= n, account
    duplicated = run.query(
        "SELECT count(*) FROM (SELECT account_id, message_id, symbol, position_idx "
        "FROM position_snapshots WHERE source = 'ws' GROUP BY ALL HAVING count(*) > 1)"
    )
    assert duplicated == [(0,)], "replayed pushes are stored once"


def test_capture_over_wss_through_a_private_ca_equals_the_truth(tmp_path):
    run = start_sim(tmp_path, accounts=5, seed=23, duration=3, tls=True)
    assert "wss://" in run.accounts.read_text() and "https://" in run.accounts.read_text()
    run.start_service("--duration", "6")
    assert run.wait_service() == 0, run.outputs[-1]
    truth = run.finish_sim()
    assert differences(run.latest(), truth) == []
    (resynced,) = run.query("SELECT count(DISTINCT account_id) FROM wallet_snapshots "
                            "WHERE source = 'rest'")[0]  # fmt: skip
    assert resynced == 5, "every account resynced over https"


def collector_pids(stderr_lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in stderr_lines if (m := re.search(r"\(pid (\d+)\)", line))]


def test_a_killed_collector_is_restarted_and_the_truth_still_matches(tmp_path):
    run = start_sim(tmp_path, accounts=10, seed=22, duration=6)
    service = run.start_service("--duration", "11", "--workers", "2")
    lines = read_until_collectors(service, 2)
    # Named for ps, top and the benchmarks' per-process counts.
    children = children_of(service.pid)
    names = sorted(Path(f"/proc/{pid}/comm").read_text().strip() for pid in children)
    assert names == ["ingestor-col-0", "ingestor-col-1", "ingestor-writer"], names
    time.sleep(2)
    os.kill(collector_pids(lines)[0], signal.SIGKILL)
    assert run.wait_service() == 0
    log = "".join(lines) + run.outputs[-1]
    assert "died (exit code -9); restarting it" in log
    assert len(collector_pids(log.splitlines())) == 3
    truth = run.finish_sim()
    assert differences(run.latest(), truth) == []


def state_and_parent(pid: int | str) -> tuple[str, int] | None:
    """A process's state letter and parent pid, from /proc; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def children_of(pid: int) -> list[int]:
    """Living (not zombie) processes whose parent is `pid`."""
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit()
        and (info := state_and_parent(entry)) is not None
        and info[1] == pid
        and info[0] != "Z"
    ]


def alive(pid: int) -> bool:
    info = state_and_parent(pid)
    return info is not None and info[0] != "Z"


def read_until_collectors(service: subprocess.Popen, count: int) -> list[str]:
    """The service's log lines up to the one where its `count`-th collector started."""
    lines: list[str] = []
    while len(collector_pids(lines)) < count:
        line = service.stderr.readline()
        assert line, "the service ended early: " + "".join(lines)
        lines.append(line)
    return lines


def kill_and_expect_children_gone(service: subprocess.Popen, at_least: int, timeout: float) -> None:
    """SIGKILLs the service and asserts its children end by themselves within `timeout`."""
    children = children_of(service.pid)
    assert len(children) >= at_least, children
    service.kill()
    service.wait()
    try:
        assert wait_until(lambda: not any(alive(pid) for pid in children), timeout), [
            pid for pid in children if alive(pid)
        ]
    finally:
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_killed_supervisor_takes_its_collectors_and_writer_with_it(tmp_path):
    run = start_sim(tmp_path, accounts=4, seed=24, duration=30)
    service = run.start_service("--duration", "60", "--workers", "2")
    read_until_collectors(service, 2)
    try:
        # Left running they held every account's connection and waited on dead pipes.
        kill_and_expect_children_gone(service, at_least=3, timeout=10)  # collectors, writer
    finally:
        run.sim.kill()
        run.sim.wait()


def test_a_killed_service_takes_the_simulator_it_started_with_it(tmp_path):
    accounts = tmp_path / "sim.yaml"
    accounts.write_text(
        "sink: {kind: duckdb, path: capture.duckdb}\n"
        "accounts:\n  - {id: sim-0001, environment: sim}\n  - {id: sim-0002, environment: sim}\n"
    )
    service = subprocess.Popen(
        [sys.executable, "-m", "ingestor", "--accounts", str(accounts), "--status", "log",
         "--duration", "60"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    read_until_collectors(service, 1)
    # The simulator, a collector and the writer.
    kill_and_expect_children_gone(service, at_least=3, timeout=30)


def test_sigterm_loses_nothing_the_collectors_decoded(tmp_path):
    # A flush interval longer than the run: at SIGTERM every row is still waiting, so the
    # drain alone must commit all of them.
    run = start_sim(tmp_path, accounts=6, seed=23, duration=2, flush_interval=60)
    service = run.start_service()
    time.sleep(5)  # the market has closed and its last pushes have arrived
    service.send_signal(signal.SIGTERM)
    assert run.wait_service(timeout=60) == 0
    truth = run.finish_sim()
    assert run.stored_pushes() == pushed(truth)
    assert differences(run.latest(), truth) == []


HOLD = """
import sys, time, duckdb
for _ in range(200):  # as an analyst would: the writer holds the lock while a flush runs
    try:
        con = duckdb.connect(sys.argv[1], read_only=True)
        break
    except duckdb.IOException:
        time.sleep(0.02)
print("holding", flush=True)
time.sleep(3)
"""


def test_a_reader_holding_the_file_loses_nothing(tmp_path):
    run = start_sim(tmp_path, accounts=5, seed=24, duration=6)
    run.start_service("--duration", "10")
    assert wait_until(lambda: run.store.exists(), timeout=20)
    time.sleep(1.5)
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run.store)], stdout=subprocess.PIPE, text=True
    )
    assert reader.stdout.readline().strip() == "holding"
    reader.wait(timeout=30)
    assert run.wait_service() == 0
    # Flushes never needed the file: nothing waited for the reader; the stop moved every row.
    assert not run.store.with_suffix(".hot").exists()
    truth = run.finish_sim()
    assert differences(run.latest(), truth) == []


def test_no_secret_appears_in_any_output_or_file_written(tmp_path):
    run = start_sim(tmp_path, accounts=3, seed=25, duration=2, faults=("--refuse-auth", "0.3"))
    run.start_service("--duration", "4", "--log-level", "debug")
    assert run.wait_service() == 0
    run.finish_sim()
    assert run.secrets
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".env"]
    assert run.store in written
    for secret in run.secrets:
        for output in run.outputs:
            assert secret not in output
        for path in written:
            if path.name == "accounts.yaml":
                continue  # the simulator's file: it refers to the env file
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("bad", ["accounts: []\n", "accounts: [{id: x}]\n"])
def test_a_bad_config_exits_2_naming_file_and_line(tmp_path, bad):
    path = tmp_path / "accounts.yaml"
    path.write_text(bad)
    result = subprocess.run(
        [sys.executable, "-m", "ingestor", "--accounts", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{path}:1: accounts" in result.stderr
