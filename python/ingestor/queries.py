"""All of the SQL the stores run, in one place.

Table DDL is generated from the Arrow schemas the Rust core defines (`ingestor.schemas()`), so
the stores cannot drift from the decoder. Views and table macros answer the analyst's
questions: the latest state, the state at any instant, and every gap in the record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from ingestor.decode import schemas

#: The writer's record of its own commits: one row per table per flush it committed (when the
#: rows became readable, how many, the oldest and newest `local_ts` among them), written with
#: the next flush (service/writer.py). Its schema comes from the Rust core like the others'
#: (rust/core/src/store_commits.rs), so every store creates, migrates, deduplicates and
#: partitions it through the same generic path; it has no account.
STORE_COMMITS = "store_commits"

#: The order tables are created and written in.
TABLES = (
    "position_snapshots",
    "wallet_snapshots",
    "execution_events",
    "order_events",
    "ledger_gaps",
    "rejects",
    "connection_events",
    STORE_COMMITS,
)


#: Natural keys: a row delivered twice must not be stored twice. The exchange replays pushes
#: (a duplicate carries the same envelope: message id and creation time), and the service itself
#: delivers a batch again when the writer died before it said the batch was committed: the
#: supervisor hands every unacknowledged batch to the restarted writer. REST rows carry an id
#: made from their response (`rest:` and a hash of the body), so a second delivery of the same
#: resync is one observation, while each resync stays one of its own. Rows of a push without
#: a message id (stores written before REST ids) are never merged.
#: `range`: the batch's range of that column is written into the anti-join as constants, so
#: the table's zone maps skip every row group outside it (see `new_row_numbers`).
@dataclass(frozen=True)
class Dedup:
    keys: tuple[str, ...]
    range: str
    #: Rows whose `message_id` is NULL are each new (positions and wallets only).
    by_message: bool = False


DEDUP: dict[str, Dedup] = {
    "position_snapshots": Dedup(
        (
            "account_id",
            "message_id",
            "creation_ts",
            "category",
            "symbol",
            "position_idx",
            "seq",
        ),
        "creation_ts",
        by_message=True,
    ),
    "wallet_snapshots": Dedup(
        ("account_id", "message_id", "creation_ts", "account_type", "coin"),
        "creation_ts",
        by_message=True,
    ),
    # An execution is one per account and execId, however it came: twice on the stream, from
    # the stream and a REST backfill, or from two overlapping backfills. Its execTime is the
    # same every way, so the range column narrows the anti-join to the batch's time span.
    "execution_events": Dedup(("account_id", "exec_id"), "exchange_ts"),
    # An order version: Bybit's double `Filled` (a cancel racing a fill) carries the same
    # status, time and quantities twice and is one row.
    "order_events": Dedup(
        ("account_id", "order_id", "order_status", "exchange_ts", "cum_exec_qty", "leaves_qty"),
        "exchange_ts",
    ),
    # A window the ledger cannot be complete in, found by one backfill of one kind.
    "ledger_gaps": Dedup(("account_id", "kind", "start_ts", "end_ts", "reason"), "local_ts"),
    # An event is taken at a µs clock per account: two at the same instant of the same kind
    # are one event delivered twice.
    "connection_events": Dedup(
        ("account_id", "local_ts", "event", "reason", "conn_id"), "local_ts"
    ),
    # Several elements of one frame can fail at the same instant for the same reason: the
    # bytes (the element's own) tell them apart. Rejects are rare; comparing blobs is cheap.
    "rejects": Dedup(
        ("account_id", "local_ts", "source", "message_id", "reason", "raw"), "local_ts"
    ),
    # A writer stamps one instant per flush (µs), so a writer, an instant and a table are one
    # flush's record of that table: a batch of them delivered again (a spooled flush drained
    # twice) adds nothing.
    STORE_COMMITS: Dedup(("writer_pid", "local_ts", "table_name"), "local_ts"),
}

POSITION_KEY = "account_id, category, symbol, position_idx"
WALLET_KEY = "account_id, account_type, coin"
# Newest first: the exchange's time, then its sequence, then our arrival.
POSITION_ORDER = "exchange_ts DESC, seq DESC NULLS LAST, local_ts DESC"
WALLET_ORDER = "exchange_ts DESC, local_ts DESC"
ORDER_KEY = "account_id, order_id"
#: An order's versions newest first: the exchange's updated time; at one instant the version
#: that has filled more, then a final one (a cancel racing a fill can give a `Cancelled` and a
#: `Filled` one millisecond), then our arrival.
FINAL_ORDER_STATUSES = (
    "('Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected', 'Deactivated')"
)
ORDER_ORDER = (
    "exchange_ts DESC, cum_exec_qty DESC NULLS LAST, "
    f"order_status IN {FINAL_ORDER_STATUSES} DESC, local_ts DESC"
)
#: `ORDER_ORDER` as one comparable value of row `{r}`: greater is newer (NULL quantity last).
ORDER_RANK = (
    "({r}.exchange_ts, {r}.cum_exec_qty IS NOT NULL, coalesce({r}.cum_exec_qty, 0), "
    f"{{r}}.order_status IN {FINAL_ORDER_STATUSES}, {{r}}.local_ts)"
)
#: The statuses of an order still working on the book (or waiting for its trigger).
OPEN_ORDER_STATUSES = "('New', 'PartiallyFilled', 'Untriggered', 'Triggered')"


@dataclass(frozen=True)
class State:
    """The current state of a history table: per key, its newest row by the views' order,
    kept in a table of its own at every commit, in the commit's transaction (`merge_state`),
    so `latest_*` cost what the state costs, not what the history costs."""

    history: str
    table: str
    #: The view that answers from it.
    view: str
    #: The state at chosen instants (`CHECKPOINTS`), and the macro that answers from them.
    checkpoints: str
    asof: str
    #: The history's late rows (`late_rows`), again: what `*_asof` reads besides the history
    #: rows that arrived near their instant.
    late: str
    key: str
    order: str
    #: The order as one comparable value: a row whose value is greater is newer. NULL seq
    #: sorts last (oldest), as in `order`: a row comparison would rank NULL above all.
    rank: str
    #: The columns `rank` reads besides the key (what `state_picks` reads of every row).
    rank_columns: tuple[str, ...] = ("exchange_ts", "local_ts")
    #: Which keys the state holds, as SQL of row `{r}`: the keys whose newest row is such a
    #: row (the open orders); empty: every key. A key left out may still have rows, so a
    #: row of a key the state lacks is newest only if the history holds none newer
    #: (`superseded`).
    kept: str = ""

    def keeps(self, r: str) -> str:
        """SQL: the state holds the key of newest row `r`."""
        return self.kept.format(r=r) if self.kept else "true"

    def superseded(
        self, candidates: str, history: str, until: str = "", per_checkpoint: bool = False
    ) -> str:
        """SQL: the keys (after `checkpoint_ts` with `per_checkpoint`) of `candidates`' rows
        (`c`) that a row of `history` (`h`, with exchange_ts at or before `until`, SQL) is
        newer than. Newer rows are at or after a candidate's exchange_ts, so the scan starts
        at the oldest candidate's and the history's zone maps skip what is older: a move's
        new orders look back over seconds, a REST row days old over those days."""
        first = "c.checkpoint_ts, " if per_checkpoint else ""
        keys = ", ".join(f"c.{k}" for k in self.key.split(", "))
        bound = f" AND h.exchange_ts <= {until}" if until else ""
        return f"""
        SELECT DISTINCT {first}{keys} FROM {candidates} c
        JOIN {history} h ON {self.on("c", "h")}
        WHERE h.exchange_ts >= (SELECT min(exchange_ts) FROM {candidates})
          AND h.exchange_ts >= c.exchange_ts{bound}
          AND {self.newer("h", "c")}"""

    def unknown_keys(
        self,
        rows: str,
        present: str,
        on: str,
        history: str,
        where: str = "",
        until: str = "",
        per_checkpoint: bool = False,
    ) -> str:
        """SQL: the CTEs `unknown`, the rows of `rows` (`r`) the state keeps whose key
        `present` (`k`, joined `on`) lacks (and `where` holds of), and `superseded`, their
        keys a row of `history` is newer than (`superseded`): what a state of some keys asks
        wherever a row meets a key it lacks."""
        condition = " AND ".join([self.keeps("r"), *([where] if where else [])])
        return f"""
        unknown AS (SELECT r.* FROM {rows} r ANTI JOIN {present} k ON {on} WHERE {condition}),
        superseded AS ({self.superseded("unknown", history, until, per_checkpoint)})"""

    def newer(self, a: str, b: str) -> str:
        """SQL: row `a` is newer than row `b`."""
        return f"{self.rank.format(r=a)} > {self.rank.format(r=b)}"

    def on(self, a: str, b: str) -> str:
        return " AND ".join(f"{a}.{k} = {b}.{k}" for k in self.key.split(", "))

    def newest(self, source: str, first: str = "") -> str:
        """SQL: per key (after `first`, a column), the newest row of `source` (a table or a
        CTE) by the views' order. One hash aggregate of the whole row as a struct: 2.0 ms
        against 18.9 ms for `QUALIFY row_number() OVER (PARTITION BY key ORDER BY ...)` on
        204,800 rows of 20,000 keys. (Not `arg_max(COLUMNS(*), ...)`: arg_max skips NULL
        values, so a column NULL in the newest row would come from an older one.)"""
        keys = ", ".join(f"r.{k}" for k in ([first] if first else []) + self.key.split(", "))
        return (
            f"SELECT unnest(arg_max(r, {self.rank.format(r='r')})) FROM {source} r GROUP BY {keys}"
        )


STATES: tuple[State, ...] = (
    State(
        "position_snapshots",
        "position_state",
        "latest_positions",
        "position_checkpoints",
        "positions_asof",
        "position_late_rows",
        POSITION_KEY,
        POSITION_ORDER,
        "({r}.exchange_ts, coalesce({r}.seq, -9223372036854775808), {r}.local_ts)",
        ("exchange_ts", "local_ts", "seq"),
    ),
    State(
        "wallet_snapshots",
        "wallet_state",
        "latest_wallets",
        "wallet_checkpoints",
        "wallets_asof",
        "wallet_late_rows",
        WALLET_KEY,
        WALLET_ORDER,
        "({r}.exchange_ts, {r}.local_ts)",
    ),
    # The open orders: a state of every order ever would grow with the history (1.06 M
    # orders at the 10 M store), and the question at an instant is what was working then.
    State(
        "order_events",
        "open_order_state",
        "open_orders",
        "open_order_checkpoints",
        "open_orders_asof",
        "order_late_rows",
        ORDER_KEY,
        ORDER_ORDER,
        ORDER_RANK,
        ("exchange_ts", "local_ts", "cum_exec_qty", "order_status"),
        f"{{r}}.order_status IN {OPEN_ORDER_STATUSES}",
    ),
)
STATE_OF: dict[str, State] = {s.history: s for s in STATES}


def sql_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision}, {arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        if arrow_type.unit != "us" or arrow_type.tz != "UTC":
            raise ValueError(f"timestamps are stored as µs UTC, not {arrow_type}")
        return "TIMESTAMPTZ"
    simple = {
        pa.string(): "VARCHAR",
        pa.binary(): "BLOB",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.bool_(): "BOOLEAN",
    }
    if arrow_type not in simple:
        raise ValueError(f"no SQL type for {arrow_type}")
    return simple[arrow_type]


#: The storage version a new DuckDB file is created with: what DuckDB 1.4 and 2.x both read and
#: write (a 2.x file of its default storage, v2.0.0, cannot be opened by 1.4), and the first that
#: compresses text with zstd.
STORAGE_VERSION = "v1.4.0"

#: Compression a DuckDB file's columns are given rather than left to DuckDB's choice, by the
#: file's storage version (`duckdb_databases().tags['storage_version']`). raw_json: zstd on
#: v1.4.0 storage, where DuckDB itself picks DICT_FSST: 11.5-12.6 against ~14 µs a row
#: committed, the file 32% smaller (122,880-row commits with raw JSON, DuckDB 1.4.4 and
#: 2.0.1). A file made on v1.0.0 storage (by versions before the hot tier) keeps FSST: zstd
#: there is stored uncompressed without a word, and naming fsst on v1.4.0 storage is refused
#: as deprecated. Decimals keep DuckDB's choice (bitpacking, constant, RLE): 'uncompressed'
#: saved at most 1.3 µs a row on 1.4 and nothing on 2.x, for a file 52% larger.
FILE_COMPRESSION: dict[str, dict[str, str]] = {
    "v1.0.0+": {"raw_json": "fsst"},
    "v1.4.0+": {"raw_json": "zstd"},
}


def file_compression(storage_version: str) -> dict[str, str]:
    """The column compression for a DuckDB file of that storage version; DuckDB's own
    choice (never refused) for a version this table does not know."""
    return FILE_COMPRESSION.get(storage_version, {})


#: The storage version of the attached file the connection uses.
FILE_STORAGE_VERSION = """
    SELECT tags['storage_version'] FROM duckdb_databases()
    WHERE database_name = current_database()
"""


def create_table(name: str, schema: pa.Schema, compression: dict[str, str] | None = None) -> str:
    """`compression` names a column's compression (DuckDB files only: a lake writes Parquet)."""
    compression = compression or {}

    def column(f: pa.Field) -> str:
        using = f" USING COMPRESSION '{compression[f.name]}'" if f.name in compression else ""
        return f"{f.name} {sql_type(f.type)}{'' if f.nullable else ' NOT NULL'}{using}"

    columns = ",\n    ".join(column(f) for f in schema)
    return f"CREATE TABLE IF NOT EXISTS {name} (\n    {columns}\n)"


#: The columns the store's tables have now, in the connection's current database.
TABLE_COLUMNS = """
    SELECT table_name, column_name FROM duckdb_columns()
    WHERE database_name = current_database() AND schema_name = current_schema()
"""


def cold(table: str) -> str:
    """A DuckDB file's table of the history rows that have moved out of its hot tier; the
    history's own name is a view over it and the hot tier (`history_views`)."""
    return f"{table}_cold"


def hot(table: str) -> str:
    """A DuckDB file's view of the history rows still in its hot tier."""
    return f"{table}_hot"


def same(table: str) -> str:
    return table


def add_columns(
    existing: dict[str, set[str]], stored: Callable[[str], str] = same
) -> list[tuple[str, str]]:
    """(`table.column`, `ALTER TABLE ... ADD COLUMN`) for every column of today's schemas that
    a store made by an earlier version lacks (Bybit adds fields about monthly). Its old rows
    read NULL there. A new column that may not be NULL could not be added to rows that
    exist: refused."""
    statements = []
    all_schemas = schemas()
    tables = {stored(name): all_schemas[name] for name in TABLES}
    tables |= {state.table: all_schemas[state.history] for state in STATES}
    tables |= {state.checkpoints: all_schemas[state.history] for state in STATES}
    tables |= {state.late: all_schemas[state.history] for state in STATES}
    for name, schema in tables.items():
        if name not in existing:
            continue
        for f in schema:
            if f.name in existing[name]:
                continue
            if not f.nullable:
                raise ValueError(
                    f"{name}.{f.name} is new and NOT NULL: the store needs a migration"
                )
            statements.append(
                (f"{name}.{f.name}", f"ALTER TABLE {name} ADD COLUMN {f.name} {sql_type(f.type)}")
            )
    return statements


def create_tables(
    compression: dict[str, str] | None = None, stored: Callable[[str], str] = same
) -> list[str]:
    """`stored`: the table a history is kept in (a DuckDB file's: `cold`)."""
    all_schemas = schemas()
    return [create_table(stored(name), all_schemas[name], compression) for name in TABLES]


def create_state_tables(compression: dict[str, str] | None = None) -> list[str]:
    """The states and the late rows (`late_rows`)."""
    all_schemas = schemas()
    return [
        create_table(table, all_schemas[s.history], compression)
        for s in STATES
        for table in (s.table, s.late)
    ]


#: A history row is on time when it arrived within this many seconds of its exchange_ts
#: (either way: the box's clock may be behind the exchange's). The rows of a store are in
#: arrival order, so the zone maps of local_ts are tight, while those of exchange_ts are
#: blurred by every late row: a REST resync's position row carries its updatedTime, hours
#: or days old, and each row group holding one spans those days. `*_asof(T)` therefore
#: reads the history after its checkpoint C by both times (exchange_ts in (C, T], local_ts
#: within ON_TIME_S of that), which zone maps cut short, and the late rows again from a
#: table of their own (`late_rows`), ~1% of the history. Measured on the 10 M store
#: (1% REST rows 1 h to 3 days late), `positions_asof` mid-month: 876 against 515 ms. Any
#: bound is exact; a small one keeps the scan short, a large one the late table small
#: (pushes arrive within a second of their time).
ON_TIME_S = 60


def late_rows(state: State, relation: str) -> str:
    """Copies a commit's late rows (`ON_TIME_S`) into the state's late table, in the
    commit's transaction: that table holds every late row of the history."""
    return f"INSERT INTO {state.late} BY NAME SELECT * FROM {relation} r WHERE {is_late('r')}"


def is_late(r: str) -> str:
    """SQL: history row `r` is late (`ON_TIME_S`)."""
    bound = f"INTERVAL {ON_TIME_S} SECOND"
    return f"NOT ({r}.local_ts BETWEEN {r}.exchange_ts - {bound} AND {r}.exchange_ts + {bound})"


#: Which checkpoints exist: (history table, instant). A checkpoint holds, for every key, the
#: newest row with exchange_ts at or before its instant: `*_asof(T)` reads the latest one at
#: or before T and only the history rows after it (up to T), which the table's zone maps on
#: exchange_ts find without reading the rest (a bound taken from this table by a subquery
#: still reaches the scan as a filter: 2.8 ms against 26 ms for a full scan of 20 M rows).
CHECKPOINTS = "state_checkpoints"

#: A checkpoint is made when CHECKPOINT_STATE_FACTOR times the state's rows have come after
#: the last one (at least CHECKPOINT_MIN_ROWS, at most CHECKPOINT_ROWS): the work of an
#: `*_asof` is then the checkpoint and at most that many history rows (and the late rows
#: among them), so it follows the state's size, and the checkpoints take 1/factor of the
#: history's space. Reading a history row whole costs ~1.3 µs (48 columns, most of them
#: DECIMAL(38,18); 400,000 rows in 524 ms on the 10 M store), so at 50 (1 M rows past the
#: checkpoint for 20,000 position keys) `positions_asof` took up to ~1.4 s; at 10 it reads
#: at most 200,000 (~260 ms). A checkpoint is a copy of the state (`make_checkpoint`), and
#: what more of them cost is the late rows' folding: a row a day late joins every
#: checkpoint of that day (`patch_checkpoints`).
CHECKPOINT_STATE_FACTOR = 10
CHECKPOINT_MIN_ROWS = 10_000
CHECKPOINT_ROWS = 1_000_000


def checkpoint_rows(state_rows: int) -> int:
    """History rows after the last checkpoint that make the next one due."""
    every = max(CHECKPOINT_MIN_ROWS, CHECKPOINT_STATE_FACTOR * state_rows)
    return min(CHECKPOINT_ROWS, every)


def create_checkpoint_tables() -> list[str]:
    all_schemas = schemas()
    instant = pa.field("checkpoint_ts", pa.timestamp("us", "UTC"), nullable=False)
    tables = [
        create_table(s.checkpoints, all_schemas[s.history].insert(0, instant)) for s in STATES
    ]
    return [
        *tables,
        f"""CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (
            history VARCHAR NOT NULL, checkpoint_ts TIMESTAMPTZ NOT NULL)""",
    ]


def last_checkpoint(state: State, history: str | None = None) -> str:
    """The latest checkpoint's instant (NULL before the first) and how many history rows have
    come after it. `history`: the table the history is kept in, where it is not
    `state.history` (a DuckDB file's `cold` table: the writer's statements read what is
    committed, the hot tier's rows join when they move)."""
    return f"""
    WITH c AS (SELECT max(checkpoint_ts) AS ts FROM {CHECKPOINTS} WHERE history = '{state.history}')
    SELECT (SELECT ts FROM c), count(*) FROM {history or state.history}
    WHERE exchange_ts > coalesce((SELECT ts FROM c), '-infinity'::TIMESTAMPTZ)
    """


def checkpoint_instant(state: State) -> str:
    """The latest checkpoint's instant (NULL before the first)."""
    return f"SELECT max(checkpoint_ts) FROM {CHECKPOINTS} WHERE history = '{state.history}'"


def state_size(state: State, history: str | None = None) -> str:
    """The state's keys and the history's newest instant: the state's own where it holds
    every key; else the history's after its last checkpoint (zone maps skip the rest)."""
    if not state.kept:
        return f"SELECT count(*), max(exchange_ts) FROM {state.table}"
    since = f"coalesce(({checkpoint_instant(state)}), '-infinity'::TIMESTAMPTZ)"
    return f"""
    SELECT (SELECT count(*) FROM {state.table}),
           (SELECT max(exchange_ts) FROM {history or state.history} WHERE exchange_ts > {since})
    """


def make_checkpoint(state: State) -> list[str]:
    """The checkpoint at instant $1, the history's newest exchange_ts: a copy of the state,
    which is the definition there (every history row is at or before it). 20,000 rows
    copied, where building it from the previous checkpoint and the rows since took an
    aggregate of up to 1 M whole rows."""
    return [
        f"""
        INSERT INTO {state.checkpoints} BY NAME
        SELECT $1::TIMESTAMPTZ AS checkpoint_ts, * FROM {state.table}
        """,
        f"INSERT INTO {CHECKPOINTS} VALUES ('{state.history}', $1)",
    ]


def patch_checkpoints(state: State, relation: str, history: str | None = None) -> list[str]:
    """Folds a commit's rows into every checkpoint they are older than: a late row (a REST
    resync carries the position's updatedTime, which can be days old) changes the state at
    instants already checkpointed, and each must stay the definition. An on-time row is
    newer than every checkpoint and joins none (and is filtered out before the join).
    `history`: the table the history is kept in (with the commit's rows), which a state of
    some keys (`State.kept`) asks whether a checkpoint it lacks a key in has a newer row."""
    late = f"""
        late AS (
            SELECT c.checkpoint_ts, r.* FROM {relation} r
            JOIN {CHECKPOINTS} c
              ON c.history = '{state.history}' AND r.exchange_ts <= c.checkpoint_ts
            WHERE r.exchange_ts <= (
                SELECT max(checkpoint_ts) FROM {CHECKPOINTS} WHERE history = '{state.history}')
        )"""
    on = f"k.checkpoint_ts = p.checkpoint_ts AND {state.on('k', 'p')}"
    newest = state.newest("late", first="checkpoint_ts")
    if not state.kept:
        return [
            f"""
            MERGE INTO {state.checkpoints} k
            USING (WITH {late} {newest}) p
            ON ({on})
            WHEN MATCHED AND {state.newer("p", "k")} THEN UPDATE BY NAME
            WHEN NOT MATCHED THEN INSERT BY NAME
            """
        ]
    # A checkpoint without the key: its newest row there is one the state does not keep (a
    # closed order), or none; the commit's row joins only if none of the history is newer.
    unknown = state.unknown_keys(
        "p",
        state.checkpoints,
        f"k.checkpoint_ts = r.checkpoint_ts AND {state.on('k', 'r')}",
        history or state.history,
        until="c.checkpoint_ts",
        per_checkpoint=True,
    )
    return [
        _drop_unkept(state, state.checkpoints, f"WITH {late} {newest}", on),
        f"""
        MERGE INTO {state.checkpoints} k
        USING (
            WITH {late},
            p AS (SELECT * FROM ({newest}) p WHERE {state.keeps("p")}),{unknown}
            SELECT p.* FROM p ANTI JOIN superseded k ON {on}
        ) p
        ON ({on})
        WHEN MATCHED AND {state.newer("p", "k")} THEN UPDATE BY NAME
        WHEN NOT MATCHED THEN INSERT BY NAME
        """,
    ]


def _drop_unkept(state: State, target: str, newest: str, on: str) -> str:
    """Deletes from `target` (`k`) each key whose newest row of `newest` (`p`) is newer and
    one the state does not keep. A MERGE of its own: DuckLake's takes one UPDATE or DELETE
    action."""
    return f"""
    MERGE INTO {target} k
    USING (SELECT * FROM ({newest}) p WHERE NOT ({state.keeps("p")})) p
    ON ({on})
    WHEN MATCHED AND {state.newer("p", "k")} THEN DELETE
    """


#: What the state's statements of one move take as whole rows into memory (`state_picks`),
#: besides each key's newest row: at most this many late rows, and as many rows that patch
#: checkpoints. Past it (a REST resync of every account after an outage; the simulator's
#: firehose, whose pushes repeat one updatedTime, so every row is at or before the newest
#: checkpoint and the whole move, 555 MiB with raw JSON, was picked), that statement reads
#: the move's rows itself, streamed.
STATE_PICK_ROWS = 20_000


def state_picks(state: State, numbered: str) -> str:
    """The row numbers of a commit (`numbered`: a query of its rows with `ROW_NUMBER`) that
    keeping the state needs, from the keys and times alone: each key's newest
    (`merge_state`), each late row (`late_rows`), and per checkpoint and key the newest row
    at or before the checkpoint (`patch_checkpoints`), each flagged."""
    keys = state.key.split(", ")
    times = list(state.rank_columns)
    rank = state.rank.format(r="k")
    group = ", ".join(f"k.{key}" for key in keys)
    return f"""
    WITH k AS (SELECT {ROW_NUMBER}, {", ".join(keys + times)} FROM {numbered}),
    newest AS (SELECT arg_max(k.{ROW_NUMBER}, {rank}) AS n FROM k GROUP BY {group}),
    late AS (SELECT k.{ROW_NUMBER} AS n FROM k WHERE {is_late("k")}),
    patch AS (
        SELECT arg_max(k.{ROW_NUMBER}, {rank}) AS n FROM k
        JOIN {CHECKPOINTS} c
          ON c.history = '{state.history}' AND k.exchange_ts <= c.checkpoint_ts
        -- An on-time row is newer than every checkpoint: out before the join.
        WHERE k.exchange_ts <= (
            SELECT max(checkpoint_ts) FROM {CHECKPOINTS} WHERE history = '{state.history}')
        GROUP BY c.checkpoint_ts, {group}
    )
    SELECT n, bool_or(is_newest) AS is_newest, bool_or(is_late) AS is_late,
           bool_or(is_patch) AS is_patch
    FROM (
        SELECT n, true AS is_newest, false AS is_late, false AS is_patch FROM newest
        UNION ALL SELECT n, false, true, false FROM late
        UNION ALL SELECT n, false, false, true FROM patch
    )
    GROUP BY n
    """


def slice_cuts(numbered: str, sizes: list[int]) -> str:
    """The `ROW_NUMBER` each slice of `numbered` after the first starts at, in order, for
    slices of `sizes` rows in arrival order."""
    starts, at = [], 0
    for size in sizes[:-1]:
        at += size
        starts.append(str(at))
    return f"""
    SELECT {ROW_NUMBER} FROM (
        SELECT {ROW_NUMBER}, row_number() OVER (ORDER BY {ROW_NUMBER}) - 1 AS i FROM {numbered})
    WHERE i IN ({", ".join(starts)})
    ORDER BY {ROW_NUMBER}
    """


def picked_rows(numbered: str, picks: str) -> str:
    """The rows of `numbered` whose numbers `picks` holds (a table of `n`), whole."""
    return f"""
    SELECT * EXCLUDE ({ROW_NUMBER}) FROM {numbered} r
    SEMI JOIN {picks} p ON r.{ROW_NUMBER} = p.n
    """


def build_state(state: State, history: str | None = None) -> str:
    """The state from the whole history, once: for a store made before the state was kept."""
    newest = state.newest(history or state.history)
    return f"INSERT INTO {state.table} BY NAME SELECT * FROM ({newest}) r WHERE {state.keeps('r')}"


def merge_state(state: State, relation: str, history: str | None = None) -> list[str]:
    """Folds `relation` (the rows a commit inserted into the history) into the state: per
    key, its newest row replaces the state's if newer, or is added. MERGE, not INSERT OR
    REPLACE: a lake's tables have no keys, and DuckLake runs MERGE too. Measured: 20,000 keys
    merged into a state of 20,000, ~6 ms a commit, no growth over 200 commits.

    A state of some keys (`State.kept`) drops a key whose newest row it does not keep (an
    order filled or cancelled), and takes a key it lacks only if no row of `history` (the
    table the history is kept in, the commit's rows in it) is newer: a late `New` of an
    order since closed must not reopen it."""
    newest = state.newest(relation)
    if not state.kept:
        return [
            f"""
            MERGE INTO {state.table} s
            USING ({newest}) c
            ON ({state.on("s", "c")})
            WHEN MATCHED AND {state.newer("c", "s")} THEN UPDATE BY NAME
            WHEN NOT MATCHED THEN INSERT BY NAME
            """
        ]
    on = state.on("k", "p")
    unknown = state.unknown_keys("p", state.table, state.on("k", "r"), history or state.history)
    return [
        _drop_unkept(state, state.table, newest, on),
        f"""
        MERGE INTO {state.table} k
        USING (
            WITH p AS (SELECT * FROM ({newest}) p WHERE {state.keeps("p")}),{unknown}
            SELECT p.* FROM p ANTI JOIN superseded k ON {on}
        ) p
        ON ({on})
        WHEN MATCHED AND {state.newer("p", "k")} THEN UPDATE BY NAME
        WHEN NOT MATCHED THEN INSERT BY NAME
        """,
    ]


#: The reason of the `disconnected` event a start records for an account the store last saw
#: without a clean stop (the service killed, crashed, the box down): see service/downtime.py.
#: The `gaps` view knows it by this text, so it must not change once stores hold it.
DOWNTIME_REASON = "service not running: the previous run recorded no clean stop"


def defined_latest(state: State, where: str = "") -> str:
    """SQL: the state's definition over its history (`where`: of the rows up to an instant):
    per key the newest row, if the state keeps it."""
    newest = f"""
        SELECT * FROM {state.history} {f"WHERE {where}" if where else ""}
        QUALIFY row_number() OVER (PARTITION BY {state.key} ORDER BY {state.order}) = 1"""
    if not state.kept:
        return newest
    return f"SELECT * FROM ({newest}) r WHERE {state.keeps('r')}"


#: Views: plain SQL over the tables, stored with them (a DuckLake catalog keeps them too).
#: `latest_*` and `open_orders` by their definitions, over the whole history (see STATE_VIEWS).
DEFINED_LATEST: list[str] = [
    f"CREATE OR REPLACE VIEW {s.view} AS {defined_latest(s)}" for s in STATES
]

GAPS_VIEW: list[str] = [
    # A gap opens at the first `disconnected` after the account was subscribed and closes at
    # the next `subscribed`; failed reconnects in between belong to the same gap. An open gap
    # has no end. A downtime record (`DOWNTIME_REASON`) opens one too when none is open yet:
    # a first run killed before it ever subscribed leaves no `subscribed` to follow. At one
    # instant `subscribed` sorts first: a downtime record stands at the latest instant the
    # store held, which may be the `subscribed` itself (killed right after subscribing).
    f"""
    CREATE OR REPLACE VIEW gaps AS
    WITH marks AS (
        SELECT account_id, local_ts, event, reason,
               lag(event) OVER w AS previous,
               coalesce(bool_or(event = 'subscribed' OR reason IS NOT DISTINCT FROM
                                '{DOWNTIME_REASON}')
                        OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                        false) AS anchored
        FROM connection_events
        WHERE event IN ('subscribed', 'disconnected')
        WINDOW w AS (PARTITION BY account_id ORDER BY local_ts, event = 'disconnected')
    ),
    starts AS (
        SELECT account_id, local_ts AS start_ts, reason
        FROM marks
        WHERE event = 'disconnected'
          AND (previous = 'subscribed'
               OR (reason IS NOT DISTINCT FROM '{DOWNTIME_REASON}' AND NOT anchored))
    )
    SELECT s.account_id, s.start_ts,
           (SELECT min(e.local_ts) FROM connection_events e
             WHERE e.account_id = s.account_id AND e.event = 'subscribed'
               AND e.local_ts > s.start_ts) AS end_ts,
           s.reason
    FROM starts s
    ORDER BY s.account_id, s.start_ts
    """,
]

# --- The ledger: executions and order versions ----------------------------------------------

#: Executions that trade a quantity at a price: `fills` and `pnl_daily`'s volume. Funding,
#: Delivery and Settle move money (their execPnl counts as realised PnL) but are no trade.
FILL_TYPES = "('Trade', 'AdlTrade', 'BustTrade', 'BlockTrade', 'MovePosition', 'FutureSpread')"
#: The coin an execution's PnL, fee and funding are paid in, from Bybit's symbol names: an
#: inverse contract settles in its base coin (BTCUSD, BTCUSDH26: BTC), a linear one in USDT
#: (BTCUSDT, BTCUSDT-26DEC26) or USDC (BTCPERP, BTC-26DEC26, BTCUSDC); else (spot) the
#: execution's own feeCurrency.
CONTRACT_COIN = """CASE
        WHEN category = 'inverse' THEN regexp_extract(symbol, '^([A-Z0-9]+?)USD', 1)
        WHEN category = 'linear' AND regexp_matches(symbol, 'USDT(-|$)') THEN 'USDT'
        WHEN category IN ('linear', 'option') THEN 'USDC'
    END"""
SETTLE_COIN = f"coalesce({CONTRACT_COIN}, fee_currency)"


def newest_order_versions(where: str = "", only: str = "") -> str:
    """SQL: each order's newest version (of the versions `where` holds of, SQL of `o`), found
    from the keys and `ORDER_RANK` alone, then read whole (those `only` holds of, SQL of
    `o`): the window over whole rows sorts every version's every column. Every order at the
    10 M store: 9.5 against 19.4 s CPU (1,059,329 orders of 3,743,326 versions); its open
    ones at mid-month: 2.1 against 7.3 s. Versions tied in the order (none in practice: the
    same order, time, quantity and arrival) are one row, as in the window."""
    scan = f"WHERE {where}" if where else ""
    kept = " AND ".join(c for c in (where, only) if c)
    return f"""
    WITH newest AS (
        SELECT account_id, order_id, max({ORDER_RANK.format(r="o")}) AS rank
        FROM order_events o {scan}
        GROUP BY account_id, order_id
    )
    SELECT o.* FROM order_events o
    SEMI JOIN newest n
      ON o.account_id = n.account_id AND o.order_id = n.order_id
     AND {ORDER_RANK.format(r="o")} = n.rank
    {f"WHERE {kept}" if kept else ""}
    QUALIFY row_number() OVER (PARTITION BY {ORDER_KEY}) = 1
    """


#: The ledger's views, by their definitions over the history (each order's versions are few:
#: `latest_orders` costs what the orders cost).
LEDGER_VIEWS: list[str] = [
    f"CREATE OR REPLACE VIEW latest_orders AS {newest_order_versions()}",
    f"""
    CREATE OR REPLACE VIEW fills AS
    SELECT * FROM execution_events WHERE exec_type IN {FILL_TYPES}
    """,
    "CREATE OR REPLACE VIEW funding AS SELECT * FROM execution_events WHERE exec_type = 'Funding'",
    # Per account, symbol and UTC day. Signs as Bybit's: a fee (and a funding fee) is paid when
    # positive, received when negative; so the day's net is realised PnL - fees - funding,
    # what the wallet balance moved by (`ledger_tieout`).
    f"""
    CREATE OR REPLACE VIEW pnl_daily AS
    SELECT account_id, category, symbol, ({SETTLE_COIN}) AS coin,
           (exchange_ts AT TIME ZONE 'UTC')::DATE AS day,
           coalesce(sum(exec_pnl) FILTER (WHERE exec_type <> 'Funding'), 0) AS realised_pnl,
           coalesce(sum(exec_fee) FILTER (WHERE exec_type <> 'Funding'), 0) AS fees,
           coalesce(sum(exec_fee) FILTER (WHERE exec_type = 'Funding'), 0) AS funding,
           realised_pnl - fees - funding AS net_pnl,
           coalesce(sum(exec_value) FILTER (WHERE exec_type IN {FILL_TYPES}), 0) AS volume,
           count(*) FILTER (WHERE exec_type IN {FILL_TYPES}) AS fills
    FROM execution_events
    GROUP BY ALL
    ORDER BY account_id, day, category, symbol
    """,
]

#: `open_orders_asof` by its definition, where a store keeps no state (a Parquet tree).
OPEN_ORDERS_ASOF_DEFINED: list[str] = [
    "CREATE OR REPLACE MACRO open_orders_asof(instant) AS TABLE "
    + newest_order_versions("o.exchange_ts <= instant", f"o.order_status IN {OPEN_ORDER_STATUSES}")
]

#: The tie-out of executions against balances, the same for every store kind.
LEDGER_MACROS: list[str] = [
    # Per account, account type and coin: how the wallet balance moved from `start_ts` to
    # `stop_ts` (each instant's `wallets_asof`) against what the executions of (start, stop]
    # say it moved by. `difference` is 0 when the ledger is complete: a missing execution, a
    # fee taken as a rate or a dropped funding row shows there. A wallet row's time is when the
    # exchange sent it and an execution's when it happened, so an execution is in a balance
    # stamped at or after it.
    f"""
    CREATE OR REPLACE MACRO ledger_tieout(start_ts, stop_ts) AS TABLE
    WITH w0 AS (SELECT account_id, account_type, coin, wallet_balance
                FROM wallets_asof(start_ts)),
    w1 AS (SELECT account_id, account_type, coin, wallet_balance FROM wallets_asof(stop_ts)),
    x AS (
        SELECT account_id, ({SETTLE_COIN}) AS coin,
               coalesce(sum(exec_pnl) FILTER (WHERE exec_type <> 'Funding'), 0) AS realised_pnl,
               coalesce(sum(exec_fee) FILTER (WHERE exec_type <> 'Funding'), 0) AS fees,
               coalesce(sum(exec_fee) FILTER (WHERE exec_type = 'Funding'), 0) AS funding,
               count(*) AS executions
        FROM execution_events
        WHERE exchange_ts > start_ts AND exchange_ts <= stop_ts
        GROUP BY ALL
    )
    SELECT *, balance_change - (realised_pnl - fees - funding) AS difference FROM (
        SELECT w1.account_id, w1.account_type, w1.coin,
               w0.wallet_balance AS start_balance, w1.wallet_balance AS stop_balance,
               w1.wallet_balance - coalesce(w0.wallet_balance, 0) AS balance_change,
               coalesce(x.realised_pnl, 0) AS realised_pnl, coalesce(x.fees, 0) AS fees,
               coalesce(x.funding, 0) AS funding, coalesce(x.executions, 0) AS executions
        FROM w1
        LEFT JOIN w0 USING (account_id, account_type, coin)
        LEFT JOIN x ON x.account_id = w1.account_id AND x.coin = w1.coin
    )
    ORDER BY account_id, account_type, coin
    """,
]

#: Views every store derives from its tables, whatever keeps the state.
DERIVED_VIEWS: list[str] = GAPS_VIEW + LEDGER_VIEWS

#: Views stored with the tables (a DuckLake catalog keeps them too), by their definitions.
STORED_VIEWS: list[str] = DEFINED_LATEST + DERIVED_VIEWS


#: Where a store keeps the state, `latest_*` read it instead of their definitions (which a
#: Parquet tree's catalog keeps: it has no transaction to keep a state in).
STATE_VIEWS: list[str] = [
    f"CREATE OR REPLACE VIEW {s.view} AS SELECT * FROM {s.table}" for s in STATES
]
#: The views of a store that keeps the state.
STATE_STORED_VIEWS: list[str] = STATE_VIEWS + DERIVED_VIEWS


# --- The DuckDB file's hot tier (sinks/hot_tier.py) --------------------------------------------

#: Which rows of the hot tier's files have moved into the file: per file, its first
#: `moved_rows` (a move takes whole row groups, so it can end inside a file). Written in each
#: move's own transaction, so a row is in `cold(table)` exactly when it is marked here.
HOT_MOVED = "hot_moved"
CREATE_HOT_MOVED = f"""CREATE TABLE IF NOT EXISTS {HOT_MOVED} (
    table_name VARCHAR NOT NULL, file_name VARCHAR NOT NULL, moved_rows BIGINT NOT NULL)"""
HOT_MOVED_ROWS = f"SELECT table_name, file_name, moved_rows FROM {HOT_MOVED}"

#: The tables of a store made before the hot tier: the history kept under its own name.
BASE_TABLES = """
    SELECT table_name FROM duckdb_tables()
    WHERE database_name = current_database() AND schema_name = current_schema()
"""


def history_views(globs: dict[str, str] | None, state: bool) -> list[str]:
    """A DuckDB file's views named like the history tables, over the rows in the file and,
    with `globs` (table -> the hot tier's files), the rows still in the hot tier; then the
    `latest_*` views (from the state where the store keeps it, with the hot rows folded in).
    Without `globs` (every row moved: a clean stop), the file alone, so it can be copied and
    read anywhere.

    A hot row is one whose file_row_number is at or past its file's `moved_rows`: one hash
    join of the hot rows with the few files `HOT_MOVED` names. `latest_*` over the state and
    the hot rows by a window, not by `State.newest`'s arg_max of whole rows: the window's
    input columns are pruned to what a query selects, while arg_max(row) reads every column
    of every hot row (raw_json too) for each query."""
    statements = []
    for table in TABLES:
        if globs:
            quoted = globs[table].replace("'", "''")
            # A row the exchange sent twice (or a batch delivered again to a restarted
            # writer) is in the hot tier twice until its move drops the second (`DEDUP`):
            # the view keeps the first arrival, as the move does, and each push row without
            # a message id. (A replay of a row already moved is dropped by its own move.)
            dedup = DEDUP[table]
            # Qualified: `hot_moved` has a `table_name` too (and `store_commits` keys on one).
            keys = [f"h.{k}" for k in dedup.keys]
            if dedup.by_message:
                keys += [
                    f"CASE WHEN h.message_id IS NULL THEN {c} END"
                    for c in ("h.filename", "h.file_row_number")
                ]
            statements.append(f"""
            CREATE OR REPLACE VIEW {hot(table)} AS
            SELECT h.* EXCLUDE (filename, file_row_number)
            FROM read_parquet('{quoted}', union_by_name = true, filename = true,
                              file_row_number = true) h
            LEFT JOIN {HOT_MOVED} m
              ON m.table_name = '{table}' AND m.file_name = parse_filename(h.filename)
            WHERE h.file_row_number >= coalesce(m.moved_rows, 0)
            QUALIFY row_number() OVER (
                PARTITION BY {", ".join(keys)}
                ORDER BY h.local_ts, h.filename, h.file_row_number) = 1
            """)
            statements.append(f"""
            CREATE OR REPLACE VIEW {table} AS
            SELECT * FROM {cold(table)} UNION ALL BY NAME SELECT * FROM {hot(table)}
            """)
        else:
            statements.append(f"DROP VIEW IF EXISTS {hot(table)}")
            statements.append(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {cold(table)}")
    if not state:
        return statements + DEFINED_LATEST
    for s in STATES:
        if globs and s.kept:
            # A hot row of a key the state lacks is newest only if no moved row is newer.
            statements.append(f"""
            CREATE OR REPLACE VIEW {s.view} AS
            WITH c AS (
                SELECT * FROM (
                    SELECT * FROM {s.table} UNION ALL BY NAME SELECT * FROM {hot(s.history)})
                QUALIFY row_number() OVER (PARTITION BY {s.key} ORDER BY {s.order}) = 1
            ),{s.unknown_keys("c", s.table, s.on("k", "r"), cold(s.history))}
            SELECT c.* FROM c ANTI JOIN superseded s ON {s.on("s", "c")}
            WHERE {s.keeps("c")}
            """)
        elif globs:
            statements.append(f"""
            CREATE OR REPLACE VIEW {s.view} AS
            SELECT * FROM (
                SELECT * FROM {s.table} UNION ALL BY NAME SELECT * FROM {hot(s.history)})
            QUALIFY row_number() OVER (PARTITION BY {s.key} ORDER BY {s.order}) = 1
            """)
        else:
            statements.append(f"CREATE OR REPLACE VIEW {s.view} AS SELECT * FROM {s.table}")
    return statements


def macros(temporary: bool = False, state: bool = False, hot_tier: bool = False) -> list[str]:
    """The table macros. DuckLake cannot store functions, so a lake's readers create them as
    TEMP macros on their own connection; a DuckDB file stores them. With `state`, `*_asof`
    read the checkpoints (the store keeps them); without, their definitions. `hot_tier`: a
    DuckDB file's history is its `cold` table and its hot tier's view (`history_views`)."""
    scope = "TEMP MACRO" if temporary else "MACRO"
    chosen = _state_macros(hot_tier) if state else _DEFINED_MACROS
    return [statement.replace("MACRO", scope, 1) for statement in chosen]


_MACROS: list[str] = [
    f"""
    CREATE OR REPLACE MACRO positions_asof(instant) AS TABLE
    SELECT * FROM position_snapshots
    WHERE exchange_ts <= instant
    QUALIFY row_number() OVER (PARTITION BY {POSITION_KEY} ORDER BY {POSITION_ORDER}) = 1
    """,
    f"""
    CREATE OR REPLACE MACRO wallets_asof(instant) AS TABLE
    SELECT * FROM wallet_snapshots
    WHERE exchange_ts <= instant
    QUALIFY row_number() OVER (PARTITION BY {WALLET_KEY} ORDER BY {WALLET_ORDER}) = 1
    """,
]


def _since_checkpoint(state: State, at: str, until: str, hot_tier: bool) -> str:
    """CTEs: `c`, the latest checkpoint at or before `at`, and `history`, its rows and the
    history's after it up to `until`: every row `*_asof` needs for an instant in [at, until],
    read without the rest of the history. The rows on time (`ON_TIME_S`) by both times,
    whose bounds from `c` reach the scan as zone-map filters; the late ones from their own
    table; a DuckDB file's hot rows (`hot_tier`) all up to `until`, since only moved rows
    are folded into checkpoints."""
    since = "coalesce((SELECT ts FROM c), '-infinity'::TIMESTAMPTZ)"
    up_to_until = f"exchange_ts <= {until}"
    window = f"exchange_ts > {since} AND {up_to_until}"
    on_time = f"INTERVAL {ON_TIME_S} SECOND"
    history = cold(state.history) if hot_tier else state.history
    recent = ""
    if hot_tier:
        recent = f"UNION ALL BY NAME SELECT * FROM {hot(state.history)} WHERE {up_to_until}"
    return f"""
    c AS (
        SELECT max(checkpoint_ts) AS ts FROM {CHECKPOINTS}
        WHERE history = '{state.history}' AND checkpoint_ts <= {at}
    ),
    history AS (
        SELECT * EXCLUDE (checkpoint_ts) FROM {state.checkpoints}
        WHERE checkpoint_ts = (SELECT ts FROM c)
        UNION ALL BY NAME
        SELECT * FROM {history}
        WHERE {window}
          AND local_ts > {since} - {on_time} AND local_ts <= {until} + {on_time}
        UNION ALL BY NAME
        SELECT * FROM {state.late} WHERE {window}
        {recent}
    )"""


def _asof_from_checkpoints(state: State, hot_tier: bool) -> str:
    # The same rows as the definition, since a checkpoint is the definition at its instant
    # (late rows patch it in their commit).
    since = _since_checkpoint(state, "instant", "instant", hot_tier)
    if not state.kept:
        return f"""
        CREATE OR REPLACE MACRO {state.asof}(instant) AS TABLE
        WITH {since}
        {state.newest("history")}
        """
    # A checkpoint lacks the keys whose newest row there it does not keep (a closed order):
    # a hot row at or before it of such a key is newest only if no moved row up to the
    # instant is newer. (A moved row after the checkpoint is in `history` itself.)
    recheck = ""
    if hot_tier:
        at_checkpoint = (
            f"(SELECT * FROM {state.checkpoints} WHERE checkpoint_ts = (SELECT ts FROM c))"
        )
        recheck = "," + state.unknown_keys(
            "n",
            at_checkpoint,
            state.on("k", "r"),
            cold(state.history),
            where="r.exchange_ts <= (SELECT ts FROM c)",
            until="instant",
        )
    survivors = f"n ANTI JOIN superseded s ON {state.on('s', 'n')}" if hot_tier else "n"
    return f"""
    CREATE OR REPLACE MACRO {state.asof}(instant) AS TABLE
    WITH {since},
    n AS ({state.newest("history")}){recheck}
    SELECT n.* FROM {survivors} WHERE {state.keeps("n")}
    """


def _wallets_every(checkpoints: bool, hot_tier: bool = False) -> str:
    """One row per account, account type, coin and instant from `start_ts` to `stop_ts` every
    `step` (an INTERVAL): that instant's `wallets_asof` row, with the instant in front, from
    the history of the range, started from the checkpoint at or before `start_ts` (where the
    store keeps them), so its cost follows the range asked for. Rows tied on exchange_ts keep
    the latest arrival first, as the views' order does.

    A step of fixed length (hours, minutes, seconds: no days or months, whose length depends
    on the calendar and the zone) numbers the instants: each history row falls in the slot of
    the first instant at or after it, the newest row of each key and slot (one hash
    aggregate) holds for its slot's instant and every one up to the key's next slot
    (`lead`, `generate_series`). The month at 1 h on the 10 M store: 8.1 s against 14.5 s
    for an ASOF JOIN of the grid of keys and instants with the history, which other steps
    still take (and which takes 5 s with no columns but the keys)."""
    state = STATE_OF["wallet_snapshots"]
    if checkpoints:
        source = _since_checkpoint(state, "start_ts", "stop_ts", hot_tier)
    else:
        source = f"history AS (SELECT * FROM {state.history} WHERE exchange_ts <= stop_ts)"
    keys = ", ".join(f"h.{k}" for k in state.key.split(", "))
    return f"""
    CREATE OR REPLACE MACRO wallets_every(start_ts, stop_ts, step) AS TABLE
    WITH {source},
    step_of AS (
        SELECT datepart('year', step) = 0 AND datepart('month', step) = 0
                   AND datepart('day', step) = 0 AS fixed,
               epoch_us(start_ts::TIMESTAMPTZ) AS first_us,
               epoch_us(start_ts::TIMESTAMPTZ + step) - epoch_us(start_ts::TIMESTAMPTZ) AS us,
               epoch_us(stop_ts::TIMESTAMPTZ) AS stop_us
    ),
    slots AS (
        SELECT unnest(arg_max(h, (h.exchange_ts, h.local_ts))),
               greatest(0, (epoch_us(h.exchange_ts) - f.first_us + f.us - 1) // f.us) AS slot
        FROM history h, step_of f
        WHERE f.fixed AND f.us > 0
        GROUP BY {keys}, slot
    ),
    spans AS (
        SELECT *, coalesce(
            lead(slot) OVER (PARTITION BY {state.key} ORDER BY slot) - 1,
            (SELECT (stop_us - first_us) // us FROM step_of)) AS last_slot
        FROM slots
    ),
    newest AS (
        SELECT * FROM history
        WHERE NOT (SELECT fixed AND us > 0 FROM step_of)
        QUALIFY row_number() OVER (
            PARTITION BY {state.key}, exchange_ts ORDER BY local_ts DESC) = 1
    ),
    instants AS (
        SELECT unnest(generate_series(start_ts::TIMESTAMPTZ, stop_ts::TIMESTAMPTZ, step))
            AS instant
    ),
    grid AS (SELECT * FROM (SELECT DISTINCT {state.key} FROM newest) CROSS JOIN instants)
    SELECT make_timestamptz((SELECT first_us FROM step_of) + n * (SELECT us FROM step_of))
               AS instant,
           spans.* EXCLUDE (slot, last_slot)
    FROM spans, LATERAL (SELECT unnest(generate_series(spans.slot, spans.last_slot)) AS n)
    UNION ALL BY NAME
    SELECT g.instant, w.* FROM grid g
    ASOF JOIN newest w
      ON {state.on("g", "w")} AND g.instant >= w.exchange_ts
    """


def _state_macros(hot_tier: bool) -> list[str]:
    return [
        *(_asof_from_checkpoints(s, hot_tier) for s in STATES),
        _wallets_every(True, hot_tier),
        *LEDGER_MACROS,
    ]


_DEFINED_MACROS: list[str] = [
    *_MACROS,
    _wallets_every(False),
    *OPEN_ORDERS_ASOF_DEFINED,
    *LEDGER_MACROS,
]

#: Everything a store ships: views and table macros.
VIEWS: list[str] = STORED_VIEWS + macros()


#: The column of row numbers the dedup query answers with (see `new_row_numbers`).
ROW_NUMBER = "_row"


def new_row_numbers(
    table: str, relation: str, bounds_us: tuple[int, int] | None, stored: str | None = None
) -> str:
    """The `ROW_NUMBER`s of `relation`'s rows that `table` does not hold yet, each once (its
    first row in `relation` is kept); for positions and wallets, rows without a message id all
    count as new.

    `relation` needs only `ROW_NUMBER` and the table's dedup keys: the rows themselves are
    inserted apart, straight from Arrow. Carried through this query's window and join, every
    column (raw_json too) was materialised on the way, which cost ~30% on top of the insert.

    `bounds_us` is the batch's range of the table's `Dedup.range` column in epoch
    microseconds. It is written into the query as constants because only a constant range
    reaches the table scan as a filter, where DuckDB skips every row group outside it: with
    `(SELECT min(..) FROM relation)` the scan read the whole table on every commit, so commits
    grew slower as the store grew."""
    dedup = DEDUP[table]
    key_list = ", ".join(dedup.keys)
    match = " AND ".join(f"t.{k} IS NOT DISTINCT FROM b.{k}" for k in dedup.keys)
    # make_timestamptz(µs) is epoch-based, so the session's TimeZone cannot shift the range.
    low, high = bounds_us if bounds_us else (0, -1)  # no time: nothing to match
    always_new = "b.message_id IS NULL OR " if dedup.by_message else ""
    return f"""
    SELECT b.{ROW_NUMBER} FROM (
        SELECT {ROW_NUMBER}, {key_list},
               row_number() OVER (PARTITION BY {key_list} ORDER BY {ROW_NUMBER}) AS _dup
        FROM {relation}
    ) b
    WHERE ({always_new}b._dup = 1)
      AND ({always_new}NOT EXISTS (
            SELECT 1 FROM {stored or table} t
            WHERE t.{dedup.range} BETWEEN make_timestamptz({int(low)}::BIGINT)
                                      AND make_timestamptz({int(high)}::BIGINT)
              AND {match}))
    ORDER BY b.{ROW_NUMBER}
    """


def hot_rows(parts: list[tuple[object, int, int, int]]) -> str:
    """The rows of a DuckDB file's move, read by DuckDB itself from the hot tier's files:
    `parts` is (file, first row, rows, the file's rows) in arrival order (`HotTier.plan`).
    `ROW_NUMBER` keeps that order: the flush's number (the file's name) times 2^32 plus the
    row in the file.

    DuckDB streams the files through the move's statements: the rows are never whole in
    memory at once. Read back into Arrow first (one move: 2 x 122,880 rows of a table), the
    writer held 650 MiB of Arrow memory at once and 1.6 GiB in all at 100 accounts'
    saturation. Only a part that is not a whole file gets a condition (the first may start
    inside its file, the last end inside its own): one condition per file, on every row of
    every scan, made a move's position MERGE cost 5.8 s CPU per 122,880 rows."""

    def quoted(path: object) -> str:
        return "'" + str(path).replace("'", "''") + "'"

    files = ", ".join(quoted(path) for path, _, _, _ in parts)
    skip = []
    for path, first, count, rows in parts:
        if first > 0:
            skip.append(f"(h.filename = {quoted(path)} AND h.file_row_number < {int(first)})")
        if first + count < rows:
            end = int(first + count)
            skip.append(f"(h.filename = {quoted(path)} AND h.file_row_number >= {end})")
    where = f"WHERE NOT ({' OR '.join(skip)})" if skip else ""
    return f"""
    SELECT h.* EXCLUDE (filename, file_row_number),
           CAST(parse_filename(h.filename, true) AS BIGINT) * 4294967296 + h.file_row_number
               AS {ROW_NUMBER}
    FROM read_parquet([{files}], union_by_name = true, filename = true,
                      file_row_number = true) h
    {where}
    """


def bounds_us(relation: str, column: str) -> str:
    """Rows, and the range of `column` in epoch microseconds (NULLs when it has none)."""
    return f"SELECT count(*), epoch_us(min({column})), epoch_us(max({column})) FROM {relation}"


def insert_rows(table: str, relation: str) -> str:
    # By name: a store made by an earlier version has its newer columns at the end (ALTER
    # TABLE ADD COLUMN appends), not where the decoder's schema has them.
    return f"INSERT INTO {table} BY NAME SELECT * FROM {relation}"


#: Positions the store last saw open: a restarted collector reads each of them by symbol on
#: its first resync, so one that closed while nothing was connected is seen closed.
OPEN_POSITIONS = """
    SELECT account_id, category, symbol, position_idx
    FROM latest_positions
    WHERE size IS NOT NULL AND size <> 0
"""

#: The tables whose rows show when the service last watched an account (with
#: `connection_events`, which every store has had).
RECORD_TABLES = (
    "position_snapshots",
    "wallet_snapshots",
    "execution_events",
    "order_events",
    "rejects",
)

#: The store's tables and views (a store made by an earlier version lacks the newer ones
#: until its writer's first start adds them, and a start reads the store before that).
RELATIONS = "SELECT table_name FROM information_schema.tables"


def last_records(present: set[str]) -> str:
    """Per account, the latest instant the store holds (any of `RECORD_TABLES` the store has,
    `present` being its `RELATIONS`, and `connection_events`: a row or an event shows the
    service was running then) in epoch µs, and the latest `disconnected` event's instant and
    reason: a start records the downtime since then unless that was a clean stop (see
    service/downtime.py). Reads every row's `account_id` and `local_ts`: the tables' zone maps
    do not help a max per account, and a cut-off (the last N days) would miss an account
    whose last record is older; two narrow columns are the cheapest scan that is always
    right."""
    rows = "".join(
        f"""
        UNION ALL
        SELECT account_id, max(local_ts), NULL, NULL FROM {table} GROUP BY account_id"""
        for table in RECORD_TABLES
        if table in present
    )
    return f"""
    SELECT account_id,
           epoch_us(max(last_ts)) AS last_us,
           epoch_us(max(disconnected_ts)) AS disconnected_us,
           arg_max(disconnected_reason, disconnected_ts) AS disconnected_reason
    FROM (
        SELECT account_id, max(local_ts) AS last_ts,
               max(local_ts) FILTER (WHERE event = 'disconnected') AS disconnected_ts,
               arg_max(reason, local_ts) FILTER (WHERE event = 'disconnected')
                   AS disconnected_reason
        FROM connection_events GROUP BY account_id{rows}
    )
    GROUP BY account_id
    """


#: How far before the store's last record of an account a restart takes its ledger to be
#: complete: rows in flight when a service was killed (in a collector, the relay, a writer
#: waiting on a failing store) were taken at most about this long before the newest row
#: committed. Reading 5 more minutes is one request per category; missing them is a hole.
IN_FLIGHT_MARGIN_S = 300


def ledger_complete(present: set[str]) -> str:
    """Per account, up to when the store holds its ledger complete (epoch ms), for a
    restart's backfill (see engine/ledger.rs): the ledger is complete up to the loss of the
    connection whose backfill last succeeded (`backfilled`; a backfill is cut off with its
    connection, so that loss is the first `disconnected` after it, a clean stop's or a
    downtime record's), and never later than the last record (`last_records(present)`) less
    `IN_FLIGHT_MARGIN_S`. An account that never finished a backfill is absent: a first
    start, read the configured depth back."""
    return f"""
    WITH backfilled AS (
        SELECT account_id, max(local_ts) AS ts FROM connection_events
        WHERE event = 'backfilled' GROUP BY account_id
    ),
    lost AS (
        SELECT e.account_id, min(e.local_ts) AS ts
        FROM connection_events e JOIN backfilled b USING (account_id)
        WHERE e.event = 'disconnected' AND e.local_ts > b.ts
        GROUP BY e.account_id
    ),
    last_record AS (
        SELECT account_id, make_timestamptz(last_us) AS ts FROM ({last_records(present)}))
    SELECT b.account_id,
           epoch_ms(least(coalesce(l.ts, 'infinity'::TIMESTAMPTZ),
                          r.ts - INTERVAL {IN_FLIGHT_MARGIN_S} SECOND))
    FROM backfilled b
    JOIN last_record r USING (account_id)
    LEFT JOIN lost l USING (account_id)
"""


#: The queries `ingestor query NAME` runs: NAME -> (the line `query --help` shows, the SQL).
NAMED_QUERIES: dict[str, tuple[str, str]] = {
    "latest-positions": (
        "each position's latest state: side, size, prices, unrealised PnL",
        """
        SELECT account_id, category, symbol, position_idx, side, size, entry_price,
               mark_price, unrealised_pnl, exchange_ts, source
        FROM latest_positions ORDER BY account_id, category, symbol, position_idx
        """,
    ),
    "latest-wallets": (
        "each coin's latest balance and equity, with its account's totals",
        """
        SELECT account_id, account_type, coin, wallet_balance, equity, usd_value,
               total_equity, total_available_balance, exchange_ts, source
        FROM latest_wallets ORDER BY account_id, account_type, coin
        """,
    ),
    "gaps": (
        "every gap in the record: from a drop until subscribed again",
        "SELECT * FROM gaps",
    ),
    "latest-orders": (
        "each order's latest version: status, price, quantities filled and left",
        """
        SELECT account_id, category, symbol, order_id, side, order_type, order_status, price,
               qty, cum_exec_qty, leaves_qty, avg_price, exchange_ts, source
        FROM latest_orders ORDER BY account_id, exchange_ts, order_id
        """,
    ),
    "open-orders": (
        "the orders working now: status, price, quantities filled and left",
        """
        SELECT account_id, category, symbol, order_id, side, order_type, order_status, price,
               qty, cum_exec_qty, leaves_qty, avg_price, exchange_ts, source
        FROM open_orders ORDER BY account_id, exchange_ts, order_id
        """,
    ),
    "pnl-daily": (
        "per account, symbol and UTC day: realised PnL, fees, funding, net, volume, fills",
        "SELECT * FROM pnl_daily",
    ),
    "ledger-gaps": (
        "every window the ledger may be missing rows in, and why",
        "SELECT * FROM ledger_gaps ORDER BY account_id, kind, start_ts",
    ),
}


# --- The Parquet tree -------------------------------------------------------------------------

#: Every Parquet file carries each row's identity: the name of the file the writer first put it
#: in and its index there. Compaction copies rows with their identity, so a row that is, for a
#: moment, in both a merged file and its input is recognised as one row.
ORIGIN_FILE = "_origin_file"
ORIGIN_ROW = "_origin_row"


def parquet_table_view(table: str, glob: str) -> str:
    """A view named like the table over every file of the tree.

    One scan (one directory listing) per query; rows are kept once per natural key (`DEDUP`:
    what the DuckDB store's insert drops), which also keeps a row once while it is in both a
    merged file and its input. Identical rows share their `date`, so it leads each partition
    key and a filter on `date` still prunes files."""
    dedup = DEDUP[table]
    keys = ["date", *dedup.keys]
    if dedup.by_message:
        # Push rows without a message id (stores written before REST ids) are each their own.
        keys += [f"CASE WHEN message_id IS NULL THEN {c} END" for c in (ORIGIN_FILE, ORIGIN_ROW)]
    partition = ", ".join(keys)
    quoted = glob.replace("'", "''")
    source = (
        f"read_parquet('{quoted}', hive_partitioning = true, union_by_name = true, "
        "hive_types = {'date': DATE})"
    )
    return f"""
    CREATE OR REPLACE VIEW {table} AS
    SELECT * EXCLUDE ({ORIGIN_FILE}, {ORIGIN_ROW}) FROM {source}
    QUALIFY row_number() OVER (
        PARTITION BY {partition} ORDER BY local_ts, {ORIGIN_FILE}, {ORIGIN_ROW}) = 1
    """


# --- The report (report.py) -------------------------------------------------------------------

# The SQL of `ingestor report` (python/ingestor/report.py), in one place.
#
# Every query reads the shipped views and macros (`latest_*`, `positions_asof`,
# `wallets_asof`, `wallets_every`, `pnl_daily`, `gaps`) or the small event tables
# (`connection_events`, `ledger_gaps`, `rejects`, `store_commits`), never a reimplementation
# of them, so the report answers what `ingestor query` answers and costs what those cost.
#
# Parameters are DuckDB named parameters: `$start`, `$stop` (TIMESTAMPTZ), `$step`
# (INTERVAL) and `$accounts` (VARCHAR[]; empty: every account). Amounts stay DECIMAL(38,18)
# in every total; a column meant only for a chart is cast to DOUBLE here, at the plotting edge,
# and named `*_plot`.
#: Rows of the accounts asked for (`--accounts`), or of every account.
REPORT_ACCOUNT_FILTER = (
    "(len($accounts::VARCHAR[]) = 0 OR list_contains($accounts::VARCHAR[], account_id))"
)

#: The relations each section needs; a store of an earlier version lacks the ledger's, and
#: its report says so instead of failing.
REPORT_LEDGER_RELATIONS = ("execution_events", "pnl_daily")
REPORT_LEDGER_GAP_RELATIONS = ("ledger_gaps",)
#: A store made before the writer recorded its commits has no commit delay to show.
REPORT_COMMIT_RELATIONS = (STORE_COMMITS,)

#: The coin a position's value, PnL and margin are in, by Bybit's symbol names as queries.py's
#: SETTLE_COIN reads them for executions (inverse: the base coin; linear: USDT or USDC); a
#: position row has no fee currency to fall back on.
REPORT_POSITION_COIN = CONTRACT_COIN

#: The store's relations and table macros, to know which sections it can answer.
REPORT_RELATIONS = """
SELECT table_name FROM information_schema.tables
UNION
SELECT function_name FROM duckdb_functions() WHERE function_type = 'table_macro'
"""


def report_store_range(ledger: bool, commits: bool = False) -> str:
    """The first and last instant the store holds, whatever table holds it (with `commits`,
    `store_commits` too: a run's last flushes become readable after its last row arrived,
    and the default range should show their delay)."""
    parts = [
        "SELECT min(exchange_ts) AS lo, max(exchange_ts) AS hi FROM wallet_snapshots",
        "SELECT min(exchange_ts), max(exchange_ts) FROM position_snapshots",
        "SELECT min(local_ts), max(local_ts) FROM connection_events",
    ]
    if ledger:
        parts.append("SELECT min(exchange_ts), max(exchange_ts) FROM execution_events")
    if commits:
        parts.append(f"SELECT min(local_ts), max(local_ts) FROM {STORE_COMMITS}")
    return f"SELECT min(lo), max(hi) FROM ({' UNION ALL '.join(parts)})"


def report_store_accounts(ledger: bool) -> str:
    """Every account the store holds anything of (the states, the events, the ledger)."""
    parts = [
        "SELECT account_id FROM latest_wallets",
        "SELECT account_id FROM latest_positions",
        "SELECT account_id FROM connection_events",
    ]
    if ledger:
        parts.append("SELECT account_id FROM execution_events")
    return f"""
    SELECT DISTINCT account_id FROM ({" UNION ALL ".join(parts)})
    WHERE account_id IS NOT NULL AND {REPORT_ACCOUNT_FILTER}
    ORDER BY account_id
    """


#: An account type's equity at one wallet row set: Bybit's totalEquity (the account's, in
#: USD, repeated on every coin row: the newest push's value) or, where the account type has
#: none (classic accounts), the sum of its coins' usdValue.
_REPORT_ACCOUNT_TYPE_EQUITY = """
coalesce(arg_max(total_equity, exchange_ts), sum(usd_value))
"""

#: Equity per account at every instant of the series (`wallets_every`), for the chart.
REPORT_EQUITY_SERIES = f"""
SELECT account_id, instant, sum(equity)::DOUBLE AS equity_plot FROM (
    SELECT instant, account_id, account_type, {_REPORT_ACCOUNT_TYPE_EQUITY} AS equity
    FROM wallets_every($start, $stop, $step)
    WHERE {REPORT_ACCOUNT_FILTER}
    GROUP BY ALL
)
GROUP BY ALL
ORDER BY account_id, instant
"""

#: Equity per account at the range's end, exact (the report's printed totals).
REPORT_EQUITY_AT_STOP = f"""
SELECT account_id, sum(equity) AS equity FROM (
    SELECT account_id, account_type, {_REPORT_ACCOUNT_TYPE_EQUITY} AS equity
    FROM wallets_asof($stop)
    WHERE {REPORT_ACCOUNT_FILTER}
    GROUP BY ALL
)
GROUP BY ALL
ORDER BY account_id
"""

#: The ledger per account, coin and UTC day, for every day the range touches (`pnl_daily`
#: is per day). Exact.
REPORT_PNL_DAILY = f"""
SELECT account_id, coin, day,
       sum(realised_pnl) AS realised_pnl, sum(fees) AS fees, sum(funding) AS funding,
       sum(net_pnl) AS net_pnl, sum(fills)::BIGINT AS fills
FROM pnl_daily
WHERE day BETWEEN ($start AT TIME ZONE 'UTC')::DATE AND ($stop AT TIME ZONE 'UTC')::DATE
  AND {REPORT_ACCOUNT_FILTER}
GROUP BY ALL
ORDER BY account_id, coin, day
"""


def report_positions(latest: bool) -> str:
    """Open positions at the range's end: `latest_positions` (the state) when the range ends
    at the store's end, else `positions_asof($stop)`. Distance to liquidation is the mark's
    distance to the liquidation price, in percent of the mark."""
    source = "latest_positions" if latest else "positions_asof($stop)"
    return f"""
    SELECT account_id, category, symbol, side, size, entry_price, mark_price,
           unrealised_pnl, liq_price, position_value, ({REPORT_POSITION_COIN}) AS coin,
           CASE WHEN liq_price > 0 AND mark_price > 0
                THEN round(100 * abs(mark_price - liq_price) / mark_price, 2)
           END AS liq_distance_pct
    FROM {source}
    WHERE size <> 0 AND {REPORT_ACCOUNT_FILTER}
    ORDER BY account_id, category, symbol, position_idx
    """


def report_exposure(latest: bool) -> str:
    """Long, short and net notional per symbol across the accounts, in the symbol's settle
    coin (positionValue's unit). Exact."""
    return f"""
    SELECT category, symbol, coin,
           coalesce(sum(position_value) FILTER (WHERE side = 'Buy'), 0) AS long_notional,
           coalesce(sum(position_value) FILTER (WHERE side = 'Sell'), 0) AS short_notional,
           long_notional - short_notional AS net_notional,
           count(DISTINCT account_id) AS accounts
    FROM ({report_positions(latest)})
    GROUP BY ALL
    ORDER BY category, symbol
    """


#: Per account, what the capture covers: from its first `subscribed` to the last instant
#: the store holds for it (its latest event or state row), cut to the range.
REPORT_COVERAGE_SPANS = f"""
WITH seen AS (
    SELECT account_id, min(local_ts) FILTER (WHERE event = 'subscribed') AS first_ts,
           max(local_ts) AS last_ts
    FROM connection_events GROUP BY ALL
    UNION ALL SELECT account_id, NULL, max(local_ts) FROM latest_wallets GROUP BY ALL
    UNION ALL SELECT account_id, NULL, max(local_ts) FROM latest_positions GROUP BY ALL
)
SELECT account_id, greatest(min(first_ts), $start) AS start_ts,
       least(max(last_ts), $stop) AS end_ts
FROM seen
WHERE {REPORT_ACCOUNT_FILTER}
GROUP BY ALL
HAVING min(first_ts) IS NOT NULL AND min(first_ts) <= $stop AND max(last_ts) >= $start
ORDER BY account_id
"""

#: Every stream gap (`gaps`) that overlaps the range, cut to it (an open gap runs to its end).
REPORT_STREAM_GAPS = f"""
SELECT account_id, greatest(start_ts, $start) AS start_ts,
       least(coalesce(end_ts, $stop), $stop) AS end_ts, end_ts IS NULL AS open, reason
FROM gaps
WHERE start_ts <= $stop AND coalesce(end_ts, $stop) >= $start AND {REPORT_ACCOUNT_FILTER}
ORDER BY account_id, start_ts
"""

#: Every window the ledger cannot be known complete in (`ledger_gaps`) overlapping the range.
REPORT_LEDGER_GAPS = f"""
SELECT account_id, kind, greatest(start_ts, $start) AS start_ts,
       least(coalesce(end_ts, $stop), $stop) AS end_ts, reason
FROM ledger_gaps
WHERE start_ts <= $stop AND coalesce(end_ts, $stop) >= $start AND {REPORT_ACCOUNT_FILTER}
ORDER BY account_id, start_ts, kind
"""

#: The REST backfills of the range: done, or failed after their retries.
REPORT_BACKFILLS = f"""
SELECT account_id, local_ts, event = 'backfilled' AS ok, reason
FROM connection_events
WHERE event IN ('backfilled', 'backfill_failed')
  AND local_ts BETWEEN $start AND $stop AND {REPORT_ACCOUNT_FILTER}
ORDER BY account_id, local_ts
"""

#: Rejected frames by reason.
REPORT_REJECTS = f"""
SELECT reason, count(*) AS rejects, count(DISTINCT account_id) AS accounts
FROM rejects
WHERE local_ts BETWEEN $start AND $stop AND {REPORT_ACCOUNT_FILTER}
GROUP BY ALL
ORDER BY rejects DESC, reason
"""

#: Reconnects: a `connected` that follows an earlier one of the same account (the first
#: connection of the account's history is none), per account and per step of the range.
_REPORT_RECONNECTS = """
WITH c AS (
    SELECT account_id, local_ts,
           lag(local_ts) OVER (PARTITION BY account_id ORDER BY local_ts) AS previous
    FROM connection_events WHERE event = 'connected'
)
SELECT * FROM c
WHERE previous IS NOT NULL AND local_ts BETWEEN $start AND $stop
"""
REPORT_RECONNECTS_PER_ACCOUNT = f"""
SELECT account_id, count(*) AS reconnects FROM ({_REPORT_RECONNECTS})
WHERE {REPORT_ACCOUNT_FILTER}
GROUP BY ALL
ORDER BY reconnects DESC, account_id
"""
REPORT_RECONNECTS_OVER_TIME = f"""
SELECT time_bucket($step, local_ts, $start) AS bucket, count(*) AS reconnects
FROM ({_REPORT_RECONNECTS})
WHERE {REPORT_ACCOUNT_FILTER}
GROUP BY ALL
ORDER BY bucket
"""


def report_capture_lag(ledger: bool) -> str:
    """The exchange-to-capture lag per table and step of the range: a row's `local_ts` (its
    arrival) minus its `creation_ts` (the push's creationTime), in ms, REST rows aside (their
    creation time is the answer's). What follows arrival, up to the commit, is
    `report_commit_delay`."""
    tables = ["position_snapshots", "wallet_snapshots"]
    if ledger:
        tables.append("execution_events")
    parts = " UNION ALL ".join(
        f"SELECT '{t}' AS table_name, local_ts, "
        f"epoch_us(local_ts) - epoch_us(creation_ts) AS lag_us FROM {t} "
        f"WHERE source = 'ws' AND local_ts BETWEEN $start AND $stop AND {REPORT_ACCOUNT_FILTER}"
        for t in tables
    )
    return f"""
    SELECT table_name, time_bucket($step, local_ts, $start) AS bucket,
           approx_quantile(lag_us, 0.5) / 1000.0 AS p50_ms,
           approx_quantile(lag_us, 0.99) / 1000.0 AS p99_ms,
           max(lag_us) / 1000.0 AS max_ms, count(*) AS rows
    FROM ({parts})
    GROUP BY ALL
    ORDER BY table_name, bucket
    """


def report_commit_delay(over_time: bool) -> str:
    """The writer's commit delay, from `store_commits`: per table (and, with `over_time`, per
    step of the range, by the commit's instant), over the flushes committed in the range that
    added rows.

    A flush's delay is its commit instant (`local_ts`: its rows readable) minus its oldest
    row's arrival (`oldest_local_ts`, when the collector received the frame), in µs: the
    longest any row of that flush waited, through the collector's batching
    (`flush_interval`), the relay, the writer's gathering and the store's write. Every other
    row of the flush waited less (as little as `local_ts - newest_local_ts`), so the numbers
    are an upper bound of each row's delay. The quantiles are weighted by the flush's rows:
    `p99_us` is the smallest delay such that the flushes at or under it hold at least 99% of
    the rows (so "99% of the rows were readable within p99_us of their arrival, at most"),
    exact, not approximate (integers compared, no floats); `max_us` is the worst flush's.
    The box's whole capture: a flush has no account, so `--accounts` does not narrow it."""
    bucket = "time_bucket($step, local_ts, $start)" if over_time else "NULL::TIMESTAMPTZ"
    return f"""
    WITH f AS (
        SELECT table_name, {bucket} AS bucket, rows,
               epoch_us(local_ts) - epoch_us(oldest_local_ts) AS delay_us
        FROM {STORE_COMMITS}
        WHERE rows > 0 AND local_ts BETWEEN $start AND $stop
    ),
    w AS (
        SELECT *,
               sum(rows) OVER (PARTITION BY table_name, bucket ORDER BY delay_us
                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS upto,
               sum(rows) OVER (PARTITION BY table_name, bucket) AS total
        FROM f
    )
    SELECT table_name, bucket,
           min(delay_us) FILTER (WHERE upto * 100 >= total * 50) AS p50_us,
           min(delay_us) FILTER (WHERE upto * 100 >= total * 99) AS p99_us,
           max(delay_us) AS max_us, count(*) AS flushes, sum(rows)::BIGINT AS rows
    FROM w
    GROUP BY ALL
    ORDER BY table_name, bucket
    """
