"""How `ingestor query` shows an answer: a table for people, CSV, JSON Lines or Parquet.

The store keeps amounts as DECIMAL(38,18) and times as UTC microseconds; only what is shown is
normalised, never through floats:

- an amount prints as people write it: `0.22223041`, `100`, `-25.06579337` (trailing zeros
  and a trailing point dropped, never exponent notation);
- a time with a zone prints in UTC, with the offset: `2023-10-19 02:25:17.038+00:00` in the
  table, ISO 8601 `2023-10-19T02:25:17.038+00:00` in CSV and JSON (a time without a zone is
  printed as it is, without an offset);
- CSV: a header row, NULL as an empty field; JSON: JSON Lines (one object a row, keys in the
  answer's column order), amounts as strings so no reader rounds them, NULL as null;
- Parquet keeps the answer's own types (DECIMAL(38,18), TIMESTAMPTZ as UTC timestamps).
"""

from __future__ import annotations

import csv
import os
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
import pyarrow as pa

if TYPE_CHECKING:
    import duckdb

FORMATS = ("table", "csv", "json", "parquet")
#: Rows the table shows when no --limit is given (the other formats write every row).
TABLE_ROWS = 1000
#: The time zone the reader's session shows TIMESTAMPTZ in (also what SQL such as
#: `exchange_ts::DATE` or `strftime` sees).
DISPLAY_TIME_ZONE = "UTC"
#: Rows fetched at a time when streaming CSV or JSON.
BATCH_ROWS = 10_000
NULL_TEXT = "NULL"


def use_display_time_zone(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"SET TimeZone = '{DISPLAY_TIME_ZONE}'")


# --- Values -------------------------------------------------------------------------------------


def decimal_text(value: Decimal) -> str:
    """`0.222230410000000000` -> `0.22223041`, `100.000` -> `100`; exact, never `1E+2`."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def time_text(value: datetime | time, sep: str = "T") -> str:
    """ISO 8601; an aware datetime in UTC with its offset. Fractions as exact as stored, without
    needless zeros: `.038` for milliseconds, `.038123` for microseconds, none for whole ones."""
    if value.microsecond == 0:
        spec = "seconds"
    elif value.microsecond % 1000 == 0:
        spec = "milliseconds"
    else:
        spec = "microseconds"
    if isinstance(value, time):
        return value.isoformat(timespec=spec)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.isoformat(sep=sep, timespec=spec)


def blob_text(value: bytes) -> str:
    """As DuckDB casts a BLOB to text: printable ASCII as is, other bytes as `\\xNN`."""
    return "".join(chr(b) if 32 <= b < 127 and b != 0x5C else f"\\x{b:02X}" for b in value)


def interval_text(value: pa.MonthDayNano) -> str:
    """ISO 8601 duration: `P1M3DT1.5S`."""
    months, days, nanos = value.months, value.days, value.nanoseconds
    seconds = decimal_text(Decimal(nanos) / 1_000_000_000)
    text = "P" + (f"{months}M" if months else "") + (f"{days}D" if days else "")
    if nanos or text == "P":
        text += f"T{seconds}S"
    return text


def json_value(value: Any, sep: str = "T") -> Any:
    """The value as JSON can carry it exactly: decimals and times as strings."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime | time):
        return time_text(value, sep)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return blob_text(value)
    if isinstance(value, pa.MonthDayNano):
        return interval_text(value)
    if isinstance(value, dict):
        return {str(k): json_value(v, sep) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # pyarrow gives a MAP as a list of (key, value) pairs.
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {str(json_value(k, sep)): json_value(v, sep) for k, v in value}
        return [json_value(v, sep) for v in value]
    return str(value)


def cell_text(value: Any, sep: str = "T", null: str = "") -> str:
    """One field of CSV (`sep` "T") or of the table (`sep` " "); lists, structs and maps as
    JSON text."""
    if value is None:
        return null
    if isinstance(value, bool):
        return "true" if value else "false"
    plain = json_value(value, sep)
    if isinstance(plain, str):
        return plain
    if isinstance(plain, float):
        return repr(plain)
    if isinstance(plain, int):
        return str(plain)
    return orjson.dumps(plain).decode()


# --- Formats ------------------------------------------------------------------------------------


def _alignment(arrow_type: pa.DataType) -> str:
    if pa.types.is_decimal(arrow_type):
        return "point"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "right"
    return "left"


def _column_cells(column: pa.ChunkedArray, alignment: str) -> list[str]:
    cells = [
        cell_text(v, sep=" ", null=NULL_TEXT).replace("\n", "\\n").replace("\t", "\\t")
        for v in column.to_pylist()
    ]
    if alignment != "point":
        return cells
    # Decimal points under each other; whole numbers without one.
    parts = [c.partition(".") if c != NULL_TEXT else None for c in cells]
    whole = max((len(p[0]) for p in parts if p), default=0)
    fraction = max((len(p[2]) + 1 for p in parts if p and p[1]), default=0)
    return [(p[0].rjust(whole) + (p[1] + p[2]).ljust(fraction)) if p else NULL_TEXT for p in parts]


def render_table(table: pa.Table, more: bool = False) -> str:
    """Columns under their names, two spaces apart: text left, numbers right, amounts on their
    decimal point; then `(N rows)`, or, with `more`, a note that rows were left out."""
    names = table.column_names
    columns = []
    aligns = []
    for column in table.columns:
        alignment = _alignment(column.type)
        aligns.append(alignment)
        columns.append(_column_cells(column, alignment))
    widths = [
        max([len(n), *(len(c) for c in cells)]) for n, cells in zip(names, columns, strict=True)
    ]

    def line(cells: Iterable[str]) -> str:
        out = []
        for cell, width, alignment in zip(cells, widths, aligns, strict=True):
            out.append(cell.ljust(width) if alignment == "left" else cell.rjust(width))
        return "  ".join(out).rstrip()

    lines = [line(names), line("-" * w for w in widths)]
    lines += [line(row) for row in zip(*columns, strict=True)]
    n = table.num_rows
    if more:
        lines.append(f"(the first {n} rows; --limit N shows more)")
    else:
        lines.append(f"({n} row{'' if n == 1 else 's'})")
    return "\n".join(lines) + "\n"


def write_csv(batches: Iterable[pa.RecordBatch], names: list[str], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    rows = 0
    for batch in batches:
        columns = [[cell_text(v) for v in c.to_pylist()] for c in batch.columns]
        writer.writerows(zip(*columns, strict=True))
        rows += batch.num_rows
    return rows


def write_json_lines(batches: Iterable[pa.RecordBatch], names: list[str], out: IO[str]) -> int:
    rows = 0
    for batch in batches:
        columns = [[json_value(v) for v in c.to_pylist()] for c in batch.columns]
        for row in zip(*columns, strict=True):
            out.write(orjson.dumps(dict(zip(names, row, strict=True))).decode())
            out.write("\n")
        rows += batch.num_rows
    return rows


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` that becomes `path` only once it is written whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write(
    relation: duckdb.DuckDBPyRelation,
    fmt: str,
    *,
    output: Path | None = None,
    limit: int | None = None,
    out: IO[str] | None = None,
) -> int:
    """Writes the answer in `fmt` to the file `output` (replaced whole, at the end) or to `out`
    (stdout); returns the rows written. `limit` caps the rows; without it the table shows
    TABLE_ROWS, the other formats every row."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    if fmt == "table" and limit is None:
        limit = TABLE_ROWS
    # The table asks for one row more, to tell whether it shows them all.
    extra = 1 if fmt == "table" else 0
    limited = relation if limit is None else relation.limit(limit + extra)
    if fmt == "parquet":
        if output is None:
            raise ValueError("--format parquet needs --output FILE")
        import pyarrow.parquet as pq

        with replacing(output) as tmp:
            limited.to_parquet(str(tmp), compression="zstd")
            return pq.read_metadata(tmp).num_rows
    if output is None:
        return _write_text(limited, fmt, limit, out or sys.stdout)
    with replacing(output) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        return _write_text(limited, fmt, limit, f)


def _write_text(
    relation: duckdb.DuckDBPyRelation, fmt: str, limit: int | None, out: IO[str]
) -> int:
    names = list(relation.columns)
    if fmt == "table":
        assert limit is not None
        shown = relation.fetch_arrow_table()
        more = shown.num_rows > limit
        out.write(render_table(shown.slice(0, limit), more=more))
        rows = min(shown.num_rows, limit)
    else:
        batches = relation.fetch_record_batch(BATCH_ROWS)
        writer = write_csv if fmt == "csv" else write_json_lines
        rows = writer(batches, names, out)
    out.flush()
    return rows
