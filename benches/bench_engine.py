"""Connection engine benchmark: memory per idle connection, and CPU per message from socket to
finished Arrow batch under the simulator's firehose.

The simulator runs as its own process, so its memory and CPU are not counted; the collector
runs in this one, where RSS and CPU time (all threads) are read from /proc and
`time.process_time`. Run with `make bench-engine`.

    .venv/bin/python benches/bench_engine.py --idle 100,1000,5000 --firehose 8 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingestor import config  # noqa: E402
from ingestor._core import Collector  # noqa: E402

QUIET = {
    "ping_interval": 20.0,
    "connect_budget": 1_000_000,
    "connect_window": 1.0,
    "connect_burst": 1_000_000,
    "handshake_timeout": 60.0,
}


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Simulator:
    """`python -m ingestor.sim` in its own process, with its accounts file."""

    def __init__(self, accounts: int, *flags: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bench-engine-"))
        accounts_file = self.folder / "accounts.yaml"
        self.report = self.folder / "report.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingestor.sim", "--accounts", str(accounts), "--port", "0",
             "--write-accounts", str(accounts_file), "--truth", str(self.report),
             "--grace", "0", "--idle-timeout", "3600", *flags],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout.readline(), "the simulator did not start"
        env = {}
        for line in accounts_file.with_suffix(".env").read_text().splitlines():
            if "=" in line:
                name, value = line.split("=", 1)
                env[name] = value
        self.specs = [a.engine_spec() for a in config.load(accounts_file, env=env).accounts]

    def stop(self) -> dict:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=120)
        return json.loads(self.report.read_text())


def wait_live(collector: Collector, count: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        collector.next_batches(0.1)  # keep taking: resync rows must not fill the bound
        stats = collector.stats()
        if sum(1 for s in stats if s["state"] == "live") == count:
            return time.monotonic() - start
    raise TimeoutError(f"not all {count} accounts live after {timeout} s")


def idle_memory(counts: list[int]) -> list[str]:
    lines = [
        "### Memory per idle connection (plain ws on loopback)",
        "",
        "| connections | collector RSS growth | per connection | connected in |",
        "|---:|---:|---:|---:|",
    ]
    for count in counts:
        sim = Simulator(count, "--trade-rate", "0")
        try:
            before = rss_kib()
            collector = Collector(sim.specs, **QUIET)
            took = wait_live(collector, count, timeout=max(60.0, count / 50))
            time.sleep(2.0)
            collector.next_batches(0.1)
            grown = rss_kib() - before
            lines.append(
                f"| {count:,} | {grown / 1024:,.1f} MiB | {grown / count:,.1f} KiB | {took:.1f} s |"
            )
            collector.close()
            del collector
        finally:
            sim.stop()
    lines.append("")
    return lines


def firehose(connections: int, seconds: float) -> list[str]:
    sim = Simulator(connections, "--firehose")
    try:
        collector = Collector(sim.specs, **QUIET, batch_size=50_000, flush_interval=0.5)
        wait_live(collector, connections, timeout=60)
        collector.next_batches(0.2)
        frames0 = sum(s["frames"] for s in collector.stats())
        cpu0, wall0 = time.process_time(), time.monotonic()
        rows = 0
        while time.monotonic() - wall0 < seconds:
            rows += sum(b.num_rows for _, b in collector.next_batches(0.2))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        frames = sum(s["frames"] for s in collector.stats()) - frames0
        collector.close()
    finally:
        report = sim.stop()
    ceiling = report.get("firehose", {})
    server_rate = ceiling.get("messages", 0) / max(ceiling.get("seconds", 1), 1e-9)
    return [
        f"### Firehose: {connections} connections, {seconds:.0f} s",
        "",
        "| what | value |",
        "|---|---:|",
        f"| messages received and decoded | {frames:,} |",
        f"| rows in finished batches | {rows:,} |",
        f"| messages / s | {frames / wall:,.0f} |",
        f"| collector CPU µs / message (all threads) | {cpu / max(frames, 1) * 1e6:.2f} |",
        f"| collector CPU use | {cpu / wall * 100:.0f}% of one core |",
        f"| simulator's own rate over its run | {server_rate:,.0f} msgs/s |",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--idle", default="100,1000,5000", help="connection counts, comma-separated"
    )
    parser.add_argument("--firehose", type=int, default=8, help="firehose connections")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "engine.md")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lines = [
        "## Connection engine benchmark",
        "",
        f"`make bench-engine` on {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}; file limit {hard:,}. "
        "The simulator runs in its own process and is not counted.",
        "",
    ]
    lines += idle_memory([int(n) for n in args.idle.split(",") if n])
    lines += firehose(args.firehose, args.seconds)
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
