"""Runs the simulator and the service as real processes, the way a user does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ingestor.sinks import open_reader
from tests.engine_helpers import latest_state
from tests.tls_helpers import private_ca

ENGINE = """
flush_interval: {flush_interval}
engine:
  ping_interval: 0.5
  pong_timeout: 1.5
  backoff_base: 0.05
  backoff_cap: 0.5
  connect_budget: 100000
  connect_window: 1
  connect_burst: 100000
"""


def descendants(pid: int) -> list[int]:
    """Every living process below `pid`, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, p in parents.items() if p == parent]
        found += children
        frontier += children
    return found


def dump_stacks(process: subprocess.Popen) -> None:
    """Asks the service and its children for their Python stacks (SIGUSR1: see
    service/lifeline.py); they write them to stderr."""
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
    time.sleep(1.0)


def communicate_or_explain(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """`process.communicate(timeout)`; if it runs out, the test fails with what every
    process of the service was doing (their stacks) and the end of its log."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        dump_stacks(process)
        process.kill()
        _, err = process.communicate()
        pytest.fail(
            f"pid {process.pid} did not end within {timeout} s; its stacks and log:\n{err[-20000:]}"
        )


@dataclass
class Run:
    folder: Path
    sim: subprocess.Popen
    accounts: Path
    env: dict[str, str]
    secrets: list[str]
    #: The store's kind: duckdb, parquet or ducklake.
    sink: str = "duckdb"
    service: subprocess.Popen | None = None
    outputs: list[str] = field(default_factory=list)
    #: Where the store goes, if not in `folder` (a mount of the test's own, say).
    store_dir: Path | None = None

    @property
    def store(self) -> Path:
        name = {"duckdb": "capture.duckdb"}.get(self.sink, f"capture.{self.sink}")
        return (self.store_dir or self.folder) / name

    @property
    def truth_path(self) -> Path:
        return self.folder / "truth.json"

    def start_service(self, *args: str, check: bool = False) -> subprocess.Popen:
        # The simulator's default keys include trading ones (sim-0005, sim-0010, ...), which
        # the start check keeps out; tests of the capture itself want every account.
        flags = [] if check else ["--no-check"]
        self.service = subprocess.Popen(
            [sys.executable, "-m", "ingestor", "--accounts", str(self.accounts),
             "--sink", self.sink, "--store", str(self.store), "--status", "log", *flags, *args],
            env={**os.environ, **self.env}, cwd=self.folder,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        return self.service

    def wait_service(self, timeout: float = 120) -> int:
        assert self.service is not None
        out, err = communicate_or_explain(self.service, timeout)
        self.outputs += [out, err]
        return self.service.returncode

    def finish_sim(self) -> dict:
        """Ends the simulator's grace and reads its truth (with fault and push counters)."""
        for _ in range(2):
            if self.sim.poll() is None:
                self.sim.send_signal(signal.SIGINT)
                time.sleep(0.3)
        out, err = self.sim.communicate(timeout=60)
        self.outputs += [out, err]
        assert self.sim.returncode == 0, err
        return json.loads(self.truth_path.read_text())

    def query(self, sql: str) -> list[tuple]:
        with open_reader(self.sink, self.store) as con:
            return con.execute(sql).fetchall()

    def stored_pushes(self) -> int:
        """Pushes stored of the topics `COUNTED_TOPICS`: distinct message ids of stream rows,
        per topic's table (an order push and its execution push share their id)."""
        tables = ("position_snapshots", "wallet_snapshots", "execution_events")
        counts = " + ".join(
            f"(SELECT count(DISTINCT message_id) FROM {t} WHERE source = 'ws')" for t in tables
        )
        return self.query(f"SELECT {counts}")[0][0]

    def latest(self) -> tuple[dict, dict]:
        with open_reader(self.sink, self.store) as con:
            return latest_state(con)


#: The topics whose every push leaves a row of its own id. Not `order`: Bybit's double
#: `Filled` is a second push of an identical version, stored once by design (its id with it).
COUNTED_TOPICS = ("position", "wallet", "execution")


def pushed(truth: dict) -> int:
    """Pushes the simulator sent of `COUNTED_TOPICS`, by its truth."""
    return sum(
        n
        for topics in truth["pushes"].values()
        for topic, n in topics.items()
        if topic in COUNTED_TOPICS
    )


def start_sim(
    folder: Path,
    accounts: int,
    seed: int,
    duration: float,
    faults: tuple[str, ...] = (),
    flush_interval: float = 0.2,
    trade_rate: float = 2.0,
    sink: str = "duckdb",
    tls: bool = False,
) -> Run:
    """The simulator on a free port, trading for `duration` s, then serving for a grace; with
    `tls`, over wss:// and https:// with a certificate of a private CA that the accounts file
    names as the engine's `ca_file`."""
    accounts_file = folder / "accounts.yaml"
    if tls:
        ca = private_ca(folder)
        faults = (*faults, "--tls-cert", str(ca.cert_file), "--tls-key", str(ca.key_file))
    sim = subprocess.Popen(
        [sys.executable, "-m", "ingestor.sim", "--accounts", str(accounts), "--seed", str(seed),
         "--port", "0", "--duration", str(duration), "--grace", "60",
         "--trade-rate", str(trade_rate), "--truth", str(folder / "truth.json"),
         "--write-accounts", str(accounts_file), *faults],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = sim.stdout.readline()
    assert first, sim.stderr.read()
    json.loads(first)
    with accounts_file.open("a") as f:
        f.write(ENGINE.format(flush_interval=flush_interval))
        if tls:
            f.write(f"  ca_file: {ca.ca_file.name}\n")  # in the engine mapping ENGINE ends with
    env = {}
    for line in accounts_file.with_suffix(".env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name] = value
    # API keys are secrets too: neither may appear anywhere we write.
    secrets = [v for k, v in env.items() if k.endswith(("_API_SECRET", "_API_KEY"))]
    return Run(folder, sim, accounts_file, env, secrets, sink=sink)
