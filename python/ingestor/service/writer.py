"""The writer process: the one process that owns the store. It writes what the supervisor
sends, one flush at a time (a DuckDB file: into its hot tier, durable and readable, moved into
the file by the store's mover thread; a lake: a commit), and says which batches are safe
(written, or spooled on disk) so the supervisor can let go of them.

A store fault (a full disk, an I/O error, a permission taken away, a catalog that refuses)
never ends this process and never drops a batch: the batches stay here, unacknowledged, and
the commit is tried again with backoff while the supervisor hears why."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import pyarrow as pa
import pyarrow.compute as pc

from ingestor.config import Settings, relay_budget_bytes
from ingestor.decode import schemas
from ingestor.queries import STORE_COMMITS
from ingestor.service.messages import ACK, BATCH, END, STORE_HEALTH, WRITER_STATS, from_ipc
from ingestor.service.meter import Meter
from ingestor.sinks import Store, faults, open_store

log = logging.getLogger("ingestor.writer")

#: How long a flush waits for more batches after the first one arrives...
GATHER_S = 0.01
#: ...and after that, how long it still waits for the next while batches keep coming. Behind
#: a backlog they come back to back, but with gaps of a few ms (the supervisor's sender
#: thread pickles each ~20 MB batch before its first byte reaches the pipe, sharing the GIL
#: with the relay). With commits to the DuckDB file these were 50 and 20 ms: a commit of
#: ~200,000 rows cost ~10 µs a row against 20 for ~30,000. With the hot tier a flush is one
#: Parquet file per table and a move takes whole row groups whatever the flushes were, so
#: the wait is only what it adds to every push's delay to readable.
GATHER_GAP_S = 0.005

#: Where a commit stops growing. Behind a backlog the queue is never empty, and an unbounded
#: commit once reached 2.4 GB and ran 3-5x slower per row; a small one is slow too: DuckDB
#: writes a commit of fewer rows than a row group (122,880) through its WAL and rewrites the
#: file's partly filled row group when the file is let go (measured: 10,000-row commits cost
#: 10-190 µs a row, 122,880-row commits 4-10 µs a row). Two row groups' worth sits between.
COMMIT_ROWS = 245_760

#: Waits between attempts at a failing store: short first (a blip), then at most this.
RETRY_FIRST_S = 0.5
RETRY_CAP_S = 5.0


@dataclass
class Pending:
    seq: int
    table: str
    batch: pa.RecordBatch
    #: Its size as it came (Arrow IPC bytes).
    size: int


class CommitLog:
    """The writer's record of its own commits (`queries.STORE_COMMITS`): a row per table per
    flush committed, kept here until the next flush carries it into the store (and, at the
    end, one small write of its own), so recording costs no commit of its own during capture.

    Never recorded: its own rows (a record of a record would never end), and the rows of a
    lake's flush that went to its spool instead (the store says none of them committed now;
    the drain that commits them later is the store's, not a flush of this writer's)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.flush_seq = 0
        #: Rows waiting for a write, as columns (a few a flush: Python lists are cheap here).
        self.columns: dict[str, list] = {name: [] for name in schemas()[STORE_COMMITS].names}
        #: Writes in a row that carried these rows and failed where the same write without
        #: them succeeded: at two, recording stops (see `Writer._attempt`).
        self.refused = 0
        self.enabled = True

    def __len__(self) -> int:
        return len(self.columns["local_ts"])

    def record(
        self,
        chunk: list[Pending],
        committed_us: int,
        write_us: int,
        told: dict[str, int] | None,
    ) -> None:
        """The rows of a flush that committed at `committed_us` (µs since the epoch, UTC),
        its write having taken `write_us`. `told`: the rows the store says it committed of
        each table (after its dedup), where it says; else the rows handed count."""
        tables: dict[str, list[int]] = {}  # table -> [rows handed, oldest, newest] (µs)
        for p in chunk:
            if p.table == STORE_COMMITS or not p.batch.num_rows:
                continue
            bounds = pc.min_max(p.batch.column("local_ts").cast(pa.int64()))
            oldest, newest = bounds["min"].as_py(), bounds["max"].as_py()
            seen = tables.get(p.table)
            if seen is None:
                tables[p.table] = [p.batch.num_rows, oldest, newest]
            else:
                seen[0] += p.batch.num_rows
                seen[1], seen[2] = min(seen[1], oldest), max(seen[2], newest)
        if not tables:
            return
        self.flush_seq += 1
        for table, (handed, oldest, newest) in tables.items():
            if told is not None and table not in told:
                continue  # spooled, not committed now (a lake that refused)
            row = {
                "local_ts": committed_us,
                "table_name": table,
                "rows": handed if told is None else told[table],
                "oldest_local_ts": oldest,
                "newest_local_ts": newest,
                "writer_pid": self.pid,
                "flush_seq": self.flush_seq,
                "write_us": write_us,
            }
            for name, value in row.items():
                self.columns[name].append(value)

    def batch(self) -> pa.RecordBatch | None:
        """The rows waiting, as one batch of the table's schema; None when there are none."""
        if not len(self):
            return None
        schema = schemas()[STORE_COMMITS]
        return pa.RecordBatch.from_arrays(
            [pa.array(self.columns[f.name]).cast(f.type) for f in schema], schema=schema
        )

    def written(self, rows: int) -> None:
        """The first `rows` rows are in the store now."""
        for values in self.columns.values():
            del values[:rows]

    def drop(self) -> int:
        dropped = len(self)
        self.written(dropped)
        return dropped


@dataclass
class Health:
    """The store as the writer last found it; sent to the supervisor with every change."""

    healthy: bool = True
    #: What failed, where, and what the writer does about it (empty while healthy).
    reason: str = ""
    #: Failures by kind (`sinks.faults`), since the writer started.
    errors: Counter = field(default_factory=Counter)


class Writer:
    """Commits the batches that arrived since the last commit, all in one transaction, and
    acknowledges them; keeps them through store faults."""

    def __init__(self, settings: Settings, store: Store, out: Connection) -> None:
        self.settings = settings
        self.store = store
        self.out = out
        self.pending: list[Pending] = []
        self.pending_rows = 0
        self.pending_bytes = 0
        #: A commit stops growing at half of what the supervisor may hold for the writer:
        #: the other half fills while it runs, so the next commit starts full. (At the whole
        #: budget, the supervisor stopped reading for the length of every commit and the
        #: next one began nearly empty.)
        self.commit_bytes = max(1, relay_budget_bytes(settings) // 2)
        self.written = 0
        self.last_flush_s = 0.0
        self.last_attempt = 0.0
        self.meter = Meter()
        self.health = Health()
        #: END arrived: commit what is pending, then stop.
        self.ended = False
        #: The supervisor is gone: nothing can be acknowledged any more.
        self.orphaned = False
        self.retry_at = 0.0
        self._retry_wait = RETRY_FIRST_S
        self._failing_since = 0.0
        self._reported_move_failure: Exception | None = None
        self.commits = CommitLog()
        #: The last write failed: the next carries no `store_commits` rows, so a failing
        #: store costs one attempt per retry, not two (see `_attempt`).
        self._write_failed = False

    def add(self, seq: int, table: str, batch: pa.RecordBatch, size: int) -> None:
        self.pending.append(Pending(seq, table, batch, size))
        self.pending_rows += batch.num_rows
        self.pending_bytes += size

    def commit_full(self) -> bool:
        return self.pending_rows >= COMMIT_ROWS or self.pending_bytes >= self.commit_bytes

    def spooled(self) -> int:
        """Batch files spooled on disk for the store. (A DuckDB file's hot tier is not a
        spool: its rows are readable, and its mover thread moves them on its own.)"""
        return len(getattr(self.store, "spool", ()))

    def backlogged(self) -> bool:
        """The store cannot keep up (a DuckDB file's moves behind its hot tier)."""
        backlogged = getattr(self.store, "backlogged", None)
        return bool(backlogged and backlogged())

    def due(self) -> bool:
        return time.monotonic() >= self.retry_at

    def flush(self, final: bool = False) -> None:
        """Commits what is pending, COMMIT_ROWS at a time (a group commit: the collectors
        already held each batch for up to flush_interval, so waiting here would double the
        delay); retries a failing store only when its backoff is over."""
        if not self.due():
            return
        if not self.pending:
            now = time.monotonic()
            if self.spooled() and (
                final or now - self.last_attempt >= self.settings.flush_interval
            ):
                # A reader held the file: try the spool again now and then.
                self._attempt([])
            return
        while self.pending and self.due():
            chunk, rows, size = [], 0, 0
            # The same rule as the gathering: the batch that reaches either cap is the last.
            while self.pending and rows < COMMIT_ROWS and size < self.commit_bytes:
                chunk.append(self.pending.pop(0))
                rows += chunk[-1].batch.num_rows
                size += chunk[-1].size
            if not self._attempt(chunk):
                self.pending[:0] = chunk  # kept, in order, for the next attempt
                return
            self.pending_rows -= rows
            self.pending_bytes -= size
            self.out.send((ACK, chunk[-1].seq))

    def _attempt(self, chunk: list[Pending]) -> bool:
        """One write of `chunk`, carrying the `store_commits` rows of the flushes before it
        (this flush's own are recorded once it has committed, for the next write).

        Those rows must never make a write fail that would succeed without them: a write
        that carried them and failed is tried again at once without them. If that one
        succeeds they were what the store refused: they are kept for one more try, and a
        second refusal drops them and stops recording, saying so (never silently). If it
        fails too, the store is failing: the rows wait, and no retry carries them until a
        write has succeeded again."""
        started = self.last_attempt = time.monotonic()
        batches = [(p.table, p.batch) for p in chunk]
        carried = self._commit_rows() if chunk and not self._write_failed else None
        try:
            try:
                committed = self.store.write(
                    batches + ([(STORE_COMMITS, carried)] if carried is not None else [])
                )
            except Exception as with_records:
                if carried is None:
                    raise
                started = time.monotonic()
                committed = self.store.write(batches)  # raises: the store is failing
                self._records_refused(with_records, carried.num_rows)
                carried = None
        except Exception as e:  # every store fault: the batches stay, the writer lives
            self._write_failed = True
            self._failed(e, sum(p.batch.num_rows for p in chunk))
            return False
        self._write_failed = False
        done = time.monotonic()
        self.last_flush_s = done - started
        told = getattr(self.store, "last_rows", None)
        if carried is not None:
            # Not data: neither the flush's rows nor `ingestor_rows_committed_total` count
            # them (the store's own count where it tells it: a lake's dedup).
            self.commits.written(carried.num_rows)
            self.commits.refused = 0  # only refusals in a row stop the recording
            committed -= told.get(STORE_COMMITS, 0) if told is not None else carried.num_rows
        if self.commits.enabled:
            try:
                self.commits.record(
                    chunk, round(time.time() * 1_000_000), round(self.last_flush_s * 1e6), told
                )
            except Exception as e:  # a bug here must not undo a commit that succeeded
                log.error("store_commits: flush not recorded (%s: %s)", type(e).__name__, e)
        self.written += committed
        log.debug(
            "committed %d of %d rows (%d batches, %.1f MiB) in %.3f s",
            committed,
            sum(p.batch.num_rows for p in chunk),
            len(chunk),
            sum(p.size for p in chunk) / 2**20,
            self.last_flush_s,
        )
        for p in chunk:
            self.meter.batch(p.table, p.batch)
        self.meter.flushed(self.last_flush_s, committed)
        if not self.health.healthy and self._move_failure() is None:
            log.warning(
                "the store %s takes commits again after %.0f s",
                self.settings.sink.path,
                time.monotonic() - self._failing_since,
            )
            self.health.healthy, self.health.reason = True, ""
            self._send_health()
        self._retry_wait = RETRY_FIRST_S
        return True

    def _commit_rows(self) -> pa.RecordBatch | None:
        """The `store_commits` rows waiting, or None; a fault building them (a bug) drops
        them, saying so, rather than fail the write."""
        if not len(self.commits):
            return None
        try:
            return self.commits.batch()
        except Exception as e:
            log.error(
                "store_commits: %d rows (the record of earlier commits) dropped: %s: %s",
                self.commits.drop(),
                type(e).__name__,
                e,
            )
            return None

    def _records_refused(self, error: Exception, rows: int) -> None:
        self.commits.refused += 1
        if self.commits.refused < 2:
            log.warning(
                "the store refused a write with %d store_commits rows (%s: %s) and took it "
                "without them; they are tried again with the next",
                rows,
                type(error).__name__,
                error,
            )
            return
        log.error(
            "the store refused the store_commits rows again (%s: %s): %d rows dropped and the "
            "commit delay is no longer recorded by this writer (pid %d)",
            type(error).__name__,
            error,
            self.commits.drop(),
            self.commits.pid,
        )
        self.commits.enabled = False

    def finish_records(self) -> None:
        """At the end: the record of the last flushes, in one small write of its own (before
        `store.close()`, so a DuckDB file moves it in with the rest). A failure loses only
        the record, and says how much of it."""
        carried = self._commit_rows()
        if carried is None:
            return
        try:
            self.store.write([(STORE_COMMITS, carried)])
        except Exception as e:
            log.error(
                "store_commits: the record of the last %d flushed tables could not be written "
                "(%s: %s); every data row they record is in the store",
                carried.num_rows,
                type(e).__name__,
                e,
            )
            return
        self.commits.written(carried.num_rows)

    def _move_failure(self) -> Exception | None:
        """Why the store's moves fail (a DuckDB file's hot tier: rows safe on disk, not yet
        in the file), None while they succeed."""
        return getattr(self.store, "move_failure", None)

    def check_moves(self) -> None:
        """The health the store's moves give: failing, or healthy again."""
        failure = self._move_failure()
        if failure is not None and failure is not self._reported_move_failure:
            self._reported_move_failure = failure
            kind = faults.kind_of(failure)
            self.health.errors[kind] += 1
            if self.health.healthy:
                self._failing_since = time.monotonic()
            hot = self.store.hot
            self.health.healthy = False
            self.health.reason = (
                f"{kind}: {type(failure).__name__}: {failure}; {hot.waiting():,} rows wait in "
                f"the hot tier {hot.directory} (readable), moved when the file takes them"
            )
            self._send_health()
        elif failure is None and self._reported_move_failure is not None:
            self._reported_move_failure = None
            if not self.health.healthy and time.monotonic() >= self.retry_at:
                log.warning("the store %s takes moves again", self.settings.sink.path)
                self.health.healthy, self.health.reason = True, ""
                self._send_health()

    def _failed(self, error: Exception, rows: int) -> None:
        kind = faults.kind_of(error)
        self.health.errors[kind] += 1
        reason = (
            f"{kind}: {type(error).__name__}: {error}; {self.pending_rows:,} rows wait in "
            f"memory, next attempt in {self._retry_wait:.1f} s"
        )
        if self.health.healthy:
            self._failing_since = time.monotonic()
        if self.health.healthy or not self.health.reason.startswith(kind + ":"):
            # Once per failure (and again if it changes kind), not once per attempt.
            log.error(
                "cannot commit %d rows to the %s store %s: %s",
                rows,
                self.settings.sink.kind,
                self.settings.sink.path,
                reason,
            )
        self.health.healthy, self.health.reason = False, reason
        self._send_health()
        self.retry_at = time.monotonic() + self._retry_wait
        self._retry_wait = min(RETRY_CAP_S, self._retry_wait * 2)

    def _send_health(self) -> None:
        h = self.health
        self.out.send((STORE_HEALTH, h.healthy, h.reason, dict(h.errors)))

    def stats(self, final: bool = False) -> tuple:
        return (
            WRITER_STATS,
            self.written,
            self.last_flush_s,
            self.spooled(),
            self.pending_rows,
            self.meter.take(force=final),
        )

    def prepare(self, inbox: Connection) -> bool:
        """Creates the store's tables and views, retrying a failing store; False if the
        supervisor went away meanwhile."""
        while True:
            try:
                self.store.create()
                break
            except Exception as e:
                self._failed(e, 0)
            # Batches may arrive meanwhile: they wait with the rest.
            if inbox.poll(max(0.0, self.retry_at - time.monotonic())) and not self._take(inbox):
                return False
        return True

    def _take(self, inbox: Connection) -> bool:
        """Reads one message; False at the end (END, or the supervisor is gone)."""
        try:
            message = inbox.recv()
        except (EOFError, OSError):
            log.error("the supervisor is gone; the writer stops")
            self.ended = self.orphaned = True
            return False
        kind = message[0]
        if kind == BATCH:
            try:
                payload = inbox.recv_bytes()  # right behind its header
            except (EOFError, OSError):
                log.error("the supervisor is gone; the writer stops")
                self.ended = self.orphaned = True
                return False
            self.add(message[1], message[2], from_ipc(payload), len(payload))
        elif kind == END:
            self.ended = True
        else:
            log.error("unknown message %r ignored", kind)
        return True


def run(settings: Settings, inbox: Connection, out: Connection) -> None:
    """Commits batches until the supervisor sends END; then commits the rest and returns.
    Exits only when everything it was given is committed (or spooled), or when the
    supervisor is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log.info("writer process %d starting", os.getpid())
    store = open_store(
        settings.sink.kind,
        settings.sink.path,
        data_path=settings.sink.data_path,
        shard=settings.shard,
    )
    writer = Writer(settings, store, out)
    if not writer.prepare(inbox):
        return
    while not writer.orphaned:
        # One commit takes what arrives within GATHER_S of its first batch and whatever is
        # already queued behind it, up to COMMIT_ROWS: the collectors cut their tables at
        # different moments, and every commit has a fixed cost (the lock, DuckDB's checkpoint
        # when the file is let go) that small commits pay per few rows.
        wait = min(0.2, settings.flush_interval)
        if writer.pending and not writer.due():
            wait = max(0.0, min(wait, writer.retry_at - time.monotonic()))
        if writer.backlogged():
            # The store's moves are behind: batches wait in the supervisor (its budget pushes
            # back on the collectors) while the pending ones are flushed.
            time.sleep(min(0.05, wait))
        elif not writer.ended and inbox.poll(wait):
            writer._take(inbox)
            gather_until = time.monotonic() + GATHER_S
            while (
                not writer.ended
                and not writer.commit_full()
                and inbox.poll(max(GATHER_GAP_S, gather_until - time.monotonic()))
            ):
                writer._take(inbox)
        elif writer.ended and writer.pending and not writer.due():
            time.sleep(max(0.0, min(0.2, writer.retry_at - time.monotonic())))
        writer.flush(final=writer.ended)
        writer.check_moves()
        out.send(writer.stats())
        if writer.ended and not writer.pending:
            break
    if writer.orphaned:
        if len(writer.commits):
            log.warning(
                "store_commits: the record of the last %d flushed tables is lost with the "
                "supervisor (their rows are committed)",
                len(writer.commits),
            )
        return
    writer.finish_records()
    try:
        store.close()
    except Exception as e:
        # Everything was acknowledged: committed, or spooled on disk for the next start.
        log.error("closing the store %s failed: %s", settings.sink.path, e)
    out.send(writer.stats(final=True))
    log.info("writer closed: %d rows committed to %s", writer.written, settings.sink.path)
