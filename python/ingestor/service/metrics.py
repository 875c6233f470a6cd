"""`--metrics-port`: Prometheus metrics, `/healthz` and `/readyz`, served from the supervisor.

Nothing is counted per message in Python: the supervisor keeps the latest figures the
collectors (the Rust engine's per-account counters) and the writer (`meter.Readings`) send once
a second, and a custom collector turns them into metric families when Prometheus scrapes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ingestor import check
from ingestor.config import Settings
from ingestor.service.meter import (
    COMMIT_BUCKETS,
    FLUSH_BUCKETS,
    LAG_BUCKETS,
    Histogram,
    Readings,
    Totals,
)

log = logging.getLogger("ingestor.metrics")

#: The engine's per-account counters (rust/core/src/engine/stats.rs), as exported.
COUNTERS = {
    "frames": "Frames received (pushes, control frames, pongs).",
    "rows": "Rows decoded from pushes and REST resyncs.",
    "rejects": "Frames or elements rejected (each is a row of `rejects`).",
    "reconnects": "Connections lost and reopened.",
    "resyncs": "REST resyncs of the account's state.",
}
COUNTER_NAMES = {"rows": "rows_decoded"}
#: Engine states in which the account is subscribed and streaming.
LIVE = frozenset({"live", "paused"})
#: Engine state: the exchange refused the auth or subscription (Bybit's message kept).
FAILING = "failing"
#: At most this many accounts are listed in a /readyz body.
READYZ_LINES = 50


@dataclass(frozen=True)
class Readiness:
    ready: bool
    live: int
    explained: dict[str, str]
    waiting: dict[str, str]
    why: str = ""

    def body(self) -> str:
        if self.why:
            return f"not ready: {self.why}\n"
        head = (
            f"ready: {self.live} live, {len(self.explained)} explained\n"
            if self.ready
            else f"not ready: {len(self.waiting)} of "
            f"{self.live + len(self.explained) + len(self.waiting)} accounts\n"
        )
        listed = self.waiting if not self.ready else self.explained
        lines = [f"{account} {reason}" for account, reason in list(listed.items())[:READYZ_LINES]]
        if len(listed) > READYZ_LINES:
            lines.append(f"... and {len(listed) - READYZ_LINES} more")
        if not self.ready and self.explained:
            lines.append(f"({len(self.explained)} explained: refused with a reason)")
        return head + "".join(line + "\n" for line in lines)


class Telemetry:
    """The latest figures of the whole service; fed by the supervisor's loop, read by the HTTP
    thread, so every access holds the lock."""

    def __init__(self, settings: Settings) -> None:
        self._lock = threading.Lock()
        self._accounts = {a.id: a for a in settings.accounts}
        #: account -> the engine's latest stats; worker -> its accounts.
        self._stats: dict[str, dict[str, Any]] = {}
        self._workers: dict[int, list[str]] = {}
        #: Counters of collectors that were restarted, so exported counters never go back.
        self._base: dict[str, Counter] = {}
        #: Accounts the start check refused: not captured, with the reason.
        self._refused: dict[str, str] = {}
        self._totals = Totals()
        self._writer = (0, 0.0, 0, 0)  # rows committed, last flush s, spool files, pending rows
        self._queued: dict[int, int] = {}
        self._undelivered: dict[int, int] = {}
        self._restarts = 0
        self._writer_restarts = 0
        #: The store as the writer last found it: healthy, why not, failures by kind.
        self._store: tuple[bool, str, dict[str, int]] = (True, "", {})
        #: Batches handed to the writer and not acknowledged: bytes, rows, the budget.
        self._in_flight = (0, 0, 0)
        self._phase = "starting"  # starting -> checking -> capturing -> draining

    # ---- fed by the supervisor -------------------------------------------------------------

    def phase(self, phase: str) -> None:
        with self._lock:
            self._phase = phase

    def refused(self, refused: dict[str, str]) -> None:
        with self._lock:
            self._refused = dict(refused)

    def collector(
        self, worker: int, stats: list[dict[str, Any]], queued: int, undelivered: int
    ) -> None:
        with self._lock:
            for s in stats:
                self._stats[s["account_id"]] = s
            self._workers[worker] = [s["account_id"] for s in stats]
            self._queued[worker] = queued
            self._undelivered[worker] = undelivered

    def writer(
        self,
        committed: int,
        last_flush_s: float,
        spooled: int,
        pending: int,
        readings: Readings | None,
    ) -> None:
        with self._lock:
            self._writer = (committed, last_flush_s, spooled, pending)
            if readings is not None:
                self._totals.add(readings)

    def writer_restarted(self) -> None:
        with self._lock:
            self._writer_restarts += 1

    def store_health(self, healthy: bool, reason: str, errors: dict[str, int]) -> None:
        with self._lock:
            self._store = (healthy, reason, dict(errors))

    def in_flight(self, size: int, rows: int, budget: int) -> None:
        with self._lock:
            self._in_flight = (size, rows, budget)

    def restarted(self, worker: int) -> None:
        """The worker's collector died: its engine's counters start again from zero."""
        with self._lock:
            self._restarts += 1
            for account in self._workers.get(worker, ()):
                last = self._stats.get(account)
                if last is None:
                    continue
                base = self._base.setdefault(account, Counter())
                for name in COUNTERS:
                    base[name] += last[name]
                    last[name] = 0
                self._stats[account] = {**last, "state": "restarting"}

    # ---- read by the HTTP thread -----------------------------------------------------------

    def readiness(self) -> Readiness:
        with self._lock:
            return self._readiness()

    def _readiness(self) -> Readiness:
        if self._phase in ("starting", "checking"):
            return Readiness(False, 0, {}, {}, why="the start check is running")
        if self._phase == "draining":
            return Readiness(False, 0, {}, {}, why="draining")
        healthy, reason, _ = self._store
        if not healthy:
            return Readiness(False, 0, {}, {}, why=f"the store is failing: {reason}")
        live, explained, waiting = 0, {}, {}
        for account in self._accounts:
            stats = self._stats.get(account)
            if account in self._refused:
                explained[account] = f"refused at start: {self._refused[account]}"
            elif stats is None:
                waiting[account] = "starting"
            elif stats["state"] in LIVE:
                live += 1
            elif stats["state"] == FAILING:
                explained[account] = f"refused by the exchange: {self._error(account, stats)}"
            else:
                error = self._error(account, stats)
                waiting[account] = stats["state"] + (f": {error}" if error else "")
        return Readiness(not waiting, live, explained, waiting)

    def _error(self, account: str, stats: dict[str, Any]) -> str:
        error = stats.get("last_error") or ""
        # The engine keeps no secret in its errors; scrubbing again costs nothing.
        return check._scrub(error, self._accounts[account]) if error else ""

    def families(self) -> Iterator[Metric]:
        with self._lock:
            ready = self._readiness()
            stats = {a: dict(s) for a, s in self._stats.items()}
            base = {a: Counter(c) for a, c in self._base.items()}
            refused = set(self._refused)
            totals = Totals(
                rows=Counter(self._totals.rows),
                lag={k: Histogram(list(h.counts), h.total) for k, h in self._totals.lag.items()},
                last_arrival_us=dict(self._totals.last_arrival_us),
                gap_open=dict(self._totals.gap_open),
                gaps=Counter(self._totals.gaps),
                flush=Histogram(list(self._totals.flush.counts), self._totals.flush.total),
                commit_delay=Histogram(
                    list(self._totals.commit_delay.counts), self._totals.commit_delay.total
                ),
                flushes=self._totals.flushes,
                committed=self._totals.committed,
            )
            committed, last_flush_s, spooled, pending = self._writer
            queued, undelivered = dict(self._queued), dict(self._undelivered)
            restarts = self._restarts
            writer_restarts = self._writer_restarts
            store_ok, _, store_errors = self._store
            in_flight_bytes, in_flight_rows, budget = self._in_flight
            accounts = list(self._accounts)
        now = time.time()
        explained = set(ready.explained)

        states = Counter()
        live = GaugeMetricFamily(
            "ingestor_account_live",
            "1 while the account is subscribed and streaming.",
            labels=["account"],
        )
        account_ready = GaugeMetricFamily(
            "ingestor_account_ready",
            "1 when the account is live, or not captured for a stated reason (see /readyz).",
            labels=["account"],
        )
        age = GaugeMetricFamily(
            "ingestor_last_message_age_seconds",
            "Seconds since the account's connection last received a frame.",
            labels=["account"],
        )
        counters = {
            name: CounterMetricFamily(
                f"ingestor_{COUNTER_NAMES.get(name, name)}_total", doc, labels=["account"]
            )
            for name, doc in COUNTERS.items()
        }
        for account in accounts:
            s = stats.get(account)
            state = "refused" if account in refused else s["state"] if s else "starting"
            states[state] += 1
            live.add_metric([account], 1.0 if state in LIVE else 0.0)
            account_ready.add_metric(
                [account], 1.0 if state in LIVE or account in explained else 0.0
            )
            if s is None:
                continue
            if s.get("last_message_us"):
                age.add_metric([account], max(0.0, now - s["last_message_us"] / 1e6))
            folded = base.get(account, Counter())
            for name, family in counters.items():
                family.add_metric([account], s[name] + folded[name])
        yield from (live, account_ready, age, *counters.values())

        by_state = GaugeMetricFamily(
            "ingestor_accounts",
            "Accounts by state (refused: by the start check).",
            labels=["state"],
        )
        for state, n in sorted(states.items()):
            by_state.add_metric([state], n)
        yield by_state
        yield GaugeMetricFamily(
            "ingestor_ready", "1 when /readyz answers 200.", value=1.0 if ready.ready else 0.0
        )
        yield from _writer_families(totals, now, accounts)
        yield CounterMetricFamily(
            "ingestor_rows_committed_total",
            "Rows the store committed (replayed pushes skipped).",
            value=committed,
        )
        yield GaugeMetricFamily(
            "ingestor_last_flush_seconds",
            "How long the writer's last flush took.",
            value=last_flush_s,
        )
        yield GaugeMetricFamily(
            "ingestor_spool_files",
            "Batch files waiting in the on-disk spool (a reader held the store).",
            value=spooled,
        )
        yield GaugeMetricFamily(
            "ingestor_writer_pending_rows",
            "Rows the writer holds for its next flush.",
            value=pending,
        )
        yield _per_worker(
            "ingestor_collector_undelivered_rows",
            "Rows decoded by a collector's engine and not yet taken.",
            undelivered,
        )
        yield _per_worker(
            "ingestor_connect_queue",
            "Accounts of a collector waiting for the box's connection budget.",
            queued,
        )
        yield CounterMetricFamily(
            "ingestor_collector_restarts_total",
            "Collector processes restarted after dying.",
            value=restarts,
        )
        yield CounterMetricFamily(
            "ingestor_writer_restarts_total",
            "Writer processes restarted after dying (their batches were handed to the next).",
            value=writer_restarts,
        )
        yield GaugeMetricFamily(
            "ingestor_store_healthy",
            "1 while the store takes commits; 0 while the writer retries a failing one.",
            value=1.0 if store_ok else 0.0,
        )
        errors = CounterMetricFamily(
            "ingestor_store_errors_total",
            "Failed commits (or store creations) by kind of failure.",
            labels=["kind"],
        )
        for kind, n in sorted(store_errors.items()):
            errors.add_metric([kind], n)
        yield errors
        yield GaugeMetricFamily(
            "ingestor_inflight_bytes",
            "Bytes of batches handed to the writer and not yet committed.",
            value=in_flight_bytes,
        )
        yield GaugeMetricFamily(
            "ingestor_inflight_rows",
            "Rows of batches handed to the writer and not yet committed.",
            value=in_flight_rows,
        )
        yield GaugeMetricFamily(
            "ingestor_inflight_budget_bytes",
            "max_inflight_mb: past it the collectors' sockets wait.",
            value=budget,
        )


def _per_worker(name: str, doc: str, values: dict[int, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["worker"])
    for worker, value in sorted(values.items()):
        family.add_metric([str(worker)], value)
    return family


def _buckets(bounds: Iterable[float], histogram: Histogram) -> list[tuple[str, float]]:
    cumulative, out = 0, []
    for bound, count in zip([*bounds, float("inf")], histogram.counts, strict=True):
        cumulative += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    return out


def _writer_families(totals: Totals, now: float, accounts: list[str]) -> Iterator[Metric]:
    lag = HistogramMetricFamily(
        "ingestor_exchange_lag_seconds",
        "Per push: arrival (local_ts) minus the exchange's creationTime (creation_ts).",
        labels=["account", "table"],
    )
    for (account, table), histogram in sorted(totals.lag.items()):
        lag.add_metric([account, table], _buckets(LAG_BUCKETS, histogram), histogram.total)
    yield lag
    push_age = GaugeMetricFamily(
        "ingestor_last_push_age_seconds",
        "Seconds since the newest push of this table arrived (as the writer has seen it).",
        labels=["account", "table"],
    )
    for (account, table), us in sorted(totals.last_arrival_us.items()):
        push_age.add_metric([account, table], max(0.0, now - us / 1e6))
    yield push_age
    rows = CounterMetricFamily(
        "ingestor_rows_written_total",
        "Rows flushed to the store (committed, or spooled while a reader held it).",
        labels=["account", "table"],
    )
    for (account, table), n in sorted(totals.rows.items()):
        rows.add_metric([account, table], n)
    yield rows
    open_gaps = GaugeMetricFamily(
        "ingestor_open_gaps",
        "1 while the account's record has an open gap (disconnected since subscribed).",
        labels=["account"],
    )
    gaps = CounterMetricFamily(
        "ingestor_gaps_total", "Gaps opened in the account's record.", labels=["account"]
    )
    for account in accounts:
        gaps.add_metric([account], totals.gaps[account])
        open_gaps.add_metric([account], 1.0 if totals.gap_open.get(account) else 0.0)
    yield open_gaps
    yield gaps
    flush = HistogramMetricFamily(
        "ingestor_flush_duration_seconds", "How long each of the writer's flushes took."
    )
    flush.add_metric([], _buckets(FLUSH_BUCKETS, totals.flush), totals.flush.total)
    yield flush
    delay = HistogramMetricFamily(
        "ingestor_commit_delay_seconds",
        "Per push: the exchange's creationTime to the commit that stored it.",
    )
    delay.add_metric([], _buckets(COMMIT_BUCKETS, totals.commit_delay), totals.commit_delay.total)
    yield delay


class _ServiceCollector(Collector):
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def collect(self) -> Iterable[Metric]:
        return list(self.telemetry.families())


class Server:
    """`/metrics`, `/healthz` and `/readyz` on a thread of the supervisor."""

    def __init__(self, telemetry: Telemetry, host: str, port: int) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_ServiceCollector(telemetry))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._answer(200, b"ok\n")
                elif path == "/readyz":
                    readiness = telemetry.readiness()
                    self._answer(200 if readiness.ready else 503, readiness.body().encode())
                else:
                    self._answer(404, b"not found: /metrics, /healthz, /readyz\n")

            def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every few seconds is not worth a log line

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address[:2]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="ingestor-metrics", daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        log.info("metrics on http://%s:%d/metrics (/healthz, /readyz)", *self.address)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
