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

#: Where a commit stops growing. Behind a backlog the queue is never empty, and an unbounded
#: commit once reached 2.4 GB and ran 3-5x slower per row; a small one is slow too: DuckDB
#: writes a commit of fewer rows than a row group (122,880) through its WAL and rewrites the
#: file's partly filled row group when the file is let go (measured: 10,000-row commits cost
#: 10-190 µs a row, 122,880-row commits 4-10 µs a row). Two row groups' worth sits between.
COMMIT_ROWS = 245_760


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
        # One commit takes what arrives within GATHER_S of its first batch and whatever is
        # already queued behind it, up to COMMIT_ROWS: the collectors cut their tables at
        # different moments, and every commit has a fixed cost (the lock, DuckDB's checkpoint
        # when the file is let go) that small commits pay per few rows.
        gather_until = time.monotonic() + GATHER_S
        while message is not None and not ended:
            ended = handle(writer, message)
            if writer.pending_rows >= COMMIT_ROWS:
                break
            try:
                message = batches.get(timeout=max(0.0, gather_until - time.monotonic()))
            except queue.Empty:
                message = None
        writer.flush(final=ended)
        stats.put(writer.stats())
    store.close()
    stats.put(writer.stats(final=True))
    log.info("writer closed: %d rows committed to %s", writer.written, settings.sink.path)
