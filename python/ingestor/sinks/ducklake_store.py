"""The DuckLake store: Parquet data files plus a catalog database, one lake commit per flush.

Two forms, told apart by the store path:

- a folder (`capture.lake`): a SQLite catalog at `<folder>/catalog.sqlite`, data files under
  `<folder>/data/`; one box, any number of local readers (and writers) at once;
- `postgres:<libpq conninfo>` (`postgres:dbname=lake host=10.0.0.5`): a PostgreSQL catalog and
  `data_path`, a folder every box can reach; many ingestors, each with its shard of accounts.

Readers never block the writer here (unlike a DuckDB file), so batches wait in the spool only
when the catalog cannot be reached or a commit keeps failing.

The extensions come from the `duckdb-ext-*` wheels; nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
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
)
from ingestor.sinks.spool import Spool

log = logging.getLogger(__name__)

POSTGRES = "postgres:"
CATALOG_FILE = "catalog.sqlite"
DATA_FOLDER = "data"
#: The name the lake is attached under in every connection.
LAKE = "lake"
#: Attempts at one commit before its batches go to the spool. DuckLake itself retries a
#: commit that lost a race to another writer (appends never conflict logically); these
#: cover what it gives up on and a SQLite catalog that stays locked.
COMMIT_ATTEMPTS = 8
RETRY_WAIT_S = 0.2
#: DuckLake's own retries of a commit that raced another writer's, and their waits. Its
#: defaults grow each wait 1.5x from 100 ms, and with the 100 retries set here before, a
#: commit that kept losing the race to the other writer slept for minutes (the 19th wait
#: alone is ~150 s): the likely hang of two sharded writers on a loaded box. These bound a
#: commit's own retries to ~9 s in all (the 20th wait is 1.9 s); past them our retries, then
#: the spool, take over.
DUCKLAKE_RETRIES = 20
DUCKLAKE_RETRY_WAIT_MS = 50
DUCKLAKE_RETRY_BACKOFF = 1.2


def extension_directory() -> Path:
    """Where the `duckdb-ext-*` wheels put the extension files (`duckdb_ext/extensions`, laid
    out as DuckDB's own extension directory: `v1.4.4/linux_amd64/ducklake.duckdb_extension`)."""
    import duckdb_ext  # a namespace package the wheels share; it has no code

    for folder in duckdb_ext.__path__:
        candidate = Path(folder) / "extensions"
        if candidate.is_dir():
            return candidate
    raise RuntimeError("the duckdb-ext-ducklake wheels are not installed (see requirements.txt)")


@dataclass(frozen=True)
class Lake:
    """Where a lake's catalog and data files are."""

    #: `sqlite:/abs/catalog.sqlite` or `postgres:<conninfo>`.
    catalog: str
    #: The data folder; None to use the one the catalog recorded when the lake was made.
    data_path: Path | None

    @property
    def extension(self) -> str:
        return "postgres" if self.catalog.startswith(POSTGRES) else "sqlite"

    @property
    def sqlite_file(self) -> Path | None:
        return Path(self.catalog.split(":", 1)[1]) if self.extension == "sqlite" else None

    def exists(self) -> bool:
        """False only when certainly new: a PostgreSQL catalog is asked, not guessed."""
        return self.sqlite_file is None or self.sqlite_file.exists()

    def attach(self, *, read_only: bool) -> str:
        options = []
        if self.data_path is not None and not read_only:
            # A trailing slash: DuckLake joins file names onto the path as given.
            options.append(f"DATA_PATH {_literal(str(self.data_path).rstrip('/') + '/')}")
        if read_only:
            options.append("READ_ONLY")
        suffix = f" ({', '.join(options)})" if options else ""
        return f"ATTACH {_literal('ducklake:' + self.catalog)} AS {LAKE}{suffix}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def lake(path: str | Path, data_path: str | Path | None = None) -> Lake:
    """The lake a sink path names (see the module's docstring)."""
    text = str(path)
    if text.startswith(POSTGRES):
        return Lake(text, Path(data_path).absolute() if data_path else None)
    # Absolute paths: the catalog records the data path, and readers may run elsewhere.
    folder = Path(text).absolute()
    data = Path(data_path).absolute() if data_path else folder / DATA_FOLDER
    return Lake(f"sqlite:{folder / CATALOG_FILE}", data)


def connect(target: Lake, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as `lake` and used by default."""
    con = duckdb.connect(
        config={
            "extension_directory": str(extension_directory()),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            **({} if read_only else WRITER_DUCKDB_CONFIG),
        }
    )
    try:
        # A slow read (a busy catalog) would draw a progress bar on a reader's stdout.
        con.execute("SET enable_progress_bar = false")
        con.execute("LOAD ducklake")
        con.execute(f"LOAD {target.extension}")
        con.execute(f"SET ducklake_max_retry_count = {DUCKLAKE_RETRIES}")
        con.execute(f"SET ducklake_retry_wait_ms = {DUCKLAKE_RETRY_WAIT_MS}")
        con.execute(f"SET ducklake_retry_backoff = {DUCKLAKE_RETRY_BACKOFF}")
        if target.sqlite_file is not None and not read_only:
            # SQLite makes its file, not the folder; DuckLake makes the data folders.
            target.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        # Two writers creating a new lake at once: the loser finds the catalog locked or
        # half made; a second attach finds it whole.
        _retry(lambda: con.execute(target.attach(read_only=read_only)), "attach the lake")
        con.execute(f"USE {LAKE}")
    except BaseException:
        con.close()
        raise
    return con


def open_reader(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the lake with the views (stored in the lake) and the table
    macros (created here: DuckLake stores no functions)."""
    con = connect(lake(path), read_only=True)
    for statement in queries.macros(temporary=True, state=True):
        con.execute(statement)
    return con


def _retry(action, what: str):
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return action()
        except duckdb.Error as e:
            if attempt == COMMIT_ATTEMPTS or not _transient(e):
                raise
            log.info("could not %s (attempt %d): %s; retrying", what, attempt, e)
            time.sleep(RETRY_WAIT_S * attempt)
    raise AssertionError("unreachable")


def _transient(error: duckdb.Error) -> bool:
    """A race with another writer or a busy catalog, not a mistake in what we asked."""
    text = str(error).lower()
    return isinstance(error, duckdb.TransactionException | duckdb.IOException) or any(
        word in text for word in ("conflict", "locked", "busy", "retry", "duplicate key")
    )


def default_spool(target: Lake, shard: tuple[int, int] | None) -> Path:
    """Local to this instance: two ingestors sharing a lake must not share a spool."""
    tag = f"-shard-{shard[0]}-of-{shard[1]}" if shard else ""
    if target.sqlite_file is not None:
        return target.sqlite_file.parent / f"spool{tag}"
    return Path(f"ducklake{tag}.spool").absolute()


class DuckLakeStore:
    def __init__(
        self,
        path: str | Path,
        *,
        data_path: str | Path | None = None,
        spool_dir: str | Path | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.lake = lake(path, data_path)
        self.name = str(path)
        self.spool = Spool(Path(spool_dir) if spool_dir else default_spool(self.lake, shard))
        #: Each snapshot names the instance that made it: with many writers on one lake, an
        #: analyst (and the tests) can tell whose commit a row came from.
        self.author = f"ingestor shard {shard[0]}/{shard[1]}" if shard else "ingestor"
        self._con: duckdb.DuckDBPyConnection | None = None
        self._failing = False
        self.shard = shard
        self.checkpoints = Checkpoints()
        #: Per table, the rows the last `write` committed of the batches it was handed, after
        #: the dedup (a table spooled instead is absent): what the writer records in
        #: `store_commits`.
        self.last_rows: dict[str, int] = {}

    def _connection(self) -> duckdb.DuckDBPyConnection:
        # One connection for the writer's life: attaching costs a catalog round trip or more.
        if self._con is None:
            self._con = connect(self.lake, read_only=False)
        return self._con

    def create(self) -> None:
        if self.lake.catalog.startswith(POSTGRES) and self.lake.data_path is None:
            # DuckLake asks for a data path only when it makes the lake; say why up front.
            log.info("no data_path for %s: using the one its catalog recorded", self.name)

        def create_all() -> None:
            con = self._connection()
            # One commit: two ingestors starting together race once, and the loser's retry
            # finds the tables there.
            con.execute("BEGIN")
            try:
                statements = queries.create_tables() + queries.create_state_tables()
                statements += queries.create_checkpoint_tables()
                create_or_migrate(
                    con,
                    statements + queries.STATE_STORED_VIEWS,
                    build_state=True,
                    checkpoint=self.shard is None,
                )
                con.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

        _retry(create_all, "create the lake's tables")

    def write(self, batches: Batches) -> int:
        """Commits, or spools while the lake refuses (catalog down, retries spent); a fault
        of the spool itself (a full disk) raises and the caller keeps the batches."""
        committed = 0
        self.last_rows = {}
        if len(self.spool):
            committed = self.drain()
            if len(self.spool):
                self.spool.put(batches)
                return committed
        try:
            self.last_rows = self._commit(batches)
            return committed + sum(self.last_rows.values())
        except duckdb.Error as e:
            self._warn_failing(e)
            self.spool.put(batches)
            return committed

    def drain(self) -> int:
        """Commits everything spooled, if the lake takes it now."""
        files, batches = self.spool.peek()
        if not files:
            return 0
        try:
            rows = sum(self._commit(batches).values())
        except duckdb.Error as e:
            self._warn_failing(e)
            return 0
        self.spool.remove(files)
        log.info(
            "spool drained: %d rows from %d files committed to %s", rows, len(files), self.name
        )
        return rows

    def close(self) -> None:
        self.drain()
        if len(self.spool):
            log.warning(
                "%d spooled batch files remain in %s; they are committed on the next start",
                len(self.spool),
                self.spool.directory,
            )
        if self._con is not None:
            self._con.close()
            self._con = None

    def _warn_failing(self, error: duckdb.Error) -> None:
        if not self._failing:
            log.warning(
                "cannot commit to the lake %s (%s): batches wait in %s",
                self.name,
                error,
                self.spool.directory,
            )
            self._failing = True

    def _rollback(self) -> None:
        con, self._con = self._con, None
        if con is None:
            return
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        # A connection that failed mid-commit is not trusted again: a fresh one re-reads the
        # catalog (and reconnects to a PostgreSQL server that went away).
        con.close()

    def _commit(self, batches: Batches) -> dict[str, int]:
        """Commits the batches as one snapshot; the rows inserted, per table."""
        tables = group_by_table(batches)
        if not tables:
            return {}
        inserted = _retry(lambda: self._commit_once(tables), "commit to the lake")
        if self._failing:
            log.info("the lake %s takes commits again", self.name)
        self._failing = False
        return inserted

    def _commit_once(self, tables: dict) -> dict[str, int]:
        con = self._connection()
        rows = 0
        per_table: dict[str, int] = {}
        con.execute("BEGIN")
        try:
            for name in queries.TABLES:
                if name not in tables:
                    continue
                # The anti-join reads the lake's own rows: a replayed push is stored once,
                # as in the DuckDB store.
                inserted = insert_new(con, name, tables[name], state=True)
                self.checkpoints.inserted(name, inserted)
                per_table[name] = inserted
                rows += inserted
            if self.shard is None:
                # Only a lake's one writer makes checkpoints: one made from a snapshot that
                # lacks another instance's concurrent commit would miss its older rows, which
                # that commit's patch could not see. Sharded instances patch what exists.
                self.checkpoints.due(con)
            con.execute(
                f"CALL {LAKE}.set_commit_message(?, ?)", [self.author, f"flush: {rows} rows"]
            )
            con.execute("COMMIT")  # one flush, one lake snapshot
        except BaseException:
            self.checkpoints.forget()
            self._rollback()
            raise
        return per_table
