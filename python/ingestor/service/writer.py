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
from ingestor.sinks import Store, open_store

log = logging.getLogger("ingestor.writer")


class Writer:
    """Gathers batches and commits them when the oldest has waited `flush_interval` or when
    `batch_size` rows are waiting."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.pending: list[tuple[str, pa.RecordBatch]] = []
        self.pending_rows = 0
        self.oldest: float | None = None
        self.written = 0
        self.last_flush_s = 0.0
        self.last_attempt = 0.0

    def add(self, table: str, batch: pa.RecordBatch) -> None:
        self.pending.append((table, batch))
        self.pending_rows += batch.num_rows
        if self.oldest is None:
            self.oldest = time.monotonic()

    def spooled(self) -> int:
        return len(getattr(self.store, "spool", ()))

    def flush_if_due(self, force: bool = False) -> None:
        now = time.monotonic()
        due = self.oldest is not None and now - self.oldest >= self.settings.flush_interval
        if self.pending and (force or due or self.pending_rows >= self.settings.batch_size):
            self._flush(self.pending)
            self.pending, self.pending_rows, self.oldest = [], 0, None
        elif self.spooled() and (force or now - self.last_attempt >= self.settings.flush_interval):
            # A reader held the file: try the spool again now and then.
            self._flush([])

    def _flush(self, batches: list[tuple[str, pa.RecordBatch]]) -> None:
        started = self.last_attempt = time.monotonic()
        self.written += self.store.write(batches)
        self.last_flush_s = time.monotonic() - started

    def stats(self) -> tuple:
        return (WRITER_STATS, self.written, self.last_flush_s, self.spooled(), self.pending_rows)


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
        if message is not None:
            kind = message[0]
            if kind == BATCH:
                writer.add(message[2], from_ipc(message[3]))
            elif kind == END:
                ended = True
            elif kind != DONE:
                log.error("unknown message %r ignored", kind)
        writer.flush_if_due(force=ended)
        stats.put(writer.stats())
    store.close()
    stats.put(writer.stats())
    log.info("writer closed: %d rows committed to %s", writer.written, settings.sink.path)
