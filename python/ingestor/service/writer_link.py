"""The supervisor's side of the writer process: starts it, sends it batches, keeps each batch
until the writer says it is committed, and when the writer dies (any exit, any signal: the
OOM killer's first pick is the largest process, and that is the writer) starts a new one and
hands it every batch not yet acknowledged, in order. The stores' dedup keys make a second
delivery of a batch the dead writer had committed harmless.

Pipes, not a `multiprocessing.Queue`: a reader killed inside `Queue.get` keeps the queue's
lock forever, so a restarted writer could never read the queue again, and the queue's feeder
thread blocks for good on a pipe nobody reads (and `Queue`'s exit handler joins it). Each
writer gets its own pair of pipes; a thread here does the sending, so the supervisor's loop
never blocks on a writer that is busy committing or dead.

What is in flight is bounded in bytes: `full()` is true once the unacknowledged batches reach
the budget, and the supervisor then stops reading the collectors' pipes (they stop taking
batches, their engines stop reading sockets, TCP pushes back on the exchange)."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from ingestor import sinks
from ingestor.config import Settings
from ingestor.service import lifeline, writer
from ingestor.service.messages import ACK, BATCH, END, from_ipc

log = logging.getLogger("ingestor.supervisor")

#: The first restart waits this long; a writer that dies again soon after starting waits
#: twice as long each time, up to RESTART_CAP_S (a writer that cannot even start must not
#: spin), and a writer that lived RESTART_RESET_S resets the wait.
RESTART_FIRST_S = 1.0
RESTART_CAP_S = 30.0
RESTART_RESET_S = 60.0


@dataclass
class InFlight:
    #: (BATCH, seq, table): sent before the payload.
    header: tuple
    payload: bytes
    rows: int

    @property
    def size(self) -> int:
        return len(self.payload)


class _Sender:
    """Sends to one writer's pipe from a thread of its own; ends at `stop()` or when the
    writer's end of the pipe is gone."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="ingestor-writer-send", daemon=True)
        self.thread.start()

    def put(self, message: tuple | InFlight) -> None:
        self.queue.put(message)

    def stop(self) -> None:
        self.queue.put(None)

    def _run(self) -> None:
        while (message := self.queue.get()) is not None:
            try:
                if isinstance(message, InFlight):
                    self.conn.send(message.header)
                    self.conn.send_bytes(message.payload)
                else:
                    self.conn.send(message)
            except (OSError, ValueError):
                break  # the writer is gone; the supervisor sees it die and starts another
        with contextlib.suppress(OSError):
            self.conn.close()


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class WriterLink:
    def __init__(self, ctx: Any, settings: Settings, budget_bytes: int) -> None:
        self.ctx = ctx
        self.settings = settings
        self.budget_bytes = budget_bytes
        self.in_flight: OrderedDict[int, InFlight] = OrderedDict()
        self.bytes = 0
        self.rows = 0
        self._next_seq = 1
        self.process: Any = None
        self._sender: _Sender | None = None
        self._from_writer: Connection | None = None
        self.restarts = 0
        self._restart_wait = RESTART_FIRST_S
        self._restart_at: float | None = None
        self._started_at = 0.0
        self.ending = False
        #: When the writer last acknowledged something (a drain watches it make progress).
        self.last_ack = time.monotonic()
        #: Called with each death: (description,).
        self.on_restart: Any = None

    # ---- the writer process ----------------------------------------------------------------

    def start(self) -> None:
        """Starts a writer and hands it everything not yet acknowledged, in order."""
        to_writer_r, to_writer_w = self.ctx.Pipe(duplex=False)
        from_writer_r, from_writer_w = self.ctx.Pipe(duplex=False)
        self.process = self.ctx.Process(
            target=lifeline.run_as_child,
            args=(os.getpid(), writer.run, self.settings, to_writer_r, from_writer_w),
            name="ingestor-writer",
            daemon=True,
        )
        self.process.start()
        # The child holds these ends: the writer's death closes them, so the sender's next
        # write fails instead of blocking, and reading its pipe ends in EOF.
        to_writer_r.close()
        from_writer_w.close()
        self._from_writer = from_writer_r
        self._sender = _Sender(to_writer_w)
        self._started_at = time.monotonic()
        self._restart_at = None
        for item in self.in_flight.values():
            self._sender.put(item)
        if self.ending:
            self._sender.put((END,))

    def waitables(self) -> list[Any]:
        """What `multiprocessing.connection.wait` can watch for the writer."""
        out = [self.process.sentinel] if self.process is not None and self.alive() else []
        if self._from_writer is not None:
            out.append(self._from_writer)
        return out

    def alive(self) -> bool:
        return self.process is not None and self.process.exitcode is None

    def watch(self) -> None:
        """Restarts a writer that died (once its restart wait is over)."""
        if self.process is None:
            return
        if self._restart_at is None and not self.alive():
            if self.finished():
                return
            self.receive()  # what it said before it died still counts
            self._close_pipes()
            lived = time.monotonic() - self._started_at
            if lived >= RESTART_RESET_S:
                self._restart_wait = RESTART_FIRST_S
            how = describe_exit(self.process.exitcode)
            self.restarts += 1
            log.error(
                "the writer died (%s) after %.0f s; restarting it in %.0f s with the %d "
                "batches (%d rows, %.1f MiB) it had not committed",
                how,
                lived,
                self._restart_wait,
                len(self.in_flight),
                self.rows,
                self.bytes / 2**20,
            )
            if self.on_restart is not None:
                self.on_restart(how)
            self._restart_at = time.monotonic() + self._restart_wait
            self._restart_wait = min(RESTART_CAP_S, self._restart_wait * 2)
        if self._restart_at is not None and time.monotonic() >= self._restart_at:
            self.start()

    def _close_pipes(self) -> None:
        if self._sender is not None:
            self._sender.stop()
            self._sender = None
        if self._from_writer is not None:
            with contextlib.suppress(OSError):
                self._from_writer.close()
            self._from_writer = None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.join(5)
        self._close_pipes()
        self._restart_at = None

    # ---- batches -----------------------------------------------------------------------------

    def send(self, table: str, payload: bytes, rows: int) -> None:
        seq = self._next_seq
        self._next_seq += 1
        item = InFlight((BATCH, seq, table), payload, rows)
        self.in_flight[seq] = item
        self.bytes += item.size
        self.rows += rows
        if self._sender is not None:
            self._sender.put(item)

    def full(self) -> bool:
        return self.bytes >= self.budget_bytes

    def end(self) -> None:
        """No collector will send again: the writer commits the rest and exits."""
        if not self.ending:
            self.ending = True
            if self._sender is not None:
                self._sender.put((END,))

    def finished(self) -> bool:
        """The writer ended cleanly with everything acknowledged."""
        return (
            self.ending
            and not self.in_flight
            and self.process is not None
            and self.process.exitcode == 0
        )

    def receive(self) -> list[tuple]:
        """Takes the writer's acknowledgements; returns its other messages (stats)."""
        out: list[tuple] = []
        pipe = self._from_writer
        while pipe is not None:
            try:
                if not pipe.poll(0):
                    break
                message = pipe.recv()
            except (EOFError, OSError):
                break
            if message[0] == ACK:
                self._acknowledged(message[1])
            else:
                out.append(message)
        return out

    def _acknowledged(self, seq: int) -> None:
        self.last_ack = time.monotonic()
        while self.in_flight:
            first = next(iter(self.in_flight))
            if first > seq:
                break
            item = self.in_flight.pop(first)
            self.bytes -= item.size
            self.rows -= item.rows

    def spool_unacknowledged(self) -> tuple[int, str]:
        """Writes every unacknowledged batch to the store's spool, where the next writer
        commits it first; returns (rows, spool folder). Raises if the spool cannot take them
        (the same full disk, say): the caller says how many rows are lost."""
        store = sinks.open_store(
            self.settings.sink.kind,
            self.settings.sink.path,
            data_path=self.settings.sink.data_path,
            shard=self.settings.shard,
        )
        spool = store.spool
        batches = [(item.header[2], from_ipc(item.payload)) for item in self.in_flight.values()]
        spool.put(batches)
        rows = self.rows
        self.in_flight.clear()
        self.bytes = self.rows = 0
        return rows, str(spool.directory)
