"""A store written by an earlier version (before Bybit's newer fields became columns) keeps
working: opened by today's writer it gets the new columns and the new table (`store_commits`,
the writer's record of its commits), loses no row, and takes new rows with their values; its
old rows read NULL there. Every store kind, real files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

import ingestor
from ingestor import queries
from ingestor.sinks import open_reader, open_store
from tests.test_duckdb_store import position_push

#: Columns the previous schema did not have (issue 14: Bybit's newer fields).
NEW_COLUMNS = {
    "position_snapshots": ("break_even_price", "open_ts", "delta", "gamma", "vega", "theta"),
    "wallet_snapshots": ("col_res",),
}


#: The tables the previous version made: all but the writer's record of its commits.
PREVIOUS_TABLES = tuple(t for t in queries.TABLES if t != queries.STORE_COMMITS)


def previous_schema(table: str) -> pa.Schema:
    schema = ingestor.schemas()[table]
    for name in NEW_COLUMNS.get(table, ()):
        schema = schema.remove(schema.get_field_index(name))
    return schema


def as_previous(table: str, batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch.select(previous_schema(table).names)


def with_new_fields(message_id: str, updated_ms: int, seq: int) -> bytes:
    push = orjson.loads(position_push(message_id, updated_ms, "2", seq))
    push["data"][0].update(breakEvenPrice="30123.45", openTime=1_700_000_000_000)
    return orjson.dumps(push)


def make_previous_store(kind: str, path: Path) -> None:
    """The tables as the previous version made them, with one row written by it."""
    old = ingestor.decode([position_push("old-1", 1_700_000_000_000, "1", 1)], account_id="a")
    rows = as_previous("position_snapshots", old["position_snapshots"])
    if kind == "parquet":
        import duckdb

        from ingestor.sinks.parquet_files import CATALOG, table_glob
        from ingestor.sinks.parquet_store import ParquetStore

        store = ParquetStore(path)
        store.root.mkdir()
        day = rows.column("exchange_ts")[0].as_py().date()
        for table in PREVIOUS_TABLES:
            store._write(table, day, previous_schema(table).empty_table())
        store._write("position_snapshots", day, pa.Table.from_batches([rows]))
        # Its catalog, as the previous version built it: views of its own tables only.
        with duckdb.connect(str(store.root / CATALOG)) as con:
            for table in PREVIOUS_TABLES:
                con.execute(queries.parquet_table_view(table, table_glob(store.root, table)))
            for statement in queries.VIEWS:
                con.execute(statement)
        return
    create = [queries.create_table(t, previous_schema(t)) for t in PREVIOUS_TABLES]
    if kind == "duckdb":
        import duckdb

        with duckdb.connect(str(path)) as con:
            for statement in create:
                con.execute(statement)
            con.register("old_rows", rows)
            con.execute("INSERT INTO position_snapshots SELECT * FROM old_rows")
        return
    from ingestor.sinks.ducklake_store import connect, lake

    con = connect(lake(path), read_only=False)
    try:
        for statement in create:
            con.execute(statement)
        con.register("old_rows", rows)
        con.execute("INSERT INTO position_snapshots SELECT * FROM old_rows")
    finally:
        con.close()


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "ducklake"])
def test_a_store_of_the_previous_schema_gets_the_new_columns_and_keeps_its_rows(
    tmp_path, kind, caplog
):
    path = tmp_path / {"duckdb": "old.duckdb", "parquet": "old", "ducklake": "old.lake"}[kind]
    make_previous_store(kind, path)
    store = open_store(kind, path)
    with caplog.at_level("WARNING"):
        store.create()
    if kind != "parquet":  # a Parquet tree's files are never rewritten; the views union them
        assert "made by an earlier version: added 7 columns" in caplog.text
    new = ingestor.decode([with_new_fields("new-1", 1_700_000_001_000, 2)], account_id="a")
    assert store.write([("position_snapshots", new["position_snapshots"])]) == 1
    assert store.write([(queries.STORE_COMMITS, commit_record(1))]) == 1
    store.close()
    with open_reader(kind, path) as con:
        rows = con.execute(
            "SELECT message_id, size, break_even_price, open_ts IS NOT NULL, delta "
            "FROM position_snapshots ORDER BY seq"
        ).fetchall()
        assert rows == [
            ("old-1", Decimal(1), None, False, None),
            ("new-1", Decimal(2), Decimal("30123.45"), True, None),
        ]
        latest = con.execute("SELECT message_id, break_even_price FROM latest_positions").fetchall()
        assert latest == [("new-1", Decimal("30123.45"))]
        wallet_columns = {r[0] for r in con.execute("DESCRIBE wallet_snapshots").fetchall()}
        assert "col_res" in wallet_columns
        # The writer's record of its commits, new to this version, is there and takes rows.
        assert con.execute("SELECT table_name, rows FROM store_commits").fetchall() == [
            ("position_snapshots", 1)
        ]


def commit_record(rows: int) -> pa.RecordBatch:
    at = pa.array([1_700_000_002_000_000], pa.timestamp("us", "UTC"))
    columns = {
        "local_ts": at,
        "table_name": ["position_snapshots"],
        "rows": [rows],
        "oldest_local_ts": at,
        "newest_local_ts": at,
        "writer_pid": [1],
        "flush_seq": [1],
        "write_us": [10],
    }
    return pa.RecordBatch.from_pydict(columns, schema=ingestor.schemas()[queries.STORE_COMMITS])


def test_a_second_start_adds_nothing(tmp_path, caplog):
    path = tmp_path / "old.duckdb"
    make_previous_store("duckdb", path)
    open_store("duckdb", path).create()
    assert "earlier version" in caplog.text
    caplog.clear()
    open_store("duckdb", path).create()
    assert "earlier version" not in caplog.text
