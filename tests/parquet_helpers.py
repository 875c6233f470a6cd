"""Rows for the Parquet store's tests, and a reader process that checks every answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

import ingestor

DAY = datetime(2026, 3, 1, tzinfo=UTC)


def events(first: int, count: int, day: datetime = DAY) -> list[tuple[str, pa.RecordBatch]]:
    """Connection events numbered first..first+count-1 in `reason`: each row tells which it is,
    so a reader can tell a duplicate or a gap."""
    schema = ingestor.schemas()["connection_events"]
    rows = [
        {
            "account_id": f"acct-{n % 3}",
            "local_ts": day + timedelta(seconds=n),
            "event": "subscribed",
            "reason": str(n),
        }
        for n in range(first, first + count)
    ]
    return [("connection_events", pa.RecordBatch.from_pylist(rows, schema=schema))]


#: Queries the store's views in a loop until the file `stop` exists. Each answer must hold the
#: numbers 0..expected-1 once each (and any later ones at most once). Prints one JSON line:
#: queries answered, answers wrong, queries failed (`vanished`: a file deleted under the
#: query; `errors`: anything else), and how many files it saw in the day's folder.
READER = """
import json, os, sys, duckdb
root, stop, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
day = os.path.join(root, "connection_events", "date=2026-03-01")
queries = wrong = errors = vanished = 0
listings = set()
while not os.path.exists(stop):
    listings.add(len([n for n in os.listdir(day) if n.endswith(".parquet")]))
    try:
        with duckdb.connect(os.path.join(root, "catalog.duckdb"), read_only=True) as con:
            rows = con.execute("SELECT reason FROM connection_events").fetchall()
        seen = [int(r) for (r,) in rows]
    except duckdb.Error as e:
        # A file listed by the query's glob and deleted before the query opened it: the query
        # fails (and is retried), it never answers wrongly.
        if "Cannot open file" in str(e) and "No such file" in str(e):
            vanished += 1
            continue
        errors += 1
        print(json.dumps({"error": str(e)}), file=sys.stderr, flush=True)
        continue
    queries += 1
    doubled = len(seen) - len(set(seen))
    missing = set(range(expected)) - set(seen)
    if doubled or missing:
        wrong += 1
        print(json.dumps({"doubled": doubled, "missing": sorted(missing)[:10]}), file=sys.stderr,
              flush=True)
print(json.dumps({"queries": queries, "wrong": wrong, "errors": errors, "vanished": vanished,
                  "listings": sorted(listings)}), flush=True)
"""
