"""End to end over loopback: the simulator's firehose -> a capture pipeline -> a committed store,
for `python -m ingestor` and, in the same run with the same frames, two pure-Python pipelines a
user would write instead (benches/pipelines/). Run with `make bench` (or alone:
`.venv/bin/python benches/bench_e2e.py --accounts 10,100,1000`).

Per pipeline and account count, two phases against a fresh simulator each:

- throughput: the firehose unpaced (as fast as the pipeline reads). Measured in a window after a
  warm-up: pushes committed in the window (ingestor: the count of its commit-delay histogram
  on --metrics-port; the pipelines flush in the same loop that reads, so frames read), CPU
  time of every process of the pipeline in the window (from /proc, so the collectors and the
  writer count, the simulator does not), and their summed PSS (the pipelines: peak RSS of
  their one process).
- latency: the firehose paced at a rate every pipeline sustains, with delays from a push's
  `creationTime` to the commit that stored it (ingestor: its `ingestor_commit_delay_seconds`
  histogram on --metrics-port, quantiles interpolated within buckets; the pipelines: exact).

The simulator's own ceiling (raw readers that drop bytes) comes from benches/sim_firehose.py.
Results go to benches/results/e2e.md and e2e.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benches" / "results"
PIPELINES = {
    "seed-style": ROOT / "benches" / "pipelines" / "seed_style.py",
    "pure Python": ROOT / "benches" / "pipelines" / "pure_python.py",
}
ENGINE = """
engine:
  connect_budget: 1000000
  connect_window: 1
  connect_burst: 1000000
"""
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    pipeline: str
    accounts: int
    messages: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    rss_kib: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    paced_rate: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: ingestor: per process role, [CPU seconds, peak PSS KiB] in the window, unpaced and paced.
    roles: dict[str, list[float]] = field(default_factory=dict)
    paced_roles: dict[str, list[float]] = field(default_factory=dict)
    paced_messages: int = 0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.messages * 1e6 if self.messages else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Simulator:
    """`python -m ingestor.sim --firehose` in its own process, with its accounts file."""

    def __init__(self, folder: Path, accounts: int, rate: float | None) -> None:
        self.accounts_file = folder / "accounts.yaml"
        flags = ["--firehose-rate", str(rate)] if rate else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingestor.sim", "--firehose", "--accounts", str(accounts),
             "--port", "0", "--write-accounts", str(self.accounts_file),
             "--truth", str(folder / "report.json"), "--grace", "0", "--idle-timeout", "3600",
             "--sink-path", str(folder / "capture.duckdb"), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=folder,
        )  # fmt: skip
        assert self.process.stdout and self.process.stdout.readline(), "the simulator failed"
        # Loopback: no exchange's IP to protect, so no connection budget to wait for.
        with self.accounts_file.open("a") as f:
            f.write(ENGINE)
        self.env = dict(
            line.split("=", 1)
            for line in self.accounts_file.with_suffix(".env").read_text().splitlines()
            if "=" in line
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def process_tree(root: int) -> list[int]:
    """The pid and every descendant, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


#: The service's processes by the names they give themselves (/proc/PID/comm); the root of
#: the tree is the supervisor.
ROLES = (("ingestor-writer", "writer"), ("ingestor-col-", "collectors"))


def role_of(pid: int, root: int) -> str:
    if pid == root:
        return "supervisor"
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "other"
    return next((role for prefix, role in ROLES if comm.startswith(prefix)), "other")


def tree_usage(root: int) -> dict[str, tuple[float, int]]:
    """Per role in the process tree (supervisor, writer, collectors, other), (CPU seconds so
    far, memory KiB now) summed over its processes. Memory is PSS: forked processes share
    pages, which RSS would count once per process."""
    usage: dict[str, tuple[float, int]] = {}
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
        memory = next(
            (int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0
        )
        role = role_of(pid, root)
        before = usage.get(role, (0.0, 0))
        usage[role] = (before[0] + cpu, before[1] + memory)
    return usage


def measure_window(
    process: subprocess.Popen, warmup: float, seconds: float, probe: Callable[[], float]
) -> tuple[float, int, float, dict[str, list[float]]]:
    """CPU seconds and peak memory (PSS) of the process tree over [warmup, warmup + seconds],
    how far `probe` (a running count) moved in the same window, and per role [CPU seconds,
    peak PSS KiB]. A collector restarted in the window counts from its start (its CPU before
    the window is not taken off)."""
    time.sleep(warmup)
    start = tree_usage(process.pid)
    count0 = probe()
    peak, peaks = 0, dict.fromkeys(start, 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        now = tree_usage(process.pid)
        peak = max(peak, sum(memory for _, memory in now.values()))
        for role, (_, memory) in now.items():
            peaks[role] = max(peaks.get(role, 0), memory)
    end = tree_usage(process.pid)
    roles = {
        role: [cpu - start.get(role, (0.0, 0))[0], peaks.get(role, 0)]
        for role, (cpu, _) in end.items()
    }
    return sum(cpu for cpu, _ in roles.values()), peak, probe() - count0, roles


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def committed_pushes(port: int) -> float:
    """Pushes committed so far: the count of the commit-delay histogram, which counts each
    push once, when the commit that stores it is done."""
    name = "ingestor_commit_delay_seconds_count"
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in scrape(port).splitlines() if line.startswith(name)
    )


def histogram_quantiles(text: str, name: str) -> tuple[float | None, float | None]:
    """p50 and p99 in ms from a Prometheus histogram (summed over its labels), by linear
    interpolation inside the bucket that holds the quantile."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            labels, value = line.rsplit(" ", 1)
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(value)
    if not buckets or not buckets[max(buckets)]:
        return None, None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]

    def at(q: float) -> float:
        rank, lower, below = q * total, 0.0, 0.0
        for bound in bounds:
            if buckets[bound] >= rank:
                if bound == float("inf"):
                    return lower * 1000
                share = (rank - below) / max(buckets[bound] - below, 1e-12)
                return (lower + share * (bound - lower)) * 1000
            lower, below = bound, buckets[bound]
        return lower * 1000

    return at(0.50), at(0.99)


def run_ingestor(
    name: str,
    sink: str,
    raw_json: bool,
    folder: Path,
    accounts: int,
    args: argparse.Namespace,
    rate: float | None,
) -> Result:
    sim = Simulator(folder, accounts, rate)
    store = folder / f"capture.{sink}"
    port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "ingestor", "--accounts", str(sim.accounts_file),
         "--sink", sink, "--store", str(store), "--status", "log", "--log-level", "warning",
         "--duration", str(args.warmup + args.seconds + 2), "--no-check"],
        env={**os.environ, **sim.env, "INGESTOR_METRICS_PORT": str(port),
             "INGESTOR_FLUSH_INTERVAL": str(args.flush_interval),
             "INGESTOR_RAW_JSON": str(raw_json).lower()},
        cwd=folder,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Pushes committed in the window, not pushes created in it: a writer that falls
        # behind would otherwise look fast, its backlog committed after the window's CPU count.
        cpu, rss, committed, roles = measure_window(
            service, args.warmup, args.seconds, lambda: committed_pushes(port)
        )
        metrics = ""
        try:
            metrics = scrape(port)
        except OSError as e:
            print(f"  (no metrics: {e})", file=sys.stderr)
        _, err = service.communicate(timeout=600)
        if service.returncode != 0:
            raise RuntimeError(f"ingestor exited {service.returncode}: {err[-2000:]}")
        if "cannot move rows" in err:
            # Rows readable in the hot tier but never moved into the file: the count above
            # would be the flushes' rate alone (065e5ad's run was, at a 32 MB memory limit).
            raise RuntimeError(f"the store's moves failed during the run: {err[-2000:]}")
    finally:
        if service.poll() is None:
            for pid in process_tree(service.pid):  # the collectors and writer too
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            service.wait()
        sim.stop()
    result = Result(name, accounts, cpu_seconds=cpu, rss_kib=rss, roles=roles)
    result.seconds = args.seconds
    result.messages = int(committed)
    result.p50_ms, result.p99_ms = histogram_quantiles(metrics, "ingestor_commit_delay_seconds")
    return result


def run_pipeline(
    name: str, folder: Path, accounts: int, args: argparse.Namespace, rate: float | None
) -> Result:
    sim = Simulator(folder, accounts, rate)
    try:
        out = subprocess.run(
            [sys.executable, str(PIPELINES[name]), "--accounts", str(sim.accounts_file),
             "--store", str(folder / "pipeline.db"), "--seconds", str(args.seconds),
             "--warmup", str(args.warmup), "--flush-interval", str(args.flush_interval or 1.0)],
            capture_output=True, text=True, timeout=args.warmup + args.seconds + 300,
        )  # fmt: skip
    finally:
        sim.stop()
    if out.returncode != 0:
        raise RuntimeError(f"{name} exited {out.returncode}: {out.stderr[-2000:]}")
    report = json.loads(out.stdout.splitlines()[-1])
    return Result(
        name,
        accounts,
        messages=report["messages"],
        seconds=report["seconds"],
        cpu_seconds=report["cpu_seconds"],
        rss_kib=report["max_rss_kib"],
        p50_ms=report["delays_ms"]["p50"],
        p99_ms=report["delays_ms"]["p99"],
    )


def run_one(name: str, accounts: int, args: argparse.Namespace) -> Result:
    """The throughput phase, then the latency phase at the paced rate."""
    print(f"{name}, {accounts} accounts ...", file=sys.stderr, flush=True)
    if name.startswith("ingestor"):
        sink = "parquet" if "parquet" in name else "duckdb"
        raw_json = "no raw_json" not in name
        runner = lambda *a: run_ingestor(name, sink, raw_json, *a)  # noqa: E731
    else:
        runner = lambda *a: run_pipeline(name, *a)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        result = runner(Path(tmp), accounts, args, None)
    rate = args.paced_total / accounts
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        paced = runner(Path(tmp), accounts, args, rate)
    result.p50_ms, result.p99_ms, result.paced_rate = paced.p50_ms, paced.p99_ms, paced.rate
    result.paced_roles, result.paced_messages = paced.roles, paced.messages
    print(
        f"  {result.rate:,.0f} msgs/s, {result.cpu_us:.2f} µs CPU/msg, "
        f"p99 {fmt_ms(result.p99_ms)} at {paced.rate:,.0f} msgs/s",
        file=sys.stderr,
    )
    return result


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def table(results: list[Result], args: argparse.Namespace) -> list[str]:
    lines = [
        "| pipeline | accounts | msgs/s sustained | CPU µs/msg | memory (PSS) | "
        f"p50 / p99 creation→commit at {args.paced_total:,.0f} msgs/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.pipeline} | {r.accounts:,} | {r.rate:,.0f} | {r.cpu_us:.2f} | "
            f"{r.rss_kib / 1024:,.0f} MiB | {fmt_ms(r.p50_ms)} / {fmt_ms(r.p99_ms)} |"
        )
    lines += ["", "Ratios pair by pair: CPU per message (baseline ÷ ingestor) and throughput "
              "(ingestor ÷ baseline). The baselines keep no raw JSON, so the like-for-like pair "
              "is the one without raw_json.", "",
              "| accounts | baseline | vs ingestor: CPU/msg | msgs/s | "
              "vs ingestor (no raw_json): CPU/msg | msgs/s |",
              "|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    by_key = {(r.pipeline, r.accounts): r for r in results}
    for r in results:
        if r.pipeline not in PIPELINES:
            continue
        cells = []
        for ours in ("ingestor", "ingestor (no raw_json)"):
            mine = by_key.get((ours, r.accounts))
            if mine is None or not mine.messages or not r.messages:
                cells += ["n/a", "n/a"]
            else:
                cells += [f"{r.cpu_us / mine.cpu_us:.1f}×", f"{mine.rate / r.rate:.1f}×"]
        lines.append(f"| {r.accounts:,} | {r.pipeline} | " + " | ".join(cells) + " |")
    return lines


def role_us(roles: dict[str, list[float]], name: str, messages: int) -> str:
    """A role's CPU µs per message committed."""
    cpu = roles.get(name, [0.0, 0])[0]
    return f"{cpu / messages * 1e6:.2f}" if messages else "n/a"


def roles_table(results: list[Result], args: argparse.Namespace) -> list[str]:
    """The ingestor's processes one by one: CPU per message committed, unpaced and paced,
    and peak PSS unpaced (each role's own peak; the sum of peaks can exceed the tree's)."""
    names = ("writer", "collectors", "supervisor")
    lines = [
        "Per process (CPU µs per message committed; PSS at saturation, each its own peak):",
        "",
        "| pipeline | accounts | " + " | ".join(f"{n} µs/msg" for n in names)
        + f" | writer µs/msg at {args.paced_total:,.0f} msgs/s | "
        + " / ".join(names) + " PSS |",
        "|---|---:|" + "---:|" * (len(names) + 2),
    ]  # fmt: skip
    for r in results:
        if not r.roles or not r.messages:
            continue
        pss = " / ".join(f"{r.roles.get(n, [0, 0])[1] / 1024:,.0f}" for n in names)
        lines.append(
            f"| {r.pipeline} | {r.accounts:,} | "
            + " | ".join(role_us(r.roles, n, r.messages) for n in names)
            + f" | {role_us(r.paced_roles, 'writer', r.paced_messages)} | {pss} MiB |"
        )
    return lines


def plot(results: list[Result], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in ["ingestor", "ingestor (no raw_json)", "ingestor (parquet)", *PIPELINES]:
        mine = [r for r in results if r.pipeline == name]
        if not mine:
            continue
        xs = [r.accounts for r in mine]
        left.plot(xs, [r.rate for r in mine], marker="o", label=name)
        right.plot(xs, [r.cpu_us for r in mine], marker="o", label=name)
    for axis, title in ((left, "messages / s sustained"), (right, "CPU µs per message")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("accounts (connections)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (
        f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="10,100,1000", help="account counts")
    parser.add_argument(
        "--pipelines",
        default="ingestor,ingestor (no raw_json),ingestor (parquet),seed-style,pure Python",
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--flush-interval", type=float, default=1.0)
    parser.add_argument(
        "--paced-total", type=float, default=5000.0, help="latency phase msgs/s, all accounts"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "e2e.md")
    parser.add_argument(
        "--render", action="store_true", help="redraw the table and plot from the saved .json"
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    raw = args.out.with_suffix(".json")
    if args.render:
        results = [Result(**r) for r in json.loads(raw.read_text())]
    else:
        results = []
        for accounts in [int(n) for n in args.accounts.split(",") if n]:
            for name in [p.strip() for p in args.pipelines.split(",") if p.strip()]:
                results.append(run_one(name, accounts, args))
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps([asdict(r) for r in results], indent=1))
    lines = [
        "## End to end: firehose → pipeline → committed store",
        "",
        f"`make bench` on {machine()}, {time.strftime('%Y-%m-%d', time.gmtime())}. "
        f"Window {args.seconds:.0f} s after {args.warmup:.0f} s warm-up; flush interval "
        f"{args.flush_interval} s. CPU is summed over every process of the pipeline (ingestor: "
        "supervisor, collectors, writer); the simulator runs in its own process, uncounted, "
        "sharing the same cores.",
        "",
        *table(results, args),
        "",
        *roles_table(results, args),
        "",
    ]
    png = args.out.with_suffix(".png")
    if plot(results, png):
        lines += [f"![throughput and CPU per message]({png.name})", ""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
