"""Writer benchmark: what the DuckDB store costs per row when flushes are small, against a
bulk insert of the same rows.

Run with `make bench-writer`. Realistic decoded batches (the decode benchmark's frames, a
quarter of them multi-coin wallet pushes) are cut into flushes of ~3,000 rows (one second of a
busy box), each with fresh message ids and creation times as the firehose sends them, so the
dedup keeps every row. CPU time of the whole process (every thread) per row, for:

- store    `DuckDBStore.write` per flush: the hot tier's fsynced Parquet file, the mover
           thread's moves into the file in whole row groups (dedup, state, checkpoints), and
           `close()`, which moves the rest
- stateless  the same with `state=False` (no state, no checkpoints): what the state costs
- direct   each flush committed to the file in its own transaction, as the store did before
           the hot tier: dedup, INSERT, state MERGE, COMMIT (the cost the hot tier removes)
- bulk     every row in one INSERT per table into a fresh file with the store's tables, then
           a CHECKPOINT: the floor

alternating, `--rounds` each, medians; and whether every flush's rows were readable through a
read-only connection right after `write` returned (checked every `--check-every` flushes, its
reader a process of its own, as an analyst's). Ratios within the run: the box is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ingestor  # noqa: E402
from benches.bench_decode import make_frames  # noqa: E402
from ingestor import queries  # noqa: E402
from ingestor.sinks import Checkpoints, group_by_table, insert_new  # noqa: E402
from ingestor.sinks.duckdb_store import AttachedFile, DuckDBStore  # noqa: E402

Batches = list[tuple[str, pa.RecordBatch]]
#: A round's creation times lie this far after the previous round's (an hour, in µs).
ROUND_SHIFT_US = 3_600_000_000


#: A push arrives this long after its creation time (local_ts), as over a good link.
ARRIVAL_US = 7_000
#: The times a round moves later, together: a push's exchange time, creation and arrival.
ROUND_TIMES = ("exchange_ts", "creation_ts", "local_ts")


def shifted(batch: pa.RecordBatch, column: str, source: str, us: int) -> pa.RecordBatch:
    """`batch` with `column` set to `source` plus `us` microseconds."""
    index = batch.schema.get_field_index(column)
    later = pc.add(batch[source], pa.scalar(us, pa.duration("us")))
    return batch.set_column(index, batch.schema.field(index), later)


def decoded(frames: list[bytes], keep_raw: bool) -> Batches:
    """The frames decoded, each row arriving `ARRIVAL_US` after its push's creation (decode's
    own local_ts is the clock's now, over a year after the frames' times: every row would be
    a late one, copied to the late table and patching every checkpoint, which no live
    stream does)."""
    out = ingestor.decode(frames, account_id="acct-1", keep_raw=keep_raw)
    batches = []
    for name, batch in out.items():
        if not batch.num_rows:
            continue
        if "creation_ts" in batch.schema.names and "local_ts" in batch.schema.names:
            batch = shifted(batch, "local_ts", "creation_ts", ARRIVAL_US)
        batches.append((name, batch))
    return batches


def as_round(batches: Batches, n: int) -> Batches:
    """The batches as round `n` of the firehose: new message ids, and exchange, creation and
    arrival times `n` round shifts later (a round repeating the exchange times would make
    every row older than every later checkpoint)."""
    fresh = []
    for name, batch in batches:
        if "message_id" in batch.schema.names:
            ids = pc.binary_join_element_wise(batch["message_id"], pa.scalar(f"-r{n}"), "")
            batch = batch.set_column(batch.schema.get_field_index("message_id"), "message_id", ids)
        for column in ROUND_TIMES:
            if column in batch.schema.names:
                batch = shifted(batch, column, column, n * ROUND_SHIFT_US)
        fresh.append((name, batch))
    return fresh


def flushes(base: Batches, count: int) -> list[Batches]:
    return [as_round(base, n) for n in range(count)]


def rows_of(batches: Batches) -> int:
    return sum(b.num_rows for _, b in batches)


def run_store(
    folder: Path, prepared: list[Batches], check_every: int, state: bool = True
) -> tuple[float, bool]:
    """CPU s of the store's flushes and close, and whether every checked flush was readable."""
    path = folder / "store.duckdb"
    store = DuckDBStore(path, state=state)
    store.create()
    readable, written = True, {t: 0 for t in queries.TABLES}
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    start = time.process_time()
    for n, batches in enumerate(prepared):
        store.write(batches)
        for name, batch in batches:
            written[name] += batch.num_rows
        if n % check_every == 0:
            # The reader is a process of its own, so its CPU is not counted; nothing is
            # subtracted either (the interval would hold the mover thread's CPU too).
            reader.stdin.write("count\n")
            reader.stdin.flush()
            seen = [int(x) for x in reader.stdout.readline().split()]
            readable &= seen == [written["position_snapshots"], written["wallet_snapshots"]]
    store.close()
    cpu = time.process_time() - start
    reader.stdin.close()
    reader.wait(timeout=60)
    return cpu, readable


#: An analyst's process: on each line, opens the file read-only, counts, lets it go.
READER = """
import sys, time, duckdb
for _ in sys.stdin:
    for attempt in range(500):  # the writer holds the file while a move runs
        try:
            con = duckdb.connect(sys.argv[1], read_only=True)
            break
        except duckdb.IOException:
            time.sleep(0.01)
    counts = [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("position_snapshots", "wallet_snapshots")]
    con.close()
    print(*counts, flush=True)
"""


def run_direct(folder: Path, prepared: list[Batches]) -> float:
    path = folder / "direct.duckdb"
    DuckDBStore(path).create()
    file = AttachedFile(path)
    checkpoints = Checkpoints(queries.cold)
    start = time.process_time()
    for batches in prepared:
        with file.attached() as con:
            con.execute("BEGIN")
            for name, table in group_by_table(batches).items():
                inserted = insert_new(con, name, table, state=True, stored=queries.cold(name))
                checkpoints.inserted(name, inserted)
            checkpoints.due(con)
            con.execute("COMMIT")
    file.close()
    return time.process_time() - start


def run_bulk(folder: Path, prepared: list[Batches]) -> float:
    path = folder / "bulk.duckdb"
    DuckDBStore(path).create()
    tables = group_by_table([pair for batches in prepared for pair in batches])
    start = time.process_time()
    file = AttachedFile(path)
    with file.attached() as con:
        con.execute("BEGIN")
        for name, table in tables.items():
            con.register("incoming", table)
            con.execute(queries.insert_rows(queries.cold(name), "incoming"))
            con.unregister("incoming")
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    file.close()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flush-rows", type=int, default=3_000, help="rows per flush (about)")
    parser.add_argument("--flushes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--check-every", type=int, default=10)
    parser.add_argument("--no-direct", action="store_true", help="skip the slow direct commits")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "writer.md")
    args = parser.parse_args()
    # ~1.65 rows a frame at a quarter of multi-coin wallet pushes.
    frames = make_frames(max(1, int(args.flush_rows / 1.65)), wallet_share=0.25)
    lines = [
        "## Writer benchmark",
        "",
        f"`make bench-writer` on {os.cpu_count()} shared cores, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, DuckDB {duckdb.__version__}: "
        f"{args.flushes} flushes of ~{args.flush_rows:,} rows (25% multi-coin wallet pushes) "
        f"into fresh stores, {args.rounds} rounds alternating, median CPU µs per row (the "
        "whole process, every thread).",
        "",
        "| raw_json | rows | store µs / row | store without the state | direct commits "
        "| bulk insert | store ÷ bulk | without the state ÷ bulk | direct ÷ bulk "
        "| readable after each flush |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for keep_raw in (True, False):
        prepared = flushes(decoded(frames, keep_raw), args.flushes)
        rows = sum(rows_of(b) for b in prepared)
        got: dict[str, list[float]] = {"store": [], "stateless": [], "direct": [], "bulk": []}
        readable = True
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as folder:
                cpu, ok = run_store(Path(folder), prepared, args.check_every)
                got["store"].append(cpu)
                readable &= ok
            with tempfile.TemporaryDirectory() as folder:
                cpu, ok = run_store(Path(folder), prepared, args.check_every, state=False)
                got["stateless"].append(cpu)
                readable &= ok
            with tempfile.TemporaryDirectory() as folder:
                got["bulk"].append(run_bulk(Path(folder), prepared))
            if not args.no_direct:
                with tempfile.TemporaryDirectory() as folder:
                    got["direct"].append(run_direct(Path(folder), prepared))
            print({k: [round(v / rows * 1e6, 2) for v in vs] for k, vs in got.items()}, flush=True)
        us = {k: statistics.median(v) / rows * 1e6 if v else float("nan") for k, v in got.items()}
        lines.append(
            f"| {'on' if keep_raw else 'off'} | {rows:,} | {us['store']:.2f} "
            f"| {us['stateless']:.2f} | {us['direct']:.2f} | {us['bulk']:.2f} "
            f"| {us['store'] / us['bulk']:.2f}× | {us['stateless'] / us['bulk']:.2f}× "
            f"| {us['direct'] / us['bulk']:.2f}× | {'yes' if readable else 'NO'} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
