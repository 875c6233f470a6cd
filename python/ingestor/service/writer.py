"""The writer process: the one process that owns the store. It commits what the collectors
send, one transaction per flush."""

from __future__ import annotations

import logging
import queue
import signal
import time
from typing import Any

import pyarrow as pa

from ingestor.config import Settings
from ingestor.service.messages import BATCH, DONE, END, WRITER_STATS, from_ipc
from ingestor.service.meter import Meter
from ingestor.sinks import Store, open_store

log = logging.getLogger("ingestor.writer")


class Writer:
    """Commits the batches that arrived since the last commit, all in one transaction."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.pending: list[tuple[str, pa.RecordBatch]] = []
        self.pending_rows = 0
        self.written = 0
        self.last_flush_s = 0.0
        self.last_attempt = 0.0
        self.meter = Meter()

    def add(self, table: str, batch: pa.RecordBatch) -> None:
        self.pending.append((table, batch))
        self.pending_rows += batch.num_rows
        self.meter.batch(table, batch)

    def spooled(self) -> int:
        return len(getattr(self.store, "spool", ()))

    def flush(self, final: bool = False) -> None:
        """Commits everything pending at once (a group commit: the collectors already held
        each batch for up to flush_interval, so waiting here would double the delay)."""
        now = time.monotonic()
        if self.pending:
            self._flush(self.pending)
            self.pending, self.pending_rows = [], 0
        elif self.spooled() and (final or now - self.last_attempt >= self.settings.flush_interval):
            # A reader held the file: try the spool again now and then.
            self._flush([])

    def _flush(self, batches: list[tuple[str, pa.RecordBatch]]) -> None:
        started = self.last_attempt = time.monotonic()
        committed = self.store.write(batches)
        self.written += committed
        self.last_flush_s = time.monotonic() - started
        self.meter.flushed(self.last_flush_s, committed)

    def stats(self, final: bool = False) -> tuple:
        return (
            WRITER_STATS,
            self.written,
            self.last_flush_s,
            self.spooled(),
            self.pending_rows,
            self.meter.take(force=final),
        )


#: How long a commit waits for more batches after the first one arrives.
GATHER_S = 0.05


def handle(writer: Writer, message: tuple) -> bool:
    """Takes one message from the supervisor; True when it is the end."""
    kind = message[0]
    if kind == BATCH:
        writer.add(message[2], from_ipc(message[3]))
    elif kind == END:
        return True
    elif kind != DONE:
        log.error("unknown message %r ignored", kind)
    return False


def run(settings: Settings, batches: Any, stats: Any) -> None:
    """Commits batches until the supervisor sends END; then commits the rest and returns."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    store = open_store(
        settings.sink.kind,
        settings.sink.path,
        data_path=settings.sink.data_path,
        shard=settings.shard,
    )
    store.create()
    writer = Writer(settings, store)
    ended = False
    while not ended:
        try:
            message = batches.get(timeout=min(0.2, settings.flush_interval))
        except queue.Empty:
            message = None
        # What arrives within GATHER_S of the first batch goes into the same commit: the
        # collectors cut their tables at different moments, and a commit per batch would
        # hold the file's lock (and pay a commit's cost) far more often.
        # A commit also stops growing at batch_size rows: behind a backlog the queue is never
        # empty, and one ever-growing commit (GBs, seen under the firehose) is far slower per row.
        gather_until = time.monotonic() + GATHER_S
        while message is not None and not ended:
            ended = handle(writer, message)
            remaining = gather_until - time.monotonic()
            if remaining <= 0 or writer.pending_rows >= settings.batch_size:
                break
            try:
                message = batches.get(timeout=remaining)
            except queue.Empty:
                message = None
        writer.flush(final=ended)
        stats.put(writer.stats())
    store.close()
    stats.put(writer.stats(final=True))
    log.info("writer closed: %d rows committed to %s", writer.written, settings.sink.path)
