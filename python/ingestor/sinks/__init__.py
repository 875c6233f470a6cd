"""The stores batches are written to. Each takes `(table, pyarrow.RecordBatch)` pairs and
commits them as one unit per flush."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from ingestor import queries
from ingestor.sinks import faults

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

Batches = Sequence[tuple[str, pa.RecordBatch]]

#: DuckDB settings of a writer's own connection. One thread: DuckDB's worker threads spun
#: waiting on each other (12% of the writer's CPU in `TaskExecutor::WorkOnTasks`) on a box
#: whose cores the collectors need; at 100 accounts end to end this took CPU per message
#: from 86 to 33 µs with raw_json and from 33 to 22 µs without.
WRITER_DUCKDB_CONFIG = {"threads": 1}

#: The most a DuckDB file's writer engine may hold at first (DuckDB's default is 80% of the
#: machine's memory, and the writer was the largest process there is); moves stream the hot
#: tier's files through it and most of what needs more spills to its temp directory. Not
#: everything does: a state's MERGE and the checkpoint at DETACH failed at 32 MB with 100
#: accounts' firehose, and at 64 MB with the query benchmark's 20,000 position keys, so a
#: move that runs out raises it (`grow_memory_limit`: a store of that many keys pays one
#: failed move a start). At saturation (the firehose, peak PSS of the writer): 100 accounts
#: 593 MiB unbounded, 319 at 128 MB; 1,000 accounts 279-280 at 128 MB, 209-236 at 64, at
#: 35.7-43.4k against 37.2-46.2k messages a second in alternating runs (2026-12-01, a box that
#: swung 25% between runs of one kind). The state's cost at 1 M rows of 20,000 keys, two row
#: groups a move: the same at 64 as at 128 MB (1.83 / 1.68 against 1.87 / 1.85x), after the
#: one failed move.
WRITER_MEMORY_MB = 64
#: Where `grow_memory_limit` stops doubling: an eighth of the machine.
WRITER_MEMORY_CAP_FRACTION = 8


def writer_duckdb_config(temp_directory: Path, memory_mb: int) -> dict[str, object]:
    return {
        **WRITER_DUCKDB_CONFIG,
        "memory_limit": f"{memory_mb}MB",
        "temp_directory": str(temp_directory),
    }


def is_memory_error(error: BaseException) -> bool:
    """DuckDB ran out of its memory limit (raised as such, or inside a failed commit)."""
    text = str(error).lower()
    return type(error).__name__ == "OutOfMemoryException" or (
        "failed to pin block" in text or "out of memory" in text
    )


class Store(Protocol):
    """What the writer process needs of a store."""

    def create(self) -> None:
        """Creates tables, views and macros if they do not exist yet."""

    def write(self, batches: Batches) -> int:
        """Commits the batches (and anything spooled before them) as one unit; returns the
        rows committed now, 0 if they had to wait."""

    def close(self) -> None:
        """Commits what can be committed; leaves the rest spooled on disk."""


def group_by_table(batches: Batches) -> dict[str, pa.Table]:
    """One Arrow table per store table, in arrival order."""
    grouped: dict[str, list[pa.RecordBatch]] = {}
    for name, batch in batches:
        if batch.num_rows:
            grouped.setdefault(name, []).append(batch)
    return {name: pa.Table.from_batches(parts) for name, parts in grouped.items()}


def insert_new(
    con: duckdb.DuckDBPyConnection,
    name: str,
    rows: pa.Table,
    *,
    state: bool = False,
    stored: str | None = None,
) -> int:
    """Inserts `rows` into table `name` inside the caller's transaction, without the rows the
    table already holds (a replayed push, a batch delivered again to a restarted writer) or
    repeats within `rows` (`queries.DEDUP`); returns the number of rows inserted. With
    `state`, the inserted rows are folded into the table's current state too (same
    transaction). `stored`: the table the history is kept in, where it is not `name` (a
    DuckDB file's `queries.cold` table).

    DuckDB finds the new rows from the key columns alone; the rows are then inserted from
    Arrow as they are (all of them, the common case) or as Arrow's `take` of the new ones."""
    import pyarrow.compute as pc

    faults.maybe_fail()
    dedup = queries.DEDUP.get(name)
    if dedup is not None:
        bounds_us = None
        column = rows[dedup.range].cast(pa.timestamp("us", "UTC")).cast(pa.int64())
        bounds = pc.min_max(column)
        if bounds["min"].is_valid:
            bounds_us = (bounds["min"].as_py(), bounds["max"].as_py())
        keyed = rows.select(list(dedup.keys)).append_column(
            queries.ROW_NUMBER, pa.array(range(rows.num_rows), pa.int64())
        )
        con.register("incoming_keys", keyed)
        try:
            sql = queries.new_row_numbers(name, "incoming_keys", bounds_us, stored)
            new = con.execute(sql).fetch_arrow_table()[queries.ROW_NUMBER]
        finally:
            con.unregister("incoming_keys")
        if len(new) < rows.num_rows:
            rows = rows.take(new)
    if not rows.num_rows:
        return 0
    con.register("incoming", rows)
    try:
        return _insert(con, name, "incoming", state, stored)
    finally:
        con.unregister("incoming")


def _insert(
    con: duckdb.DuckDBPyConnection,
    name: str,
    relation: str,
    state: bool,
    stored: str | None,
    numbered: str | None = None,
    checkpoints: Checkpoints | None = None,
) -> int:
    """Inserts `relation` (new rows only) into the history and folds it into the state.
    `numbered`: `relation` with `queries.ROW_NUMBER`, read by DuckDB from the hot tier's
    files (`_fold_into_state`). `checkpoints`: counts the rows inserted, and makes the
    checkpoints due within the commit (`_fold_in_slices`)."""
    # DuckDB answers an INSERT with the number of rows it inserted.
    inserted = con.execute(queries.insert_rows(stored or name, relation)).fetchone()[0]
    counted = 0
    if state and name in queries.STATE_OF:
        s = queries.STATE_OF[name]
        history = stored or name
        if numbered is None:
            for statement in _state_statements(s, history, relation, relation, relation):
                con.execute(statement)
        elif checkpoints is not None:
            counted = _fold_in_slices(con, s, history, relation, numbered, inserted, checkpoints)
        else:
            _fold_into_state(con, s, history, relation, numbered)
    if checkpoints is not None:
        checkpoints.inserted(name, inserted - counted)
    return inserted


def _fold_in_slices(
    con: duckdb.DuckDBPyConnection,
    s: queries.State,
    history: str,
    relation: str,
    numbered: str,
    inserted: int,
    checkpoints: Checkpoints,
) -> int:
    """Folds a commit's rows into the state in arrival order, a checkpoint's worth at a
    time (`Checkpoints.slices`), each checkpoint made where it falls due: a commit larger
    than that (a DuckDB file moves whole row groups, 122,880 rows or more of a table) would
    otherwise make at most one, and `*_asof` would read up to the commit's rows past it
    (the query benchmark's 5,000 wallet keys: a checkpoint due every 50,000 rows, moves of
    122,880). A checkpoint made after a slice is the definition once the later slices'
    older rows patch it, as between commits. Returns the rows it counted (those before the
    last checkpoint it made)."""
    import duckdb

    sizes = checkpoints.slices(con, s, inserted)
    if len(sizes) == 1:
        _fold_into_state(con, s, history, relation, numbered)
        return 0
    counted = 0
    cuts = [row for (row,) in con.execute(queries.slice_cuts(numbered, sizes)).fetchall()]
    edges = [None, *cuts, None]
    try:
        for size, low, high in zip(sizes, edges[:-1], edges[1:], strict=True):
            where = " AND ".join(
                f"{queries.ROW_NUMBER} {op} {edge}"
                for op, edge in ((">=", low), ("<", high))
                if edge is not None
            )
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW slice_numbered AS "
                f"SELECT * FROM {numbered} WHERE {where}"
            )
            con.execute(
                "CREATE OR REPLACE TEMP VIEW slice_rows AS "
                f"SELECT * EXCLUDE ({queries.ROW_NUMBER}) FROM slice_numbered"
            )
            _fold_into_state(con, s, history, "slice_rows", "slice_numbered")
            if high is not None:
                checkpoints.inserted(s.history, size)
                counted += size
                checkpoints.due(con, (s,))
    finally:
        with contextlib.suppress(duckdb.Error):
            for view in ("slice_rows", "slice_numbered"):
                con.execute(f"DROP VIEW IF EXISTS {view}")
    return counted


def _state_statements(
    s: queries.State, history: str, newest: str, late: str, patch: str
) -> list[str]:
    """Folding a commit's rows into the state, the checkpoints and the late table, each from
    the relation that holds the rows it needs: per key the newest, the late rows, the rows
    that patch checkpoints. `history`: the table the history is kept in (the commit's rows
    inserted)."""
    return [
        *queries.merge_state(s, newest, history),
        *queries.patch_checkpoints(s, patch, history),
        queries.late_rows(s, late),
    ]


def _fold_into_state(
    con: duckdb.DuckDBPyConnection, s: queries.State, history: str, relation: str, numbered: str
) -> None:
    """The state's statements of a move take the rows they need from a small Arrow table
    read at once (`queries.state_picks`: each key's newest, the late rows, the rows that
    patch checkpoints; ~12% of a move's position rows), not each from `relation`: each
    reading the move's files for itself cost 4.8 µs CPU a row (1 M position rows: newest
    per key as whole rows 2.2, late rows 1.2, patch 0.8, MERGE 0.7), more than the INSERT
    (2.1); and DuckDB's MERGE_INTO cost ~40x more with a DuckDB relation as its source than
    with an Arrow table (5.8 s against 0.16 s CPU for 122,880 position rows into a state of
    20,000 keys). Late or patching rows past `queries.STATE_PICK_ROWS` are left to their
    statement to read from `relation`, so what is held stays bounded."""
    import pyarrow.compute as pc

    picks = con.execute(queries.state_picks(s, numbered)).fetch_arrow_table()
    wanted = picks["is_newest"]
    streamed = {}
    for flag in ("is_late", "is_patch"):
        many = (pc.sum(picks[flag]).as_py() or 0) > queries.STATE_PICK_ROWS
        streamed[flag] = many
        if not many:
            wanted = pc.or_(wanted, picks[flag])
    con.register("state_picks", picks.filter(wanted).select(["n"]))
    try:
        rows = con.execute(queries.picked_rows(numbered, "state_picks")).fetch_arrow_table()
    finally:
        con.unregister("state_picks")
    con.register("state_rows", rows)
    try:
        late = relation if streamed["is_late"] else "state_rows"
        patch = relation if streamed["is_patch"] else "state_rows"
        for statement in _state_statements(s, history, "state_rows", late, patch):
            con.execute(statement)
    finally:
        con.unregister("state_rows")


def insert_new_rows_of(
    con: duckdb.DuckDBPyConnection,
    name: str,
    source: str,
    *,
    state: bool = False,
    stored: str | None = None,
    checkpoints: Checkpoints | None = None,
) -> tuple[int, int]:
    """`insert_new` of rows DuckDB reads itself: `source` is a query of them with a
    `queries.ROW_NUMBER` column in arrival order (`queries.hot_rows`). Returns (rows read,
    rows inserted). The rows stream through each statement; only the new rows' numbers are
    held, and only when some rows are not new. `checkpoints` counts the rows inserted and
    makes the checkpoints that fall due inside them (`_fold_in_slices`)."""
    import duckdb

    faults.maybe_fail()
    con.execute(f"CREATE OR REPLACE TEMP VIEW incoming_all AS {source}")
    try:
        dedup = queries.DEDUP.get(name)
        total, low, high = con.execute(
            queries.bounds_us("incoming_all", dedup.range if dedup else "local_ts")
        ).fetchone()
        if not total:
            return 0, 0
        rows = "SELECT * FROM incoming_all"
        if dedup is not None:
            bounds = (low, high) if low is not None else None
            sql = queries.new_row_numbers(name, "incoming_all", bounds, stored)
            new = con.execute(sql).fetch_arrow_table()
            if not new.num_rows:
                return total, 0
            if new.num_rows < total:
                con.register("new_row_numbers", new)
                rows += f" SEMI JOIN new_row_numbers USING ({queries.ROW_NUMBER})"
        con.execute(f"CREATE OR REPLACE TEMP VIEW incoming_numbered AS {rows}")
        con.execute(
            "CREATE OR REPLACE TEMP VIEW incoming AS "
            f"SELECT * EXCLUDE ({queries.ROW_NUMBER}) FROM incoming_numbered"
        )
        inserted = _insert(con, name, "incoming", state, stored, "incoming_numbered", checkpoints)
        return total, inserted
    finally:
        # After a failed statement the transaction only takes a ROLLBACK (which drops these
        # too): a DROP here would raise and hide the failure that matters.
        with contextlib.suppress(duckdb.Error):
            for view in ("incoming", "incoming_numbered", "incoming_all"):
                con.execute(f"DROP VIEW IF EXISTS {view}")
        con.unregister("new_row_numbers")


class Checkpoints:
    """Makes a checkpoint of each state inside a commit once `queries.checkpoint_rows` of its
    size in history rows have come after its last one (at the history's newest instant). The
    state's size is read when that many rows may have come (a count of the state table; it
    only grows). The rows are counted
    as the store inserts them; only the first commit of a writer counts them in the store
    (reading every row after the last checkpoint in every commit cost ~15% of the write
    path's CPU at 1 M rows). A store made before the state was kept gets its state from the
    whole history, once, and its first checkpoint from that."""

    def __init__(self, stored: Callable[[str], str] = queries.same) -> None:
        #: The table each history is kept in (`queries.cold` in a DuckDB file).
        self.stored = stored
        self._since: dict[str, int] | None = None

    def inserted(self, table: str, rows: int) -> None:
        if self._since is not None and table in self._since:
            self._since[table] += rows

    def slices(self, con: duckdb.DuckDBPyConnection, state: queries.State, rows: int) -> list[int]:
        """How many of a commit's `rows` (inserted, not yet counted) the state's fold takes at
        a time, a checkpoint due after each but the last (`_fold_in_slices`): all at once
        unless they are more than a checkpoint's worth. A state of some keys (`State.kept`)
        takes them at once: its checkpoint's instant is the history's newest, which holds
        the commit's later rows already."""
        if self._since is None:
            self._load(con)
            # The commit's rows are in the history already: counted as its slices fold (its
            # late rows were not counted there: at least none since).
            self._since[state.history] = max(0, self._since[state.history] - rows)
        if state.kept:
            return [rows]
        keys, _ = con.execute(queries.state_size(state)).fetchone()
        every = queries.checkpoint_rows(keys)
        # An empty state (a store's first commit) does not know its keys yet: not sliced
        # into CHECKPOINT_MIN_ROWS pieces, each copying a state still filling.
        if not keys or rows <= every:
            return [rows]
        sizes = [max(1, every - self._since[state.history])]
        while sum(sizes) + every < rows:
            sizes.append(every)
        return [*sizes, rows - sum(sizes)]

    def forget(self) -> None:
        """After a failed commit: what it counted was rolled back."""
        self._since = None

    def _load(self, con: duckdb.DuckDBPyConnection) -> None:
        self._since = {}
        for state in queries.STATES:
            _, after = con.execute(self._last(state)).fetchone()
            self._since[state.history] = after

    def due(
        self, con: duckdb.DuckDBPyConnection, states: tuple[queries.State, ...] | None = None
    ) -> None:
        """Makes the checkpoints due (of `states`, or every state)."""
        if self._since is None:
            self._load(con)
        for state in queries.STATES if states is None else states:
            since = self._since[state.history]
            if since < queries.checkpoint_rows(0):
                continue
            keys, newest = con.execute(
                queries.state_size(state, self.stored(state.history))
            ).fetchone()
            if since < queries.checkpoint_rows(keys):
                continue
            (last,) = con.execute(queries.checkpoint_instant(state)).fetchone()
            if newest is not None and (last is None or newest > last):
                for statement in queries.make_checkpoint(state):
                    con.execute(statement, [newest])
            self._since[state.history] = 0

    def _last(self, state: queries.State) -> str:
        return queries.last_checkpoint(state, self.stored(state.history))


def create_or_migrate(
    con: duckdb.DuckDBPyConnection,
    statements: list[str],
    *,
    build_state: bool = False,
    checkpoint: bool = True,
    stored: Callable[[str], str] = queries.same,
) -> list[str]:
    """Runs the store's CREATE statements, after adding to tables that exist (made by an
    earlier version) the columns today's schemas have and they lack; returns the columns
    added, as `table.column`. `build_state`: the statements create the state tables; one
    that is new is built from the history once (a store made before the state was kept),
    and with `checkpoint` its first checkpoint is made if due. `stored`: the table each
    history is kept in."""
    existing: dict[str, set[str]] = {}
    for table, column in con.execute(queries.TABLE_COLUMNS).fetchall():
        existing.setdefault(table, set()).add(column)
    added = queries.add_columns(existing, stored)
    for _, statement in added:
        con.execute(statement)
    for statement in statements:
        con.execute(statement)
    if build_state:
        for s in queries.STATES:
            if stored(s.history) not in existing:
                continue
            if s.table not in existing:
                log.info("building %s from the history, once", s.table)
                con.execute(queries.build_state(s, stored(s.history)))
            if s.late not in existing:
                log.info("copying the late rows of %s into %s, once", s.history, s.late)
                con.execute(queries.late_rows(s, stored(s.history)))
        if checkpoint:
            Checkpoints(stored).due(con)
    names = [name for name, _ in added]
    if names:
        log.warning(
            "the store was made by an earlier version: added %d columns (%s); its earlier rows "
            "read NULL there",
            len(names),
            ", ".join(names),
        )
    return names


def open_store(
    kind: str,
    path: str | Path,
    *,
    data_path: str | Path | None = None,
    shard: tuple[int, int] | None = None,
) -> Store:
    """The store a writer process commits to. `data_path` and `shard` matter to a lake only:
    where its data files go, and which instance this is (each keeps its own spool)."""
    if kind == "duckdb":
        from ingestor.sinks.duckdb_store import DuckDBStore

        return DuckDBStore(path)
    if kind == "parquet":
        from ingestor.sinks.parquet_store import ParquetStore

        return ParquetStore(path)
    if kind == "ducklake":
        from ingestor.sinks.ducklake_store import DuckLakeStore

        return DuckLakeStore(path, data_path=data_path, shard=shard)
    raise ValueError(f"unknown store kind {kind!r}")


def open_reader(kind: str, path: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection in which the store's tables and views (`latest_positions`,
    `positions_asof`, ...) answer, whatever the kind of store."""
    import duckdb

    if kind == "duckdb":
        return duckdb.connect(str(path), read_only=True)
    if kind == "parquet":
        from ingestor.sinks.parquet_store import open_catalog

        return open_catalog(path)
    if kind == "ducklake":
        from ingestor.sinks import ducklake_store

        return ducklake_store.open_reader(path)
    raise ValueError(f"unknown store kind {kind!r}")


def is_lock_error(error: BaseException) -> bool:
    """DuckDB's "Could not set lock on file ... Conflicting lock is held": another process
    has the file. (Not any message with "lock" in it: a corrupt file's error names a
    "block".)"""
    text = str(error).lower()
    return "could not set lock" in text or "conflicting lock" in text


class StoreDamaged(Exception):
    """The store's file is there but is not what this kind of store reads: the service
    refuses to start rather than overwrite or spool into it."""


#: The first bytes of the files a store keeps (DuckDB's magic sits after an 8-byte checksum).
_DUCKDB_MAGIC = (8, b"DUCK")
_SQLITE_MAGIC = (0, b"SQLite format 3\x00")


def _magic(path: Path, expected: tuple[int, bytes], what: str) -> None:
    if not path.is_file():
        raise StoreDamaged(f"{path} is not a file (a {what} file was expected)")
    offset, magic = expected
    with path.open("rb") as f:
        head = f.read(offset + len(magic))
    if head and head[offset:] != magic:
        raise StoreDamaged(f"{path} is not a {what} file (it begins {head[:16]!r})")


def check_store(kind: str, path: str | Path) -> None:
    """Raises StoreDamaged when the store exists and cannot be read as what it should be (not
    a DuckDB file, a newer DuckDB format, a folder where a file should be); a store that is
    new, or locked by another process, passes."""
    import duckdb

    if kind == "duckdb":
        file = Path(path)
        if not file.exists():
            return
        _magic(file, _DUCKDB_MAGIC, "DuckDB")
        quoted = str(file).replace("'", "''")
        with duckdb.connect(":memory:") as con:
            try:
                con.execute(f"ATTACH '{quoted}' AS store (READ_ONLY)")
            except duckdb.Error as e:
                if is_lock_error(e):
                    return  # held by a reader or another writer: the spool waits for it
                raise StoreDamaged(
                    f"{file} cannot be opened by DuckDB {duckdb.__version__}: {e}"
                ) from None
    elif kind == "parquet":
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise StoreDamaged(f"{root} is not a folder (a Parquet store is a folder tree)")
    elif kind == "ducklake":
        from ingestor.sinks.ducklake_store import lake

        catalog = lake(path).sqlite_file
        if catalog is not None and catalog.exists():
            _magic(catalog, _SQLITE_MAGIC, "SQLite")


def store_exists(kind: str, path: str | Path) -> bool:
    """False when the store is certainly not there yet (a lake's PostgreSQL catalog is
    never assumed missing: only asking it tells)."""
    if kind == "ducklake":
        from ingestor.sinks.ducklake_store import lake

        return lake(path).exists()
    return Path(path).exists()


def _read_store(
    kind: str, path: str | Path, sql: Callable[[set[str]], str], what: str, wait_s: float
) -> list[tuple]:
    """The rows of `sql(the store's relations)` over the store, or none when the store is new
    or cannot be read (logged: the caller then starts as if it knew nothing). A store locked
    by its writer is tried again for up to `wait_s` seconds: the writer lets it go between
    flushes."""
    import duckdb

    if not store_exists(kind, path):
        return []
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with open_reader(kind, path) as con:
                present = {table for (table,) in con.execute(queries.RELATIONS).fetchall()}
                return con.execute(sql(present)).fetchall()
        except duckdb.Error as e:
            if is_lock_error(e) and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            log.warning("could not read %s from %s: %s", what, path, e)
            return []


def open_positions(
    kind: str, path: str | Path, *, wait_s: float = 0.0
) -> dict[str, list[tuple[str, str, int]]]:
    """{account: [(category, symbol, position_idx)]} last seen open in the store, for a
    (re)started collector's first resync (with none, the resync falls back to the exchange's
    listing alone)."""
    rows = _read_store(kind, path, lambda _: queries.OPEN_POSITIONS, "open positions", wait_s)
    found: dict[str, list[tuple[str, str, int]]] = {}
    for account, category, symbol, idx in rows:
        found.setdefault(account, []).append((category, symbol, idx))
    return found


def spooled_positions(
    kind: str,
    path: str | Path,
    *,
    data_path: str | Path | None = None,
    shard: tuple[int, int] | None = None,
) -> dict[str, set[tuple[str, str, int]]]:
    """{account: {(category, symbol, position_idx)}} of every position row waiting in the
    store's spool (a drain that ran out of time parks its batches there): not in the store
    until the writer takes them, so `open_positions` cannot see them, and a position they
    show open may have closed since. Read by symbol on the first resync, each is seen as it
    is now."""
    spool = open_store(kind, path, data_path=data_path, shard=shard).spool
    found: dict[str, set[tuple[str, str, int]]] = {}
    for _, batch in spool.peek(("position_snapshots",))[1]:
        keys = batch.select(["account_id", "category", "symbol", "position_idx"]).to_pylist()
        for k in keys:
            found.setdefault(k["account_id"], set()).add(
                (k["category"], k["symbol"], k["position_idx"])
            )
    return found


def ledger_complete(kind: str, path: str | Path, *, wait_s: float = 0.0) -> dict[str, int]:
    """{account: epoch ms} up to which the store holds the account's ledger complete
    (`queries.ledger_complete`), where a (re)started collector's backfill starts."""
    rows = _read_store(kind, path, queries.ledger_complete, "the ledger's coverage", wait_s)
    return {account: int(ms) for account, ms in rows if ms is not None}
