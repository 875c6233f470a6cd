"""A collector process: the Rust engine holding a shard of the accounts, its batches sent to
the writer as Arrow IPC bytes."""

from __future__ import annotations

import logging
import os
import signal
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

import pyarrow as pa

from ingestor._core import Collector
from ingestor.config import Settings, collector_budget_bytes
from ingestor.service.messages import BATCH, COLLECTOR_STATS, DONE, to_ipc

log = logging.getLogger("ingestor.collector")

STATS_EVERY = 1.0


#: The box's REST requests per `rest_window` (5 s) unless the file says: Bybit bans an IP
#: past 600; the rest is margin for whatever else on the box calls the API.
REST_BUDGET = 500
#: The box's new connections per `connect_window` (300 s) unless the file says (Bybit: ~500).
CONNECT_BUDGET = 500


def engine_options(settings: Settings, collectors: int = 1) -> dict[str, Any]:
    """The engine's options for one of `collectors` collectors: the box-wide budgets (the
    exchange limits an IP, not a process) divided among them."""
    options = {
        "batch_size": settings.batch_size,
        "flush_interval": settings.flush_interval,
        "max_pending_rows": settings.max_pending_rows,
        "max_pending_bytes": collector_budget_bytes(settings, collectors),
        "keep_raw": settings.raw_json,
        **settings.engine,
    }
    for name, box in (("rest_budget", REST_BUDGET), ("connect_budget", CONNECT_BUDGET)):
        options[name] = max(1, int(options.get(name, box)) // collectors)
    return options


def report_changes(previous: dict[str, dict], stats: list[dict]) -> None:
    """One log line per account that lost its connection or was refused since last time."""
    for now in stats:
        before = previous.get(now["account_id"])
        if before is None:
            continue
        if now["state"] == "failing" and before["state"] != "failing":
            log.warning("account %s refused: %s", now["account_id"], now["last_error"])
        elif now["reconnects"] > before["reconnects"]:
            log.warning(
                "account %s reconnecting (%d so far): %s",
                now["account_id"],
                now["reconnects"],
                now["last_error"],
            )


def send_batch(out: Connection, worker: int, table: str, batch: Any) -> None:
    out.send((BATCH, worker, table, batch.num_rows))
    out.send_bytes(to_ipc(batch))


def run(
    worker: int,
    specs: list[dict[str, object]],
    settings: Settings,
    out: Connection,
    stop: Event,
    collectors: int = 1,
) -> None:
    """Runs until `stop` is set, then closes the engine and hands over every last batch.

    Everything goes to the supervisor through this collector's own pipe: a collector killed
    in the middle of a send can break only its own pipe, never a queue others write to.
    """
    # The supervisor owns signals: it sets `stop` and we drain in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log.info("collector %d (pid %d) starting with %d accounts", worker, os.getpid(), len(specs))
    # What this process allocates through Arrow is the IPC copy of each batch it sends (1-4
    # MB, grown by doubling); pyarrow's mimalloc pool kept those pages. The system pool
    # (glibc, whose mmap threshold `service.malloc` fixes at 128 KiB) gives them back at free:
    # two collectors at 1,000 accounts' firehose 173-177 against 188-205 MiB PSS, for ~0.5 µs
    # of CPU a message (alternating runs).
    pa.set_memory_pool(pa.system_memory_pool())
    collector = Collector(specs, **engine_options(settings, collectors))
    next_stats = 0.0
    previous: dict[str, dict] = {}
    while not stop.is_set():
        for table, batch in collector.next_batches(0.2):
            send_batch(out, worker, table, batch)
        if time.monotonic() >= next_stats:
            stats = collector.stats()
            report_changes(previous, stats)
            previous = {s["account_id"]: s for s in stats}
            out.send(
                (
                    COLLECTOR_STATS,
                    worker,
                    stats,
                    collector.connect_queue(),
                    collector.undelivered_rows(),
                )
            )
            next_stats = time.monotonic() + STATS_EVERY
    last = collector.close()
    for table, batch in last:
        send_batch(out, worker, table, batch)
    out.send((DONE, worker))
    out.close()
    log.info("collector %d closed; %d last batches handed over", worker, len(last))
