"""The DuckDB file store. Every flush lands in the hot tier beside the file (Parquet, fsynced,
readable at once through the store's views, no file lock needed); rows move into the file in
commits of whole row groups, by a mover thread, holding the file's lock only while a move
runs, so analysts can open the file read-only between moves. While a reader holds the file,
rows wait in the hot tier (still readable) and a warning names the holder."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from ingestor import queries
from ingestor.sinks import (
    WRITER_MEMORY_CAP_FRACTION,
    WRITER_MEMORY_MB,
    Batches,
    Checkpoints,
    create_or_migrate,
    faults,
    group_by_table,
    insert_new_rows_of,
    is_lock_error,
    is_memory_error,
    writer_duckdb_config,
)
from ingestor.sinks.hot_tier import HotTier
from ingestor.sinks.spool import Spool

log = logging.getLogger(__name__)

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")

#: DuckDB's row group. DuckDB >= 1.4 gives each commit row groups of its own and merges small
#: trailing ones at checkpoint, rewriting them: rows committed 3,000 at a time were rewritten
#: ~5 times (34-42 µs a row), 122,880 at a time cost 6.6, and a tail that is not a whole row
#: group is rewritten by the next commit (unaligned 123,000-row commits: 11.3 µs a row).
ROW_GROUP_ROWS = 122_880
#: Row groups a move takes of one table at most: what its DuckDB works on (~125 MB of rows
#: with raw JSON a row group, spilled past `WRITER_MEMORY_MB`). One: end to end with raw
#: JSON at the 64 MB limit, two cost the writer half as much again (`make bench-e2e` the same
#: night; the spill of twice the rows is the likely cause, not measured apart):
#: writer 30.3 / 31.4 µs a message at 100 / 1,000 accounts' firehose and 380 / 515 MiB PSS
#: in all, against 19.8 / 21.1 and 398 / 508 at one. The price is the state's per-move work,
#: mostly per key: keeping the state cost 2.12 / 2.02x the write path at one and 1.83 / 1.68x
#: at two (bench_queries' state cost, 1 M rows of 20,000 keys, 64 MB, two rounds each).
MOVE_GROUPS = 1
#: Rows of one table the hot tier holds, at most, before the writer stops taking batches
#: (and so, through the supervisor's budget, the collectors stop reading their sockets): at
#: saturation the flushes outran the moves (100 accounts: 135,000 rows a second flushed,
#: 50,000 moved), and the hot tier grew without end, on disk and in what the last move at a
#: stop had to do. Room for a move in progress and the next one's whole row groups. Not
#: while the file cannot be had (a reader holds it, a failing disk): then the rows wait in
#: the hot tier, readable, as long as it takes.
HOT_CAP_ROWS = (MOVE_GROUPS + 2) * ROW_GROUP_ROWS
#: A table's rows move, whole row groups or not, once its oldest hot row is this old: the
#: file should not lag the capture by much (a reader that copies it; the rejects and events,
#: which rarely fill a row group).
MOVE_AGE_S = 60.0
#: Waits between attempts at a move that failed (a full disk): short first, then at most this.
RETRY_FIRST_S = 0.5
RETRY_CAP_S = 5.0


class StoreBusy(Exception):
    """Another process holds the DuckDB file."""


class AttachedFile:
    """The store's file, attached to one long-lived in-memory DuckDB for the length of a flush.

    Creating a DuckDB instance (`duckdb.connect(path)`) costs about 25 ms of CPU, which a
    writer committing several times a second paid each time; an ATTACH costs about 3 ms.
    DETACH releases the file's lock just as closing a connection did, so readers still get in
    between flushes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._engine: duckdb.DuckDBPyConnection | None = None
        self.memory_mb = WRITER_MEMORY_MB

    def grow_memory_limit(self) -> bool:
        """Doubles the engine's memory limit for the next attach (a move ran out of it);
        False once at the cap."""
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 * 2**30
        cap = max(WRITER_MEMORY_MB, total // WRITER_MEMORY_CAP_FRACTION // 2**20)
        if self.memory_mb >= cap:
            return False
        self.memory_mb = min(cap, self.memory_mb * 2)
        self.close()  # the next attach makes an engine with the new limit
        return True

    @contextmanager
    def attached(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._engine is None:
            # Where a move spills past the memory limit: the file's own `<file>.tmp`, as
            # DuckDB names it for a file it opens itself.
            temp = self.path.with_name(self.path.name + ".tmp")
            self._engine = duckdb.connect(
                ":memory:", config=writer_duckdb_config(temp, self.memory_mb)
            )
        con = self._engine
        quoted = str(self.path).replace("'", "''")
        # A file is given its storage version when it is made; naming one for a file made on
        # another would upgrade it for good.
        version = "" if self.path.exists() else f" (STORAGE_VERSION '{queries.STORAGE_VERSION}')"
        try:
            con.execute(f"ATTACH '{quoted}' AS store{version}")
        except duckdb.IOException as e:
            if is_lock_error(e):
                holder = _LOCK_HOLDER.search(str(e))
                who = f"{holder.group(1)} (PID {holder.group(2)})" if holder else "another process"
                raise StoreBusy(who) from None
            self.close()
            raise
        except BaseException:
            self.close()
            raise
        try:
            con.execute("USE store")
            yield con
        except BaseException:
            # After a failed commit (a full disk, an I/O error) neither the attached file nor
            # the engine is trusted again: closing the engine lets the file go whatever state
            # the failure left it in, and the next flush starts from a fresh one.
            self.close()
            raise
        else:
            try:
                con.execute("USE memory")
                con.execute("DETACH store")  # checkpoints: on a full disk this is what fails
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            with contextlib.suppress(duckdb.Error):
                engine.close()


class DuckDBStore:
    def __init__(
        self,
        path: str | Path,
        *,
        hot_dir: str | Path | None = None,
        state: bool = True,
        mover: bool = True,
    ) -> None:
        self.path = Path(path)
        #: Keep the current state at every move (`queries.STATES`); off only to measure
        #: what keeping it costs (`make bench-queries`).
        self.keep_state = state
        self.checkpoints = Checkpoints(queries.cold)
        self.file = AttachedFile(self.path)
        self.hot = HotTier(
            Path(hot_dir) if hot_dir else self.path.with_suffix(".hot"), queries.TABLES
        )
        #: Batches parked on disk by a supervisor whose writer is gone (and the spool of an
        #: earlier version): the next `create` takes them into the hot tier.
        self.spool = Spool(self.path.with_suffix(".spool"))
        #: Moves run on a thread of their own (flushes go on meanwhile); off: in `write`.
        self.use_mover = mover
        #: The last move's failure while the store fails to take them (None: healthy).
        self.move_failure: Exception | None = None
        self.moved_rows = 0
        self._lock = threading.Lock()  # the hot tier's index, between flushes and moves
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._retry_at = 0.0
        self._retry_wait = RETRY_FIRST_S
        self._busy_since_warning = False
        #: The stored views read the hot tier (from `create` until a clean stop moved all).
        self._views_hot = False

    def create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.file.attached() as con:
            con.execute("BEGIN")
            self._rename_history(con)
            con.execute(queries.CREATE_HOT_MOVED)
            (version,) = con.execute(queries.FILE_STORAGE_VERSION).fetchone()
            compression = queries.file_compression(version)
            statements = queries.create_tables(compression, queries.cold)
            if self.keep_state:
                statements += queries.create_state_tables(compression)
                statements += queries.create_checkpoint_tables()
            create_or_migrate(con, statements, build_state=self.keep_state, stored=queries.cold)
            moved = {(t, f): n for t, f, n in con.execute(queries.HOT_MOVED_ROWS).fetchall()}
            with self._lock:
                self.hot.open(moved)
            for statement in self._views(hot=True):
                con.execute(statement)
            con.execute("COMMIT")
        self._views_hot = True
        self._adopt_spool()
        if self.use_mover and self._thread is None:
            self._thread = threading.Thread(target=self._mover, name="mover", daemon=True)
            self._thread.start()

    def _views(self, hot: bool) -> list[str]:
        globs = {t: self.hot.glob(t) for t in queries.TABLES} if hot else None
        views = queries.history_views(globs, self.keep_state) + queries.DERIVED_VIEWS
        return views + queries.macros(state=self.keep_state, hot_tier=hot)

    @staticmethod
    def _rename_history(con: duckdb.DuckDBPyConnection) -> None:
        """A store made before the hot tier keeps each history under its own name, which is
        now the view's: the table becomes `queries.cold(name)` (a rename, no copy)."""
        tables = {row[0] for row in con.execute(queries.BASE_TABLES).fetchall()}
        for name in queries.TABLES:
            if name in tables and queries.cold(name) not in tables:
                log.info(
                    "store of an earlier version: table %s renamed %s", name, queries.cold(name)
                )
                con.execute(f"ALTER TABLE {name} RENAME TO {queries.cold(name)}")

    def _adopt_spool(self) -> None:
        files, batches = self.spool.peek()
        if files:
            self._put(batches)
            self.spool.remove(files)
            log.info("%d spooled batch files taken into the hot tier", len(files))

    def write(self, batches: Batches) -> int:
        """Makes the rows durable and readable in the hot tier; a fault there (a full disk)
        raises and the caller keeps the batches. A move that fails does not: its rows are
        safe in the hot tier, and `move_failure` says why they wait."""
        if not self._views_hot:
            self.create()  # the hot tier's files are known before another is added
        rows = self._put(batches)
        if self.use_mover:
            self._wake.set()
        else:
            self.move()
        return rows

    def backlogged(self) -> bool:
        """The moves are behind the flushes: take no more batches until they catch up."""
        if self.move_failure is not None or self._busy_since_warning:
            return False
        with self._lock:
            return any(self.hot.waiting(t) >= HOT_CAP_ROWS for t in queries.TABLES)

    def _put(self, batches: Batches) -> int:
        tables = group_by_table(batches)
        if not tables:
            return 0
        faults.maybe_fail()
        with self._lock:
            return self.hot.put(tables)

    def _mover(self) -> None:
        while not self._stop:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self._stop:
                break
            try:
                self.move()
            except Exception as e:  # move() keeps store faults; this is a bug: say so, go on
                log.exception("the mover failed; it tries again")
                self.move_failure = e
                time.sleep(RETRY_CAP_S)

    def due(self, final: bool = False) -> dict[str, int]:
        """Rows to move now, per table: whole row groups, or everything of a table whose
        oldest hot row is MOVE_AGE_S old (or at the end), at most MOVE_GROUPS row groups."""
        cap = MOVE_GROUPS * ROW_GROUP_ROWS
        now = time.time()
        due = {}
        with self._lock:
            for table in queries.TABLES:
                waiting = self.hot.waiting(table)
                if not waiting:
                    continue
                if final or now - self.hot.oldest_s(table) >= MOVE_AGE_S:
                    due[table] = min(waiting, cap)
                elif waiting >= ROW_GROUP_ROWS:
                    due[table] = min(waiting // ROW_GROUP_ROWS, MOVE_GROUPS) * ROW_GROUP_ROWS
        return due

    def move(self, final: bool = False) -> int:
        """Moves what is due, a transaction at a time, until nothing is (or the file cannot
        be had); returns the rows moved. Never raises: a failure is kept in `move_failure`
        and tried again after a backoff."""
        moved = 0
        while time.monotonic() >= self._retry_at:
            due = self.due(final)
            if not due and not (final and self._views_hot):
                break
            try:
                moved += self._move(due, final)
            except StoreBusy as busy:
                self._warn_busy(busy)
                self._backoff(None)
                break
            except Exception as e:  # every store fault: the rows wait in the hot tier
                if is_memory_error(e) and self.file.grow_memory_limit():
                    log.warning(
                        "a move into %s ran out of the writer's DuckDB memory limit; "
                        "trying again at %d MB",
                        self.path,
                        self.file.memory_mb,
                    )
                    continue
                self._backoff(e)
                break
            if self.move_failure is not None:
                log.warning("the store %s takes moves again", self.path)
            self.move_failure = None
            self._retry_wait = RETRY_FIRST_S
        return moved

    def _backoff(self, error: Exception | None) -> None:
        if error is not None:
            if self.move_failure is None or type(error) is not type(self.move_failure):
                log.error(
                    "cannot move rows into %s (%d wait in the hot tier %s): %s: %s",
                    self.path,
                    self.hot.waiting(),
                    self.hot.directory,
                    type(error).__name__,
                    error,
                )
            self.move_failure = error
        self._retry_at = time.monotonic() + self._retry_wait
        self._retry_wait = min(RETRY_CAP_S, self._retry_wait * 2)

    def _move(self, due: dict[str, int], final: bool) -> int:
        rows = 0
        marks: dict[str, dict[str, int]] = {}
        with self.file.attached() as con:
            with self._lock:
                # No reader has the file now, so none is listing the hot tier's folders.
                self.hot.delete_moved()
            con.execute("BEGIN")
            try:
                for table in queries.TABLES:
                    if table not in due:
                        continue
                    with self._lock:
                        parts, marks[table] = self.hot.plan(table, due[table])
                    if not parts:
                        continue
                    # Read outside the lock (a flush must not wait for a move's reading), by
                    # DuckDB as it inserts.
                    taken, _ = insert_new_rows_of(
                        con,
                        table,
                        queries.hot_rows(parts),
                        state=self.keep_state,
                        stored=queries.cold(table),
                        checkpoints=self.checkpoints,
                    )
                    rows += taken
                if self.keep_state:
                    self.checkpoints.due(con)
                with self._lock:
                    record = self.hot.record(marks)
                    rest = self.hot.waiting() - rows
                con.execute(f"DELETE FROM {queries.HOT_MOVED}")
                if record:
                    con.executemany(f"INSERT INTO {queries.HOT_MOVED} VALUES (?, ?, ?)", record)
                if final and rest <= 0:
                    # Every row moved: the views read the file alone, which can then be
                    # copied and read without its hot tier.
                    for statement in self._views(hot=False):
                        con.execute(statement)
                con.execute("COMMIT")
                if final and rest <= 0:
                    self._views_hot = False
            except BaseException:
                self.checkpoints.forget()
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
        with self._lock:
            for table, done in marks.items():
                self.hot.moved(table, done)
        self.moved_rows += rows
        if self._busy_since_warning:
            log.info("%s was released: the hot tier's rows move into it again", self.path)
        self._busy_since_warning = False
        return rows

    def close(self) -> None:
        """Moves every row into the file if it can be had; what cannot wait in the hot tier,
        readable, for the next start."""
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join()
            self._thread = None
        self._retry_at = 0.0
        self.move(final=True)
        waiting = self.hot.waiting()
        if not waiting and not self._views_hot:
            shutil.rmtree(self.hot.directory, ignore_errors=True)
        self.file.close()
        if waiting:
            log.warning(
                "%d rows remain in the hot tier %s (readable); they move into %s on the next start",
                waiting,
                self.hot.directory,
                self.path,
            )

    def _warn_busy(self, busy: StoreBusy) -> None:
        if not self._busy_since_warning:
            log.warning(
                "%s is held by %s: rows wait in the hot tier %s (readable) until it is released",
                self.path,
                busy,
                self.hot.directory,
            )
            self._busy_since_warning = True
