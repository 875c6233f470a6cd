"""The DuckDB file store: one transaction per flush, the file lock held only while a flush
runs, so analysts can open the file read-only between flushes. While a reader holds the file,
batches wait in an on-disk spool beside it and a warning names the holder."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from ingestor import queries
from ingestor.sinks import (
    WRITER_DUCKDB_CONFIG,
    Batches,
    Checkpoints,
    create_or_migrate,
    group_by_table,
    insert_new,
    is_lock_error,
)
from ingestor.sinks.spool import Spool

log = logging.getLogger(__name__)

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")


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

    @contextmanager
    def attached(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._engine is None:
            self._engine = duckdb.connect(":memory:", config=WRITER_DUCKDB_CONFIG)
        con = self._engine
        quoted = str(self.path).replace("'", "''")
        try:
            con.execute(f"ATTACH '{quoted}' AS store")
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
        self, path: str | Path, *, spool_dir: str | Path | None = None, state: bool = True
    ) -> None:
        self.path = Path(path)
        #: Keep the current state at every commit (`queries.STATES`); off only to measure
        #: what keeping it costs (`make bench-queries`).
        self.keep_state = state
        self.checkpoints = Checkpoints()
        self.file = AttachedFile(self.path)
        self.spool = Spool(Path(spool_dir) if spool_dir else self.path.with_suffix(".spool"))
        self._busy_since_warning = False

    def create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.file.attached() as con:
            con.execute("BEGIN")
            compression = queries.FILE_COMPRESSION
            statements = queries.create_tables(compression)
            if self.keep_state:
                statements += queries.create_state_tables(compression)
                statements += queries.create_checkpoint_tables()
                statements += queries.STATE_STORED_VIEWS
            else:
                statements += queries.STORED_VIEWS
            statements += queries.macros(state=self.keep_state)
            create_or_migrate(con, statements, build_state=self.keep_state)
            con.execute("COMMIT")

    def write(self, batches: Batches) -> int:
        """Commits, or spools while a reader holds the file; a store fault raises and the
        caller keeps the batches."""
        committed = 0
        # Order is kept: once anything waits in the spool, new batches queue behind it.
        if len(self.spool):
            committed = self.drain()
            if len(self.spool):
                self.spool.put(batches)
                return committed
        try:
            return committed + self._commit(batches)
        except StoreBusy as busy:
            self._warn_busy(busy)
            self.spool.put(batches)
            return committed

    def drain(self) -> int:
        """Commits everything spooled, if the file can be had now."""
        files, batches = self.spool.peek()
        if not files:
            return 0
        try:
            rows = self._commit(batches)
        except StoreBusy as busy:
            self._warn_busy(busy)
            return 0
        self.spool.remove(files)
        log.info(
            "spool drained: %d rows from %d files committed to %s", rows, len(files), self.path
        )
        return rows

    def close(self) -> None:
        self.drain()
        self.file.close()
        if len(self.spool):
            log.warning(
                "%d spooled batch files remain in %s; they are committed on the next start",
                len(self.spool),
                self.spool.directory,
            )

    def _warn_busy(self, busy: StoreBusy) -> None:
        if not self._busy_since_warning:
            log.warning(
                "%s is held by %s: batches wait in %s until it is released",
                self.path,
                busy,
                self.spool.directory,
            )
            self._busy_since_warning = True

    def _commit(self, batches: Batches) -> int:
        tables = group_by_table(batches)
        if not tables:
            return 0
        rows = 0
        with self.file.attached() as con:
            con.execute("BEGIN")
            try:
                for name in queries.TABLES:
                    if name not in tables:
                        continue
                    inserted = insert_new(con, name, tables[name], state=self.keep_state)
                    self.checkpoints.inserted(name, inserted)
                    rows += inserted
                if self.keep_state:
                    self.checkpoints.due(con)
                con.execute("COMMIT")
            except BaseException:
                self.checkpoints.forget()
                # A COMMIT that failed has already ended the transaction ("cannot rollback -
                # no transaction is active"): the rollback is best effort, the error is the
                # commit's.
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
        self._busy_since_warning = False
        return rows
