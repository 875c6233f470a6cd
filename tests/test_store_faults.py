"""Nothing stalls and nothing is lost: the writer killed, the store's disk full or read-only, a
commit that raises, SIGTERM while the writer is dead, the supervisor killed, a drain that
cannot finish, a damaged store file. Real simulator, real service processes, real DuckDB files
on real mounts; every run under a timeout that fails it."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine_helpers import differences, wait_until
from tests.service_helpers import Run, dump_stacks, pushed, start_sim
from tests.test_metrics import free_port, get, scrape
from tests.test_service import FAULTS, HOLD

WRITER_STARTED = re.compile(r"writer process (\d+) starting")


def writer_pids(text: str) -> list[int]:
    return [int(m.group(1)) for m in WRITER_STARTED.finditer(text)]


class Log:
    """The service's stderr, read by a thread as it comes (a test that stops reading must not
    block the service on a full pipe)."""

    def __init__(self, service: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(service,), daemon=True)
        self._thread.start()

    def _read(self, service: subprocess.Popen) -> None:
        for line in service.stderr:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, predicate, timeout: float) -> bool:
        return wait_until(lambda: predicate(self.text), timeout)


def finish(run: Run, log: Log, timeout: float = 120) -> int:
    """Waits for the service (the timeout fails the test) and keeps its output."""
    assert run.service is not None
    try:
        code = run.service.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        dump_stacks(run.service)
        time.sleep(0.5)
        run.service.kill()
        run.service.wait()
        pytest.fail(
            f"the service did not end within {timeout} s; stacks and log:\n{log.text[-20000:]}"
        )
    log._thread.join(10)
    run.outputs.append(log.text)
    return code


def stored_twice(run: Run) -> list[tuple]:
    return run.query(
        "SELECT count(*) FROM (SELECT account_id, message_id, creation_ts, symbol, position_idx,"
        " seq FROM position_snapshots WHERE source = 'ws' GROUP BY ALL HAVING count(*) > 1)"
    ) + run.query(
        "SELECT count(*) FROM (SELECT account_id, message_id, creation_ts, coin "
        "FROM wallet_snapshots WHERE source = 'ws' GROUP BY ALL HAVING count(*) > 1)"
    )


def test_a_killed_writer_is_restarted_and_nothing_is_lost(tmp_path, stop_at_end):
    run = start_sim(tmp_path, accounts=10, seed=41, duration=7, faults=FAULTS)
    stop_at_end.append(run)
    log = Log(run.start_service("--duration", "12"))
    assert log.wait_for(writer_pids, timeout=30)
    time.sleep(3)  # mid-run: batches in flight, commits going on
    os.kill(writer_pids(log.text)[0], signal.SIGKILL)
    assert finish(run, log) == 0, log.text[-3000:]
    assert "the writer died (killed by SIGKILL)" in log.text
    assert len(writer_pids(log.text)) == 2, "restarted once"
    assert "writer restarts 1" in log.text, "the status line says so"
    truth = run.finish_sim()
    assert differences(run.latest(), truth) == []
    assert stored_twice(run) == [(0,), (0,)]


def test_sigterm_while_the_writer_is_dead_commits_everything(tmp_path, stop_at_end):
    # Rows wait in the collectors until the drain (a flush interval longer than the run).
    run = start_sim(tmp_path, accounts=6, seed=42, duration=2, flush_interval=60)
    stop_at_end.append(run)
    service = run.start_service()
    log = Log(service)
    assert log.wait_for(writer_pids, timeout=30)
    time.sleep(4)  # the market has closed and its last pushes have arrived
    os.kill(writer_pids(log.text)[0], signal.SIGKILL)
    service.send_signal(signal.SIGTERM)
    assert finish(run, log, timeout=90) == 0, log.text[-3000:]
    truth = run.finish_sim()
    assert run.stored_pushes() == pushed(truth)
    assert differences(run.latest(), truth) == []


def test_what_was_in_the_hot_tier_when_the_writer_died_is_moved_after_it_restarts(
    tmp_path, stop_at_end
):
    run = start_sim(tmp_path, accounts=5, seed=49, duration=9)
    stop_at_end.append(run)
    log = Log(run.start_service("--duration", "14"))
    assert wait_until(run.store.exists, timeout=30)
    time.sleep(1.5)
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD.replace("time.sleep(3)", "time.sleep(5)"), str(run.store)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "holding"
        hot = run.store.with_suffix(".hot") / "position_snapshots"
        assert wait_until(lambda: len(list(hot.glob("*.parquet"))) > 2, timeout=10), log.text
        os.kill(writer_pids(log.text)[0], signal.SIGKILL)
    finally:
        reader.wait(timeout=30)
    assert finish(run, log) == 0, log.text[-3000:]
    assert "the writer died (killed by SIGKILL)" in log.text
    # The restarted writer found the hot tier's files; the stop moved every row.
    assert not hot.exists()
    truth = run.finish_sim()
    assert differences(run.latest(), truth) == []
    assert stored_twice(run) == [(0,), (0,)]


def test_an_exception_inside_a_commit_is_retried_and_loses_nothing(tmp_path, stop_at_end):
    run = start_sim(tmp_path, accounts=5, seed=43, duration=4)
    stop_at_end.append(run)
    run.env["INGESTOR_TEST_FAIL_COMMITS"] = "3"
    log = Log(run.start_service("--duration", "8"))
    assert finish(run, log) == 0, log.text[-3000:]
    assert "InjectedFault" in log.text and "takes commits again" in log.text
    assert len(writer_pids(log.text)) == 1, "the writer lived through it"
    truth = run.finish_sim()
    assert differences(run.latest(), truth) == []


def test_a_drain_the_store_cannot_take_spools_the_rest_for_the_next_start(tmp_path, stop_at_end):
    run = start_sim(tmp_path, accounts=4, seed=44, duration=3)
    stop_at_end.append(run)
    run.env["INGESTOR_TEST_FAIL_COMMITS"] = "1000000"
    run.env["INGESTOR_DRAIN_TIMEOUT"] = "3"
    log = Log(run.start_service("--duration", "5"))
    assert finish(run, log, timeout=90) == 1, log.text[-3000:]
    said = re.search(
        r"did not commit (\d+) rows in time \((?:stalled|too slow)\): they wait in (\S+) ", log.text
    )
    assert said, log.text[-3000:]
    rows, spool = int(said.group(1)), Path(said.group(2))
    assert rows > 0 and any(spool.glob("*.arrow"))
    # The next start commits the spool first; the store then equals the truth.
    del run.env["INGESTOR_TEST_FAIL_COMMITS"]
    log = Log(run.start_service("--duration", "4"))
    assert finish(run, log) == 0, log.text[-3000:]
    assert "spooled batch files taken into the hot tier" in log.text
    assert not any(spool.glob("*.arrow"))
    truth = run.finish_sim()
    assert differences(run.latest(), truth) == []


def test_a_drain_behind_a_full_budget_ends_within_drain_timeout(tmp_path, stop_at_end):
    """A store that takes nothing fills the in-flight budget: the collectors then wait on
    their pipes and would never finish draining. The drain still ends at drain_timeout, says
    what it dropped, and the next start's resync makes the state whole again."""
    run = start_sim(tmp_path, accounts=20, seed=47, duration=6, trade_rate=50.0)
    stop_at_end.append(run)
    run.env["INGESTOR_TEST_FAIL_COMMITS"] = "1000000"
    run.env["INGESTOR_DRAIN_TIMEOUT"] = "4"
    run.env["INGESTOR_MAX_INFLIGHT_MB"] = "1"
    started = time.monotonic()
    log = Log(run.start_service("--duration", "6"))
    assert finish(run, log, timeout=90) == 1, log.text[-3000:]
    assert time.monotonic() - started < 6 + 4 + 30, "bounded by --duration + drain_timeout"
    assert "the drain took longer than drain_timeout (4 s): stopping" in log.text, log.text[-3000:]
    said = re.search(r"did not commit (\d+) rows in time \(drain_timeout\): they wait", log.text)
    assert said and int(said.group(1)) > 0, log.text[-3000:]
    del run.env["INGESTOR_TEST_FAIL_COMMITS"], run.env["INGESTOR_MAX_INFLIGHT_MB"]
    log = Log(run.start_service("--duration", "5"))
    assert finish(run, log) == 0, log.text[-3000:]
    assert "spooled batch files taken into the hot tier" in log.text
    truth = run.finish_sim()
    assert differences(run.latest(), truth) == []


def test_a_killed_supervisor_then_a_fresh_start_equals_the_truth(tmp_path, stop_at_end):
    run = start_sim(tmp_path, accounts=6, seed=45, duration=9, faults=FAULTS)
    stop_at_end.append(run)
    service = run.start_service("--duration", "60")
    log = Log(service)
    assert log.wait_for(writer_pids, timeout=30)
    time.sleep(3)
    service.kill()  # its children die with it (PR_SET_PDEATHSIG)
    finish(run, log)
    time.sleep(2)
    log = Log(run.start_service("--duration", "10"))
    assert finish(run, log) == 0, log.text[-3000:]
    truth = run.finish_sim()
    assert differences(run.latest(), truth) == []
    assert stored_twice(run) == [(0,), (0,)]


def test_a_damaged_store_file_is_refused_and_left_as_it_is(tmp_path, stop_at_end):
    run = start_sim(tmp_path, accounts=2, seed=46, duration=1)
    stop_at_end.append(run)
    damaged = b"this is not a DuckDB file\n" * 500
    run.store.write_bytes(damaged)
    log = Log(run.start_service("--duration", "3"))
    assert finish(run, log, timeout=60) == 2
    assert f"refusing to start: {run.store} is not a DuckDB file" in log.text
    assert run.store.read_bytes() == damaged
    assert not run.store.with_suffix(".spool").exists()
    run.finish_sim()


# ---- a disk of the test's own: full, then read-only -------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the store needs root")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of `folder`'s file system."""
    filler = folder / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def watch_metrics(port: int, seen: dict[str, object], stop: threading.Event) -> None:
    """Records what /metrics and /readyz said while the store was failing."""
    while not stop.is_set():
        with contextlib.suppress(Exception):
            s = scrape(port)
            if s.of("ingestor_store_healthy") == 0.0:
                seen["unhealthy"] = True
                seen["errors"] = s.total("ingestor_store_errors_total")
                seen["kinds"] = {
                    dict(k).get("kind") for k in s.samples.get("ingestor_store_errors_total", {})
                }
                status, body = get(port, "/readyz")
                if status == 503 and "store is failing" in body:
                    seen["readyz"] = body
        stop.wait(0.3)


def capture_through_a_fault(tmp_path: Path, runs: list[Run], seed: int, fault, undo, held: float):
    disk = tmp_path / "disk"
    with tmpfs(disk, 64):
        run = start_sim(tmp_path, accounts=5, seed=seed, duration=held + 10)
        run.store_dir = disk
        runs.append(run)
        port = free_port()
        log = Log(run.start_service("--duration", str(held + 16), "--metrics-port", str(port)))
        assert wait_until(run.store.exists, timeout=30)
        time.sleep(2)
        seen: dict[str, object] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=watch_metrics, args=(port, seen, stop), daemon=True)
        watcher.start()
        token = fault(disk)
        time.sleep(held)
        undo(disk, token)
        assert log.wait_for(lambda text: "takes commits again" in text, timeout=30), log.text
        stop.set()
        watcher.join(10)
        assert finish(run, log) == 0, log.text[-3000:]
        truth = run.finish_sim()
        assert differences(run.latest(), truth) == []
        assert stored_twice(run) == [(0,), (0,)]
        return log.text, seen


def test_a_full_disk_makes_data_wait_and_loses_nothing(tmp_path, stop_at_end):
    text, seen = capture_through_a_fault(
        tmp_path,
        stop_at_end,
        seed=47,
        fault=fill,
        undo=lambda disk, filler: filler.unlink(),
        held=15,
    )
    assert re.search(r"cannot commit \d+ rows to the duckdb store .*: disk_full", text), text
    assert seen.get("unhealthy") and "disk_full" in seen["kinds"], seen
    assert "readyz" in seen, seen


def test_a_read_only_store_makes_data_wait_and_loses_nothing(tmp_path, stop_at_end):
    def read_only(disk: Path) -> None:
        # Refused ("busy") while a file on it is open for writing: the writer holds the
        # DuckDB file only while a flush runs, so one of the tries falls between two.
        def remount() -> bool:
            done = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True)
            return done.returncode == 0

        assert wait_until(remount, timeout=20, every=0.01), "the disk stayed busy"

    def writable(disk: Path, _token: None) -> None:
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True, timeout=30)

    text, seen = capture_through_a_fault(
        tmp_path, stop_at_end, seed=48, fault=read_only, undo=writable, held=10
    )
    assert re.search(r"cannot commit \d+ rows to the duckdb store .*: permission", text), text
    assert seen.get("unhealthy") and "permission" in seen["kinds"], seen
