"""Connection engine benchmark: memory per idle connection, and CPU per message from socket to
finished Arrow batch under the simulator's firehose.

The simulator runs as its own process, so its memory and CPU are not counted; the collector
runs in this one, where RSS and CPU time (all threads) are read from /proc and
`time.process_time`. The firehose is run several times (the median counts: two shared cores
swing by 10%) and compared with a baseline in the same run, the `websockets` library receiving
the same frames without decoding them. Run with `make bench-engine`.

    .venv/bin/python benches/bench_engine.py --idle 100,1000,5000 --firehose 8 --seconds 10 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

from benches.pipelines.common import SUBSCRIBE, auth_request  # noqa: E402
from ingestor import config  # noqa: E402
from ingestor._core import Collector  # noqa: E402
from tests.tls_helpers import private_ca  # noqa: E402

QUIET = {
    "ping_interval": 20.0,
    "connect_budget": 1_000_000,
    "connect_window": 1.0,
    "connect_burst": 1_000_000,
    "handshake_timeout": 60.0,
}


def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident memory (or another /proc/self/status field), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def anon_kib() -> int:
    """Resident anonymous memory (heap, stacks), without code and mapped files: the part that
    is this process's alone (several collector processes share one copy of the code)."""
    return rss_kib("RssAnon")


class Simulator:
    """`python -m ingestor.sim` in its own process, with its accounts file; with `tls`, over
    wss:// and https:// with a certificate from a private CA that `options` make trusted."""

    def __init__(self, accounts: int, *flags: str, tls: bool = False) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bench-engine-"))
        accounts_file = self.folder / "accounts.yaml"
        self.report = self.folder / "report.json"
        self.options: dict[str, object] = {}
        if tls:
            ca = private_ca(self.folder)
            self.options["ca_file"] = str(ca.ca_file)
            flags = (*flags, "--tls-cert", str(ca.cert_file), "--tls-key", str(ca.key_file))
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


def idle_memory(counts: list[int], tls: bool = False) -> list[str]:
    """One collector grows through `counts` idle connections. The first row is the engine
    with no connection (runtime, TLS roots, HTTP client, decoder); each later row gives the
    growth per connection overall and per connection added since the row above, which is
    what one more account costs once the fixed part is paid."""
    counts = sorted(counts)
    kind = "wss through a private CA" if tls else "plain ws"
    lines = [
        f"### Memory per idle connection ({kind} on loopback, one collector growing)",
        "",
    ]
    if not tls:
        lines += [
            "RSS counts the extension's code as it is first run (~3 MiB, shared by every "
            "collector process on the box); anonymous memory (heap, stacks) is the collector's "
            "own.",
            "",
        ]
    lines += [
        "| connections | RSS growth | per connection | anonymous growth | per connection "
        "| anonymous, per connection added since the row above | connected in |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    sim = Simulator(counts[-1], "--trade-rate", "0", tls=tls)
    try:
        before, anon_before = rss_kib(), anon_kib()
        collector = Collector([], **QUIET, **sim.options)
        time.sleep(1.0)
        held, anon_then = 0, anon_kib() - anon_before
        lines.append(
            f"| 0 (the engine alone) | {(rss_kib() - before) / 1024:,.1f} MiB | "
            f"| {anon_then / 1024:,.1f} MiB | | | |"
        )
        for count in counts:
            for spec in sim.specs[held:count]:
                collector.add_account(spec)
            took = wait_live(collector, count, timeout=max(60.0, (count - held) / 50))
            time.sleep(2.0)
            collector.next_batches(0.1)
            grown, anon = rss_kib() - before, anon_kib() - anon_before
            added = (anon - anon_then) / (count - held)
            lines.append(
                f"| {count:,} | {grown / 1024:,.1f} MiB | {grown / count:,.1f} KiB "
                f"| {anon / 1024:,.1f} MiB | {anon / count:,.1f} KiB | {added:,.1f} KiB "
                f"| {took:.1f} s |"
            )
            held, anon_then = count, anon
        collector.close()
    finally:
        sim.stop()
    lines.append("")
    return lines


def idle_memory_apart(counts: str, tls: bool = False) -> list[str]:
    """`idle_memory` in a fresh interpreter: memory that a collector closed earlier in this
    process freed would be reused by the next one, whose growth would then read too low."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "idle.json"
        command = [sys.executable, __file__, "--idle", counts, "--idle-child", str(out)]
        subprocess.run([*command, *(["--tls"] if tls else [])], check=True)
        return json.loads(out.read_text())


def firehose_run(connections: int, seconds: float, tls: bool = False) -> dict[str, float]:
    """One collector with the service's defaults (batch size, flush interval) under the
    firehose: messages, rows, wall and CPU time (all threads) after a second of warm-up."""
    sim = Simulator(connections, "--firehose", tls=tls)
    try:
        collector = Collector(sim.specs, **QUIET, **sim.options)
        wait_live(collector, connections, timeout=60)
        warm = time.monotonic() + 1.0
        while time.monotonic() < warm:
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
    return {
        "frames": frames,
        "rows": rows,
        "wall": wall,
        "cpu": cpu,
        "server_rate": ceiling.get("messages", 0) / max(ceiling.get("seconds", 1), 1e-9),
    }


async def receive_only(connections: int, seconds: float, specs: list[dict]) -> dict[str, float]:
    """The baseline: the `websockets` library receives the same firehose in this process and
    only counts the frames, the least a Python capture does before decoding anything."""
    counts = [0] * connections

    async def reader(i: int, spec: dict) -> None:
        async with websockets.connect(str(spec["ws_url"]), max_queue=None, compression=None) as ws:
            await ws.send(auth_request(str(spec["api_key"]), str(spec["api_secret"])))
            await ws.send(SUBSCRIBE)
            async for _ in ws:
                counts[i] += 1

    tasks = [asyncio.create_task(reader(i, spec)) for i, spec in enumerate(specs[:connections])]
    await asyncio.sleep(1.0)
    frames0, cpu0, wall0 = sum(counts), time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    frames, cpu, wall = sum(counts) - frames0, time.process_time() - cpu0, time.monotonic() - wall0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"frames": frames, "cpu": cpu, "wall": wall}


def firehose(connections: int, seconds: float, runs: int) -> list[str]:
    results = [firehose_run(connections, seconds) for _ in range(runs)]
    over_tls = firehose_run(connections, seconds, tls=True)
    sim = Simulator(connections, "--firehose")
    try:
        baseline = asyncio.run(receive_only(connections, seconds, sim.specs))
    finally:
        sim.stop()

    def per_message(result: dict[str, float]) -> float:
        return result["cpu"] / max(result["frames"], 1) * 1e6

    lines = [
        f"### Firehose: {connections} connections, {runs} runs of {seconds:.0f} s",
        "",
        "The collector with the service's defaults (batch size 10,000 rows, flush interval "
        "1 s); CPU of all its threads, socket to finished pyarrow batch.",
        "",
        "| run | messages received and decoded | rows in finished batches | messages / s "
        "| collector CPU µs / message | collector CPU use | simulator's own rate |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in enumerate(results, 1):
        lines.append(
            f"| {n} | {r['frames']:,} | {r['rows']:,} | {r['frames'] / r['wall']:,.0f} "
            f"| {per_message(r):.2f} | {r['cpu'] / r['wall'] * 100:.0f}% of one core "
            f"| {r['server_rate']:,.0f} msgs/s |"
        )
    median = statistics.median(per_message(r) for r in results)
    base = per_message(baseline)
    lines += [
        "",
        f"Median: **{median:.2f} µs CPU a message** (goal ≤ 2).",
        "",
        "| baseline in the same run | messages | CPU µs / message | ingestor's median, faster by |",
        "|---|---:|---:|---:|",
        f"| `websockets` receiving the same firehose, decoding nothing | "
        f"{baseline['frames']:,} | {base:.2f} | {base / median:.1f}× |",
        "",
        "The same firehose over wss (TLS through a private CA, one run):",
        "",
        "| transport | messages | messages / s | collector CPU µs / message | collector CPU use "
        "| simulator's own rate |",
        "|---|---:|---:|---:|---:|---:|",
        f"| wss | {over_tls['frames']:,} | {over_tls['frames'] / over_tls['wall']:,.0f} "
        f"| {per_message(over_tls):.2f} | {over_tls['cpu'] / over_tls['wall'] * 100:.0f}% "
        f"of one core | {over_tls['server_rate']:,.0f} msgs/s |",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--idle", default="100,1000,5000", help="connection counts, comma-separated"
    )
    parser.add_argument(
        "--idle-tls", default="100,1000", help="connection counts over wss, comma-separated"
    )
    parser.add_argument("--firehose", type=int, default=8, help="firehose connections")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3, help="firehose runs (the median counts)")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "engine.md")
    parser.add_argument("--idle-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tls", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.idle_child:
        counts = [int(n) for n in args.idle.split(",") if n]
        args.idle_child.write_text(json.dumps(idle_memory(counts, tls=args.tls)))
        return
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
    lines += idle_memory_apart(args.idle)
    lines += idle_memory_apart(args.idle_tls, tls=True)
    lines += firehose(args.firehose, args.seconds, args.runs)
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
