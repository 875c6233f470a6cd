"""Writer benchmark: what a commit to the DuckDB store costs per row, against a plain insert.

Run with `make bench-writer`. Realistic decoded batches (the decode benchmark's frames, a
quarter of them multi-coin wallet pushes) are committed to a fresh DuckDB file round after
round, each round with fresh message ids and creation times as the firehose sends them, so
the dedup keeps every row. After warm-up rounds, CPU time per committed row is measured for:

- store       `DuckDBStore.write`: ATTACH, the dedup of replays, INSERT, COMMIT, DETACH
- plain       the same ATTACH / INSERT / COMMIT / DETACH with no dedup: the floor the store's
              dedup is measured against (a store that let replays in would cost this)

each with and without raw_json, and reported as ratios within the run (the box is shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ingestor  # noqa: E402
from benches.bench_decode import make_frames  # noqa: E402
from ingestor import queries  # noqa: E402
from ingestor.sinks import group_by_table  # noqa: E402
from ingestor.sinks.duckdb_store import DuckDBStore  # noqa: E402

Batches = list[tuple[str, pa.RecordBatch]]
#: A store to close, and how a commit is made to it.
Committer = tuple[DuckDBStore, Callable[[Batches], int]]
#: A round's creation times lie this far after the previous round's (an hour, in µs).
ROUND_SHIFT_US = 3_600_000_000


def decoded(frames: list[bytes], keep_raw: bool) -> Batches:
    out = ingestor.decode(frames, account_id="acct-1", keep_raw=keep_raw)
    return [(name, batch) for name, batch in out.items() if batch.num_rows]


def as_round(batches: Batches, n: int) -> Batches:
    """The batches as round `n` of the firehose: new message ids, later creation times."""
    fresh = []
    for name, batch in batches:
        if "message_id" in batch.schema.names:
            ids = pc.binary_join_element_wise(batch["message_id"], pa.scalar(f"-r{n}"), "")
            batch = batch.set_column(batch.schema.get_field_index("message_id"), "message_id", ids)
        if "creation_ts" in batch.schema.names:
            index = batch.schema.get_field_index("creation_ts")
            later = pc.add(batch["creation_ts"], pa.scalar(n * ROUND_SHIFT_US, pa.duration("us")))
            batch = batch.set_column(index, batch.schema.field(index), later)
        fresh.append((name, batch))
    return fresh


def store_commit(path: Path) -> Committer:
    store = DuckDBStore(path)
    store.create()
    return store, store.write


def plain_commit(path: Path) -> Committer:
    """The store's own file handling and DDL, with every row inserted as it comes."""
    store = DuckDBStore(path)
    store.create()

    def write(batches: Batches) -> int:
        rows = 0
        with store.file.attached() as con:
            con.execute("BEGIN")
            for name, table in group_by_table(batches).items():
                con.register("incoming", table)
                rows += con.execute(queries.insert_rows(name, "incoming")).fetchone()[0]
                con.unregister("incoming")
            con.execute("COMMIT")
        return rows

    return store, write


def cpu_per_row(
    make: Callable[[Path], Committer], base: Batches, warmup: int, rounds: int
) -> tuple[float, int]:
    """CPU µs per committed row over `rounds` commits after `warmup`, and rows per commit."""
    prepared = [as_round(base, n) for n in range(warmup + rounds)]
    with tempfile.TemporaryDirectory() as folder:
        store, write = make(Path(folder) / "bench.duckdb")
        for batches in prepared[:warmup]:
            write(batches)
        rows, start = 0, time.process_time()
        for batches in prepared[warmup:]:
            rows += write(batches)
        cpu = time.process_time() - start
        store.close()
    return cpu / rows * 1e6, rows // rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50_000, help="frames per commit")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "writer.md")
    args = parser.parse_args()
    frames = make_frames(args.frames, wallet_share=0.25)
    lines = [
        "## Writer benchmark",
        "",
        f"`make bench-writer` on {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}: {args.frames:,} frames per commit "
        f"(25% multi-coin wallet pushes), {args.warmup} warm-up and {args.rounds} timed "
        "commits to a fresh DuckDB file. CPU time per committed row.",
        "",
        "| raw_json | rows / commit | store µs / row | plain insert µs / row | store ÷ plain |",
        "|---|---:|---:|---:|---:|",
    ]
    for keep_raw in (True, False):
        base = decoded(frames, keep_raw)
        store, rows = cpu_per_row(store_commit, base, args.warmup, args.rounds)
        plain, _ = cpu_per_row(plain_commit, base, args.warmup, args.rounds)
        lines.append(
            f"| {'on' if keep_raw else 'off'} | {rows:,} | {store:.2f} | {plain:.2f} "
            f"| {store / plain:.2f}× |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
